"""The ledger store: schema made by the product, rows kept exactly, versions checked, default place."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from ledger_db import KINDS, ledger_database

from forecaster.monitor.schema import SCHEMA_VERSION, ForecastRecord, fingerprint, forecasts, meta
from forecaster.monitor.store import LedgerError, LedgerStore, default_uri


def record(**changes: object) -> ForecastRecord:
    values: dict[str, object] = {
        "served_at": dt.datetime(2024, 1, 5, 21, 0, 1, 250000, tzinfo=dt.UTC),
        "origin": "service",
        "role": "served",
        "model": "m",
        "version": "2",
        "alias": "champion",
        "run_id": "abc",
        "request_id": "req-1",
        "series_id": "AAA",
        "ticker": "AAA",
        "source": "file",
        "fingerprint": fingerprint(np.arange(8, dtype=np.float32).reshape(2, 4)),
        "as_of": dt.date(2024, 1, 5),
        "last_close": 101.37000274658203,
        "levels": [0.05, 0.5, 0.95],
        "target_dates": [dt.date(2024, 1, 8), dt.date(2024, 1, 9)],
        "quantiles": [[99.12345678901234, 101.4, 103.0], [98.0, 101.5, 104.1]],
    }
    return ForecastRecord(**{**values, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_the_product_creates_the_schema_and_keeps_rows_exactly(kind: str, tmp_path: Path) -> None:
    with ledger_database(kind, tmp_path) as uri:
        store = LedgerStore(uri)
        try:
            assert store.append([record().row(), record(ticker=None, series_id="mine").row()]) == 2
            with store.connect("reading") as connection:
                rows = [dict(r._mapping) for r in connection.execute(sa.select(forecasts).order_by(forecasts.c.id))]
                version = connection.execute(sa.select(meta.c.value)).scalar()
        finally:
            store.close()
    assert version == str(SCHEMA_VERSION)
    assert [(r["series_id"], r["horizon"], r["first_target"], r["last_target"]) for r in rows] == [
        ("AAA", 2, dt.date(2024, 1, 8), dt.date(2024, 1, 9)),
        ("mine", 2, dt.date(2024, 1, 8), dt.date(2024, 1, 9)),
    ]
    first = rows[0]
    assert first["target_dates"] == ["2024-01-08", "2024-01-09"]
    assert first["quantiles"] == [[99.12345678901234, 101.4, 103.0], [98.0, 101.5, 104.1]]  # floats kept exactly
    assert first["levels"] == [0.05, 0.5, 0.95] and first["last_close"] == 101.37000274658203
    assert first["served_at"].replace(tzinfo=dt.UTC) == dt.datetime(2024, 1, 5, 21, 0, 1, 250000, tzinfo=dt.UTC)
    assert (first["as_of"], first["ticker"], rows[1]["ticker"]) == (dt.date(2024, 1, 5), "AAA", None)


def test_a_ledger_written_by_a_newer_release_is_refused(tmp_path: Path) -> None:
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.ensure_schema()
    with store.connect("bumping") as connection:
        connection.execute(sa.update(meta).values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(LedgerError, match=f"schema version {SCHEMA_VERSION + 1}, this forecaster knows"):
        LedgerStore(store.uri).append([record().row()])


def test_an_unusable_store_is_one_ledger_error_naming_it_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(LedgerError) as raised:
        LedgerStore("postgresql://me:hunter2@127.0.0.1:9/ledger").append([record().row()])
    assert "127.0.0.1:9/ledger" in str(raised.value) and "hunter2" not in str(raised.value)
    assert "\n" not in str(raised.value)
    with pytest.raises(LedgerError, match="neither SQLite nor PostgreSQL"):
        LedgerStore("mysql://db/ledger")


def test_the_default_ledger_sits_beside_the_mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        default_uri(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}") == f"sqlite:///{tmp_path / 'store' / 'ledger.db'}"
    )
    monkeypatch.chdir(tmp_path)
    assert default_uri("http://mlflow:5000") == f"sqlite:///{tmp_path / 'mlruns' / 'ledger.db'}"
