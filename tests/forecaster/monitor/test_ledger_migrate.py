"""A version 1 ledger (one row per forecast step) is migrated by the product to version 2 (one row per
series forecast): the same forecasts, the same outcomes, the same report as a ledger written in
version 2, and appends continue after it; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from ledger_cases import bars, ledger
from ledger_db import KINDS, ledger_database

from forecaster.monitor.migrate import forecasts_v1, metadata_v1, outcomes_v1
from forecaster.monitor.report import live_report
from forecaster.monitor.schema import SCHEMA_VERSION, ForecastRecord, forecasts, meta, outcomes
from forecaster.monitor.score import score
from forecaster.monitor.store import LedgerStore


def v1_rows(record: ForecastRecord) -> list[dict[str, Any]]:
    """What version 1 wrote for a forecast: one row per step."""
    row = record.row()
    shared = {k: v for k, v in row.items() if k not in ("horizon", "first_target", "last_target", "target_dates")}
    return [
        {**shared, "step": h, "target_date": day, "quantiles": values}
        for h, (day, values) in enumerate(zip(record.target_dates, record.quantiles, strict=True), start=1)
    ]


def table(store: LedgerStore, which: sa.Table, order: list[str]) -> list[dict[str, Any]]:
    with store.connect("reading") as connection:
        return [dict(r._mapping) for r in connection.execute(sa.select(which).order_by(*order))]


@pytest.mark.parametrize("kind", KINDS)
def test_a_version_1_ledger_is_migrated_to_the_same_forecasts_outcomes_and_report(kind: str, tmp_path: Path) -> None:
    frame = bars()
    records = ledger(frame)
    fresh = LedgerStore(f"sqlite:///{tmp_path / 'fresh.db'}")  # the same records written in version 2, scored
    fresh.append([r.row() for r in records])
    score(fresh, frame, "bars.csv")
    want_forecasts = table(fresh, forecasts, ["id"])
    want_outcomes = table(fresh, outcomes, ["forecast_id", "step"])
    want_report = live_report(fresh)
    fresh.close()

    with ledger_database(kind, tmp_path) as uri:
        store = LedgerStore(uri)
        try:
            first_ids = []
            with store.engine.begin() as connection:  # a version 1 ledger, as release 1 left it
                metadata_v1.create_all(connection)
                meta.create(connection)
                connection.execute(sa.insert(meta), {"key": "schema_version", "value": "1"})
                for record in records:
                    ids = connection.execute(
                        sa.insert(forecasts_v1).returning(forecasts_v1.c.id), v1_rows(record)
                    ).scalars()
                    first_ids.append(min(ids))
                position = {fid: k for k, fid in enumerate(first_ids)}
                for outcome in want_outcomes:  # its outcomes: step h of forecast k has id first_ids[k] + h - 1
                    moved = {**outcome, "forecast_id": first_ids[outcome["forecast_id"] - 1] + outcome["step"] - 1}
                    connection.execute(sa.insert(outcomes_v1), {k: v for k, v in moved.items() if k != "step"})

            store.ensure_schema()  # the migration
            got_forecasts = table(store, forecasts, ["id"])
            got_outcomes = table(store, outcomes, ["forecast_id", "step"])
            got_report = live_report(store)
            with store.connect("reading") as connection:
                version = connection.execute(sa.select(meta.c.value)).scalar()
                names = set(sa.inspect(connection).get_table_names())
            store.append([records[0].row()])  # appends continue after the migrated ids
            last = table(store, forecasts, ["id"])[-1]
        finally:
            store.close()

    assert version == str(SCHEMA_VERSION) and names == {"ledger_forecasts", "ledger_outcomes", "ledger_meta"}
    assert [f["id"] for f in got_forecasts] == first_ids  # a forecast's id: its first step's
    for got, want in zip(got_forecasts, want_forecasts, strict=True):
        for name in ("served_at",):  # SQLite keeps it naive (in UTC)
            got[name], want[name] = (v.replace(tzinfo=None) for v in (got[name], want[name]))
        assert {k: v for k, v in got.items() if k != "id"} == {k: v for k, v in want.items() if k != "id"}
    assert len(got_outcomes) == len(want_outcomes) > 0
    for got, want in zip(got_outcomes, want_outcomes, strict=True):
        assert position[got["forecast_id"]] == want["forecast_id"] - 1
        got["scored_at"], want["scored_at"] = (v.replace(tzinfo=None) for v in (got["scored_at"], want["scored_at"]))
        assert {k: v for k, v in got.items() if k != "forecast_id"} == {
            k: v for k, v in want.items() if k != "forecast_id"
        }
    assert got_report["groups"] == want_report["groups"]
    assert last["id"] > max(first_ids) and last["series_id"] == records[0].series_id
