"""The ledger's tables (SQLAlchemy Core, created by `store.LedgerStore`, never by hand) and the one
record a served forecast becomes, whoever serves it (the service, `forecaster predict`, a backfill).

- ``ledger_forecasts``: append-only, one row per series forecast: who answered (model, version,
  alias, run, role, origin), for what (request id, series id, ticker, a fingerprint of the model's
  input window, its as-of date and last close) and what (levels, the horizon, every step's target
  date and quantiles as JSON arrays, the first and last target dates as columns for scoring).
- ``ledger_outcomes``: one row per resolved forecast step (forecast id, step), written by scoring:
  the realised close, the naive, drift and EWMA baselines from the same bars, and the series' scale
  at the as-of date.
- ``ledger_meta``: the schema version; `migrate` brings an older ledger to this one.

Version 2 (one row per series forecast, not per step) writes 5x fewer rows for a 5-step model: the
service's writer spends its time per row, not per value.

``role`` says how the forecast was used: ``served`` (the answer a client got) or ``shadow`` (a
challenger's forecast for the same request, computed beside it); ``origin`` where it came from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

SCHEMA_VERSION = 2
ROLES: tuple[str, ...] = ("served", "shadow")
ORIGINS: tuple[str, ...] = ("service", "predict", "backfill")
FINGERPRINT_BYTES = 16  # 32 hex characters: a collision between two different windows is not a concern

metadata = sa.MetaData()
# SQLite gives an INTEGER PRIMARY KEY its rowid (autoincrement); PostgreSQL a BIGINT identity.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

forecasts = sa.Table(
    "ledger_forecasts",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("model", sa.String(256), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("alias", sa.String(256)),
    sa.Column("run_id", sa.String(64)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("series_id", sa.String(64), nullable=False),
    sa.Column("ticker", sa.String(32)),  # None: the history came with the request
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("fingerprint", sa.String(2 * FINGERPRINT_BYTES), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("last_close", sa.Double, nullable=False),
    sa.Column("levels", sa.JSON, nullable=False),
    sa.Column("horizon", sa.SmallInteger, nullable=False),  # steps forecast: target_dates' and quantiles' length
    sa.Column("first_target", sa.Date, nullable=False),  # step 1's target date
    sa.Column("last_target", sa.Date, nullable=False),  # the last step's target date
    sa.Column("target_dates", sa.JSON, nullable=False),  # [H] ISO dates
    sa.Column("quantiles", sa.JSON, nullable=False),  # [H][Q] prices at `levels`
    sa.Index("ix_ledger_forecasts_first_target", "first_target"),
    sa.Index("ix_ledger_forecasts_model_version", "model", "version"),
)

outcomes = sa.Table(
    "ledger_outcomes",
    metadata,
    sa.Column("forecast_id", _Id, sa.ForeignKey("ledger_forecasts.id"), primary_key=True),
    sa.Column("step", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("actual", sa.Double, nullable=False),
    sa.Column("naive", sa.Double, nullable=False),
    sa.Column("drift", sa.Double, nullable=False),
    sa.Column("ewma", sa.JSON),  # quantiles at the forecast's levels; None: no volatility known yet
    sa.Column("scale", sa.Double),  # None: the close never moved up to the as-of date (no scaled metric)
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", sa.String(512), nullable=False),  # where the bars came from
)

meta = sa.Table(
    "ledger_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)


def fingerprint(window: np.ndarray) -> str:
    """The model's input window [T,4] (its float32 bars) as a short hash: equal windows, equal prints."""
    data = np.ascontiguousarray(window, dtype=np.float32)
    return hashlib.blake2b(data.tobytes(), digest_size=FINGERPRINT_BYTES).hexdigest()


@dataclass(frozen=True)
class ForecastRecord:
    """One series' forecast as answered: every step of it becomes a ledger row."""

    served_at: dt.datetime
    origin: str
    role: str
    model: str
    version: str
    alias: str | None
    run_id: str | None
    request_id: str | None
    series_id: str
    ticker: str | None
    source: str
    fingerprint: str
    as_of: dt.date
    last_close: float
    levels: list[float]
    target_dates: list[dt.date]  # step h's date at index h - 1
    quantiles: list[list[float]]  # [H][Q] prices at `levels`

    def row(self) -> dict[str, Any]:
        """The ledger_forecasts row of this forecast (every step in it)."""
        return {
            "served_at": self.served_at,
            "origin": self.origin,
            "role": self.role,
            "model": self.model,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "request_id": self.request_id,
            "series_id": self.series_id,
            "ticker": self.ticker,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "as_of": self.as_of,
            "last_close": self.last_close,
            "levels": self.levels,
            "horizon": len(self.target_dates),
            "first_target": self.target_dates[0],
            "last_target": self.target_dates[-1],
            "target_dates": [day.isoformat() for day in self.target_dates],
            "quantiles": self.quantiles,
        }


@dataclass(frozen=True)
class Step:
    """One step of a ledger forecast with its outcome (None fields: not resolved yet), as scoring
    and the report read it."""

    id: int  # the forecast's
    model: str
    version: str
    role: str
    ticker: str | None
    series_id: str
    as_of: dt.date
    last_close: float
    levels: list[float]
    step: int
    target_date: dt.date
    quantiles: list[float]
    actual: float | None = None
    naive: float | None = None
    drift: float | None = None
    ewma: list[float] | None = None
    scale: float | None = None


# The ledger_forecasts columns `steps` reads.
STEP_COLUMNS = ("id", "model", "version", "role", "ticker", "series_id", "as_of", "last_close", "levels",
                "target_dates", "quantiles")  # fmt: skip


def steps(row: Any, outcome: dict[int, Any] | None = None) -> list[Step]:
    """The steps of a ledger_forecasts row, each with its outcome row from `outcome` (by step), if any."""
    found = outcome or {}
    result = []
    for step, (day, values) in enumerate(zip(row.target_dates, row.quantiles, strict=True), start=1):
        done = found.get(step)
        extra = {} if done is None else {n: getattr(done, n) for n in ("actual", "naive", "drift", "ewma", "scale")}
        forecast = {name: getattr(row, name) for name in STEP_COLUMNS if name not in ("target_dates", "quantiles")}
        result.append(Step(**forecast, step=step, target_date=dt.date.fromisoformat(day), quantiles=values, **extra))
    return result
