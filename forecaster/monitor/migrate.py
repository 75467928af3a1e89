"""Bringing an older ledger to this release's schema (schema.SCHEMA_VERSION), by the product, in one
transaction (SQLAlchemy Core: the same statements on SQLite and PostgreSQL).

Version 1 -> 2: version 1 kept one ledger_forecasts row per forecast step, version 2 one per series
forecast. The version 1 tables are renamed aside, the version 2 tables created, every forecast's
steps (the rows of one append: the same served time, request, series, fingerprint, model and role,
steps 1..H) become one row whose id is the smallest id of its steps, each outcome follows its step
as (forecast id, step), and the version 1 tables are dropped. A failure rolls the whole of it back.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from forecaster.monitor.schema import FINGERPRINT_BYTES, forecasts, meta, metadata, outcomes

BATCH = 10_000  # version 2 rows inserted per statement

# Version 1, as it was written (only this module reads it).
metadata_v1 = sa.MetaData()
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
forecasts_v1 = sa.Table(
    "ledger_forecasts",
    metadata_v1,
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
    sa.Column("ticker", sa.String(32)),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("fingerprint", sa.String(2 * FINGERPRINT_BYTES), nullable=False),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("last_close", sa.Double, nullable=False),
    sa.Column("step", sa.SmallInteger, nullable=False),
    sa.Column("target_date", sa.Date, nullable=False),
    sa.Column("levels", sa.JSON, nullable=False),
    sa.Column("quantiles", sa.JSON, nullable=False),
    sa.Index("ix_ledger_forecasts_target_date", "target_date"),
    sa.Index("ix_ledger_forecasts_model", "model", "version", "step"),
)
outcomes_v1 = sa.Table(
    "ledger_outcomes",
    metadata_v1,
    sa.Column("forecast_id", _Id, sa.ForeignKey("ledger_forecasts.id"), primary_key=True),
    sa.Column("actual", sa.Double, nullable=False),
    sa.Column("naive", sa.Double, nullable=False),
    sa.Column("drift", sa.Double, nullable=False),
    sa.Column("ewma", sa.JSON),
    sa.Column("scale", sa.Double),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("data", sa.String(512), nullable=False),
)
# The columns every step of one forecast shares (what one append wrote for it).
_SHARED = ("served_at", "origin", "role", "model", "version", "alias", "run_id", "request_id", "series_id",
           "ticker", "source", "fingerprint", "as_of", "last_close")  # fmt: skip
_ASIDE = "_v1"


def _aside(name: str) -> sa.Table:
    """A version 1 table under its renamed name (its columns unchanged)."""
    table = forecasts_v1 if name == forecasts_v1.name else outcomes_v1
    return table.to_metadata(sa.MetaData(), name=name + _ASIDE)


def migrate_1_to_2(connection: Connection) -> int:
    """Rewrite a version 1 ledger as version 2 inside the caller's transaction; returns the number
    of series forecasts written."""
    for table in (outcomes_v1, forecasts_v1):
        for index in table.indexes:
            index.drop(connection)  # index names are per schema: version 2 may reuse them
        connection.execute(sa.text(f"ALTER TABLE {table.name} RENAME TO {table.name}{_ASIDE}"))
    old_f, old_o = _aside(forecasts_v1.name), _aside(outcomes_v1.name)
    metadata.create_all(connection, tables=[forecasts, outcomes], checkfirst=False)

    shared = [old_f.c[name] for name in _SHARED]
    first = sa.func.min(old_f.c.id).over(partition_by=shared).label("first_id")
    numbered = sa.select(old_f, first).subquery()
    query = sa.select(numbered).order_by(numbered.c.first_id, numbered.c.step)
    written, batch = 0, []
    for _, group in groupby(connection.execute(query), key=lambda r: r.first_id):
        batch.append(_row(list(group)))
        if len(batch) >= BATCH:
            written += _insert(connection, batch)
            batch = []
    written += _insert(connection, batch)

    step_of = sa.select(numbered.c.id, numbered.c.first_id, numbered.c.step).subquery()
    carried = [old_o.c[c.name] for c in outcomes.columns if c.name not in ("forecast_id", "step")]
    moved = sa.select(step_of.c.first_id, step_of.c.step, *carried).join_from(
        old_o, step_of, step_of.c.id == old_o.c.forecast_id
    )
    names = ["forecast_id", "step"] + [c.name for c in carried]
    connection.execute(outcomes.insert().from_select(names, moved))
    old_o.drop(connection)
    old_f.drop(connection)
    if connection.dialect.name == "postgresql":  # ids were given: the identity continues after them
        connection.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('ledger_forecasts', 'id'), "
                "(SELECT coalesce(max(id), 0) + 1 FROM ledger_forecasts), false)"
            )
        )
    return written


def _row(group: list[Any]) -> dict[str, Any]:
    head = group[0]
    assert [r.step for r in group] == list(range(1, len(group) + 1)), "a version 1 forecast's steps are 1..H"
    return {
        "id": head.first_id,
        **{name: getattr(head, name) for name in _SHARED},
        "levels": head.levels,
        "horizon": len(group),
        "first_target": group[0].target_date,
        "last_target": group[-1].target_date,
        "target_dates": [r.target_date.isoformat() for r in group],
        "quantiles": [r.quantiles for r in group],
    }


def _insert(connection: Connection, rows: list[dict[str, Any]]) -> int:
    if rows:
        connection.execute(forecasts.insert(), rows)
    return len(rows)


MIGRATIONS = {1: migrate_1_to_2}  # from version: to version + 1


def migrate(connection: Connection, found: int) -> None:
    """Bring a ledger of schema version `found` to schema.SCHEMA_VERSION, step by step, and record it."""
    for version in range(found, max(MIGRATIONS) + 1):
        MIGRATIONS[version](connection)
        connection.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value=str(version + 1)))
