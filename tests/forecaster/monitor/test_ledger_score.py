"""Scoring the ledger: outcomes equal an independent computation from the ledger and the bars;
scoring twice changes nothing; a killed run finishes on the next; a missing bar stays pending."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from factories import random_ohlc
from ledger_cases import bars, days, ledger, record
from ledger_db import KINDS, ledger_database
from scipy.stats import norm

from forecaster.monitor.schema import outcomes
from forecaster.monitor.score import score
from forecaster.monitor.store import LedgerStore


def expected(frame: pd.DataFrame, row: dict[str, Any]) -> dict[str, Any] | None:
    """The outcome of a ledger row computed here, loop by loop, from the bars alone (None: not due)."""
    key = row["ticker"] or row["series_id"]
    series = frame[frame["ticker"] == key].sort_values("date") if key in ("AAA", "BBB") else None
    if series is None:
        return None
    dates = [d.date() for d in series["date"]]
    close = series["close"].to_numpy(dtype=np.float64)
    if row["as_of"] not in dates or row["target_date"] not in dates:
        return None
    t = dates.index(row["as_of"])
    if abs(close[t] - row["last_close"]) > 1e-5 * close[t]:
        return None
    h = row["step"]
    returns = [np.log(close[k] / close[k - 1]) for k in range(1, t + 1)]
    variance = np.nan
    for k, r in enumerate(returns, start=1):  # RiskMetrics, seeded by the mean of the first 20 squares
        variance = np.mean(np.square(returns[:k])) if k <= 20 else 0.94 * variance + 0.06 * r**2
    ewma = None if t == 0 else [close[t] * np.exp(np.sqrt(variance * h) * norm.ppf(q)) for q in row["levels"]]
    moves = np.abs(np.diff(close[: t + 1]))
    return {
        "actual": close[dates.index(row["target_date"])],
        "naive": close[t],
        "drift": close[t] + h * (close[t] - close[0]) / max(t, 1),
        "ewma": ewma,
        "scale": moves.mean() if t > 0 else None,
    }


def read(store: LedgerStore) -> list[dict[str, Any]]:
    with store.connect("reading") as connection:
        query = sa.select(outcomes).order_by(outcomes.c.forecast_id, outcomes.c.step)
        return [dict(r._mapping) for r in connection.execute(query)]


def ledger_rows(store: LedgerStore) -> list[dict[str, Any]]:
    """Every forecast step of the ledger: its forecast's row with `step` and `target_date`."""
    from forecaster.monitor.schema import forecasts

    with store.connect("reading") as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(forecasts).order_by(forecasts.c.id))]
    return [
        {**row, "step": h, "target_date": dt.date.fromisoformat(day)}
        for row in rows
        for h, day in enumerate(row["target_dates"], start=1)
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_scoring_matches_an_independent_computation_and_twice_changes_nothing(kind: str, tmp_path: Path) -> None:
    frame = bars()
    with ledger_database(kind, tmp_path) as uri:
        store = LedgerStore(uri)
        try:
            store.append([r.row() for r in ledger(frame)])
            first = score(store, frame, "bars.csv")
            scored = read(store)
            again = score(store, frame, "bars.csv")
            assert read(store) == scored and again.scored == 0  # idempotent: not one row changed
            rows = ledger_rows(store)
        finally:
            store.close()
    wanted = {(row["id"], row["step"]): expected(frame, row) for row in rows}
    assert {(o["forecast_id"], o["step"]) for o in scored} == {i for i, e in wanted.items() if e is not None}
    for outcome in scored:
        truth = wanted[outcome["forecast_id"], outcome["step"]]
        assert truth is not None
        assert outcome["actual"] == truth["actual"]  # the bar's own close
        np.testing.assert_allclose(outcome["naive"], truth["naive"], rtol=1e-6)  # the panel holds float32
        np.testing.assert_allclose(outcome["drift"], truth["drift"], rtol=1e-5)
        for name, rtol in (("scale", 1e-9), ("ewma", 1e-5)):  # none on a series' first day
            if truth[name] is None:
                assert outcome[name] is None, name
            else:
                np.testing.assert_allclose(outcome[name], truth[name], rtol=rtol, err_msg=name)
        assert outcome["data"] == "bars.csv"
    served = len(rows)
    assert (first.scored, first.resolved, first.pending) == (len(scored), len(scored), served - len(scored))
    assert first.unmatched == 2 + 2  # the history of no series here, and the one whose last close differs
    assert first.last_bar == days()[79]


def test_a_missing_bar_stays_pending_until_the_bars_have_it(tmp_path: Path) -> None:
    frame = bars()
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.append([record("AAA", 68, 3, frame).row()])  # targets: days 69, 70 (no AAA bar), 71
    score(store, frame, "bars.csv")
    assert [(o["forecast_id"], o["step"]) for o in read(store)] == [(1, 1), (1, 3)]
    full = random_ohlc(("AAA", "BBB"), days=80, seed=3, start="2024-01-01", decimals=2)
    later = score(store, full, "full.csv")
    assert later.scored == 1 and later.pending == 0
    assert [(o["forecast_id"], o["step"]) for o in read(store)] == [(1, 1), (1, 2), (1, 3)]


def test_a_killed_scoring_run_finishes_on_the_next_with_the_same_outcomes(tmp_path: Path) -> None:
    frame = bars()
    records = [r.row() for r in ledger(frame)]
    once, killed = (LedgerStore(f"sqlite:///{tmp_path / name}.db") for name in ("once", "killed"))
    for store in (once, killed):
        store.append(records)
    score(once, frame, "bars.csv")

    def kill(scored: int) -> None:
        raise KeyboardInterrupt  # as a SIGINT between two chunks

    with pytest.raises(KeyboardInterrupt):
        score(killed, frame, "bars.csv", chunk=7, progress=kill)
    partial = read(killed)
    assert 0 < len(partial) < len(read(once))
    score(killed, frame, "bars.csv", chunk=7)
    assert drop_time(read(killed)) == drop_time(read(once))


def drop_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "scored_at"} for row in rows]
