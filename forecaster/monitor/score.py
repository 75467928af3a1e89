"""Scoring the ledger against what happened: every forecast step whose target date has a bar gets
its outcome (the realised close) and the naive, drift and EWMA baselines from the same bars, as the
one baselines module computes them at the forecast's as-of date.

A forecast is scored against the series whose ticker it names (its series id when its history came
with the request), and only when the bars agree with what the model saw: the as-of bar must be
there with the forecast's last close (a history that was a different series, or bars adjusted
since, are `unmatched`, never scored). A target date without a bar stays pending, never guessed.

Idempotent and restartable: only forecasts with a step due and without an outcome are read, and of
them only those steps; outcomes are inserted (a duplicate ignored) chunk by chunk, each chunk in its
own transaction, so a second run adds nothing and a killed run loses at most the chunk it was writing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecaster.data.windows import Panel
from forecaster.evaluation import baselines
from forecaster.monitor.schema import STEP_COLUMNS, Step, forecasts, outcomes, steps
from forecaster.monitor.store import LedgerStore, insert_ignoring_duplicates

CHUNK = 10_000  # series forecasts (of all their steps) read, scored and written per transaction
# A window is float32: its last close is within 6e-8 of the bars' float64 close. Bars adjusted for a
# dividend or split, or another series under the same name, differ by far more.
CLOSE_RTOL = 1e-5
_DAY_OFFSET = 2**31  # days since 1970 made non-negative, under a series code in the high 32 bits


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run did and what the ledger holds after it (counts of forecast steps)."""

    scored: int  # outcomes written by this run
    resolved: int  # outcomes in the ledger
    pending: int  # steps without an outcome: target date not in the bars yet, a missing bar, or unmatched
    unmatched: int  # due steps whose series, as-of bar or last close the bars do not have
    last_bar: dt.date  # the latest bar of the data
    data: str


class Bars:
    """A validated frame's bars, found by (series, date): the panel the baselines read, the float64
    closes, and each row's scale (the mean absolute one-day close change up to that row, its
    series' scale at that date: fixed once the date has passed, so scoring again gives the same)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        frame = frame.sort_values(["ticker", "date"], kind="stable")  # the panel's order: closes stay aligned
        self.panel = Panel.from_frame(frame)
        self.close = frame["close"].to_numpy(dtype=np.float64)
        self.codes = {ticker: code for code, ticker in enumerate(self.panel.tickers)}
        self.keys = self._keys(self.panel.series_id, self.panel.dates)
        self.last_bar = pd.Timestamp(self.panel.dates.max()).date()
        moves = np.abs(np.diff(self.close, prepend=self.close[0]))
        moves[self.panel.starts[:-1]] = 0.0  # no move across two tickers
        self._moves = np.cumsum(moves)

    @staticmethod
    def _keys(codes: np.ndarray, dates: np.ndarray) -> np.ndarray:
        days = dates.astype("datetime64[D]").astype(np.int64) + _DAY_OFFSET
        return (codes.astype(np.int64) << 32) | days

    def rows(self, codes: np.ndarray, dates: np.ndarray) -> np.ndarray:
        """Row of each (series code, date), -1 where the bars have none (or the code is -1)."""
        wanted = self._keys(np.maximum(codes, 0), dates)
        at = np.minimum(np.searchsorted(self.keys, wanted), len(self.keys) - 1)
        return np.where((self.keys[at] == wanted) & (codes >= 0), at, -1)

    def scale(self, rows: np.ndarray) -> np.ndarray:
        """Scale at each row: NaN on a series' first bar or when its close never moved."""
        start = self.panel.starts[self.panel.series_id[rows]]
        count = rows - start
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = (self._moves[rows] - self._moves[start]) / count
        return np.where((count > 0) & (scale > 0), scale, np.nan)


def _optional(value: float) -> float | None:
    return value if np.isfinite(value) else None


def resolve(bars: Bars, due: Sequence[Step], data: str, now: dt.datetime) -> tuple[list[dict[str, Any]], int]:
    """Outcome rows for the due ledger rows the bars resolve, and how many are unmatched."""
    codes = np.array([bars.codes.get(r.ticker or r.series_id, -1) for r in due], dtype=np.int64)
    as_of = bars.rows(codes, np.array([r.as_of for r in due], dtype="datetime64[D]"))
    target = bars.rows(codes, np.array([r.target_date for r in due], dtype="datetime64[D]"))
    last_close = np.array([r.last_close for r in due], dtype=np.float64)
    seen = np.where(as_of >= 0, bars.close[np.maximum(as_of, 0)], np.nan)
    matched = (as_of >= 0) & np.isclose(seen, last_close, rtol=CLOSE_RTOL, atol=0.0)
    ok = np.flatnonzero(matched & (target >= 0))
    if not len(ok):
        return [], int((~matched).sum())
    chosen = [due[i] for i in ok.tolist()]
    origins, steps = as_of[ok], np.array([r.step for r in chosen])
    horizon = int(steps.max())
    picked = np.arange(len(ok)), steps - 1
    points = baselines.point_forecasts(bars.panel, origins, horizon)
    naive, drift = points["naive"][picked], points["drift"][picked]
    ewma: list[list[float] | None] = [None] * len(ok)
    levels_of = [tuple(r.levels) for r in chosen]
    for levels in dict.fromkeys(levels_of):
        group = np.flatnonzero([lv == levels for lv in levels_of])
        quantiles = baselines.ewma_quantiles(bars.panel, origins[group], horizon, levels)  # -> (n, H, Q)
        quantiles = quantiles[np.arange(len(group)), steps[group] - 1]  # -> (n, Q)
        for i, values in zip(group.tolist(), quantiles.tolist(), strict=True):
            ewma[i] = values if np.all(np.isfinite(values)) else None
    scale = bars.scale(origins)
    actual = bars.close[target[ok]]
    rows = [
        {
            "forecast_id": row.id,
            "step": row.step,
            "actual": float(actual[k]),
            "naive": float(naive[k]),
            "drift": float(drift[k]),
            "ewma": ewma[k],
            "scale": _optional(float(scale[k])),
            "scored_at": now,
            "data": data[:512],
        }
        for k, row in enumerate(chosen)
    ]
    return rows, int((~matched).sum())


def due_steps(store: LedgerStore, last_bar: dt.date, after: int, limit: int) -> tuple[list[Step], int]:
    """The unresolved steps, target date on or before `last_bar`, of up to `limit` ledger forecasts
    after id `after` that have such a step; and the last forecast id read (0: none left)."""
    f, o = forecasts.c, outcomes.c
    resolved = sa.select(sa.func.count()).where(o.forecast_id == f.id).scalar_subquery()
    query = (
        sa.select(*(forecasts.c[name] for name in STEP_COLUMNS))
        .where(f.first_target <= last_bar, f.id > after, resolved < f.horizon)
        .order_by(f.id)
        .limit(limit)
    )
    with store.connect("reading the due forecasts") as connection:
        rows = list(connection.execute(query))
        if not rows:
            return [], 0
        done = connection.execute(
            sa.select(o.forecast_id, o.step).where(o.forecast_id >= rows[0].id, o.forecast_id <= rows[-1].id)
        )
        scored = {(r.forecast_id, r.step) for r in done}
    due = [s for row in rows for s in steps(row) if s.target_date <= last_bar and (s.id, s.step) not in scored]
    return due, rows[-1].id


def score(
    store: LedgerStore,
    frame: pd.DataFrame,
    data: str,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Score every due forecast step of the ledger against the bars of a validated `frame` (from
    `data`); `progress(scored so far)` after each chunk is written."""
    store.ensure_schema()
    bars = Bars(frame)
    now = dt.datetime.now(dt.UTC)
    scored = unmatched = after = 0
    while True:
        due, after = due_steps(store, bars.last_bar, after, chunk)
        if not after:
            break
        rows, missing = resolve(bars, due, data, now) if due else ([], 0)
        unmatched += missing
        if rows:
            with store.connect(f"writing {len(rows)} outcomes") as connection:
                connection.execute(insert_ignoring_duplicates(connection, outcomes), rows)
            scored += len(rows)
        if progress is not None:
            progress(scored)
    with store.connect("counting") as connection:
        served = connection.execute(sa.select(sa.func.coalesce(sa.func.sum(forecasts.c.horizon), 0))).scalar_one()
        resolved = connection.execute(sa.select(sa.func.count()).select_from(outcomes)).scalar_one()
    return ScoreSummary(scored, resolved, served - resolved, unmatched, bars.last_bar, data)
