"""The scheduler scores the forecast ledger after each data refresh when the retrain settings say
`monitor_score`: due forecasts get their outcomes from the refreshed bars; off, the ledger is not
touched; a ledger that cannot be reached never fails the retrain."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from factories import random_ohlc

from forecaster.monitor.schema import ForecastRecord, outcomes
from forecaster.monitor.store import LedgerStore
from pipelines import retrain
from pipelines.monitor import score_ledger
from pipelines.settings import RetrainSettings


def bars() -> pd.DataFrame:
    return random_ohlc(("AAA",), days=30, seed=1, start="2024-01-01", decimals=2)


def served(frame: pd.DataFrame, as_of: int, horizon: int) -> ForecastRecord:
    """A forecast of AAA from its bar `as_of` (targets: the next `horizon` business days)."""
    days = [d.date() for d in pd.bdate_range("2024-01-01", periods=40)]
    last = float(np.float32(frame["close"].iloc[as_of]))
    return ForecastRecord(
        dt.datetime(2024, 3, 1, tzinfo=dt.UTC), "service", "served", "m", "1", "champion", None, "r", "AAA", "AAA",
        "file", "0" * 32, days[as_of], last, [0.1, 0.5, 0.9], days[as_of + 1 : as_of + 1 + horizon],
        [[last * 0.98, last, last * 1.02]] * horizon,
    )  # fmt: skip


def settings(tmp_path: Path, **changes: object) -> RetrainSettings:
    return RetrainSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", **changes)  # type: ignore[arg-type]


def test_monitor_score_scores_the_due_forecasts_against_the_refreshed_bars(tmp_path: Path) -> None:
    frame = bars()
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")  # the default: beside the MLflow store
    store.append([served(frame, 20, 3).row(), served(frame, 28, 3).row()])  # 3 + 1 steps due, 2 after the bars
    summary = score_ledger(settings(tmp_path, monitor_score=True), frame, "refreshed")
    assert summary is not None and (summary.scored, summary.pending) == (4, 2)
    with store.connect("reading") as connection:
        rows = list(connection.execute(sa.select(outcomes.c.forecast_id, outcomes.c.step, outcomes.c.data)))
    store.close()
    assert sorted(rows) == [(1, 1, "refreshed"), (1, 2, "refreshed"), (1, 3, "refreshed"), (2, 1, "refreshed")]


def test_monitor_score_off_leaves_the_ledger_alone(tmp_path: Path) -> None:
    assert score_ledger(settings(tmp_path), bars(), "refreshed") is None
    assert not (tmp_path / "ledger.db").exists()


def test_an_unreachable_ledger_is_one_warning_and_no_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    uri = "postgresql://me:hunter2@127.0.0.1:9/ledger"
    with caplog.at_level(logging.WARNING, logger="pipelines.monitor"):
        assert score_ledger(settings(tmp_path, monitor_score=True, ledger_uri=uri), bars(), "refreshed") is None
    assert "not scored" in caplog.text and "127.0.0.1:9/ledger" in caplog.text and "hunter2" not in caplog.text


def test_a_retrain_scores_the_ledger_with_the_bars_it_just_refreshed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame, seen = bars(), []

    class Scored(Exception):
        pass

    def scored(got: RetrainSettings, bars_: pd.DataFrame, origin: str) -> None:
        seen.append((bars_, origin))
        raise Scored  # stop the run here: training is not this test's subject

    monkeypatch.setattr(retrain, "refresh_data", lambda s: (frame, "fresh bars"))
    monkeypatch.setattr(retrain, "score_ledger", scored)
    with pytest.raises(Scored):
        retrain.run_once(settings(tmp_path, monitor_score=True))
    assert len(seen) == 1 and seen[0][0] is frame and seen[0][1] == "fresh bars"
