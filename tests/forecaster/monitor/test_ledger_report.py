"""The live report: every figure equals an independent computation from the ledger's rows and their
outcomes (pandas and loops here, not the evaluation's functions), and it is strict JSON."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from ledger_cases import LEVELS, OTHER_LEVELS, bars, ledger, record
from ledger_db import KINDS, ledger_database
from scipy.stats import t as student_t

from forecaster.monitor.report import live_report
from forecaster.monitor.schema import forecasts, outcomes
from forecaster.monitor.score import score
from forecaster.monitor.store import LedgerStore


def joined(store: LedgerStore) -> pd.DataFrame:
    """One row per forecast step: its forecast's columns, its step's quantiles and its outcome's."""
    with store.connect("reading") as connection:
        rows = [dict(r._mapping) for r in connection.execute(sa.select(forecasts))]
        done = {(r.forecast_id, r.step): dict(r._mapping) for r in connection.execute(sa.select(outcomes))}
    steps = []
    for row in rows:
        for h, values in enumerate(row["quantiles"], start=1):
            outcome = done.get((row["id"], h), {"actual": None, "naive": None, "drift": None, "ewma": None})
            steps.append({**row, **{"scale": None, **outcome}, "step": h, "quantiles": values})
    return pd.DataFrame(steps)


def pinball_mean(actual: float, values: list[float], levels: list[float]) -> float:
    return float(np.mean([max(q * (actual - v), (q - 1) * (actual - v)) for q, v in zip(levels, values, strict=True)]))


def dm_p(frame: pd.DataFrame, loss: str, base: str, h: int) -> float | None:
    """HLN-corrected Diebold-Mariano p-value of the daily mean scaled loss difference, Bartlett lags < h
    (None: fewer than two days)."""
    d = ((frame[loss] - frame[base]) / frame["units"]).groupby(frame["as_of"]).mean().to_numpy()
    n, centred = len(d), d - d.mean()
    if n < 2:
        return None
    variance = sum(
        (1.0 if k == 0 else 2.0 * (1 - k / h)) * float(centred[k:] @ centred[: n - k]) / n for k in range(min(h, n))
    )
    stat = np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n) * d.mean() / np.sqrt(variance / n)
    return float(2 * student_t.sf(abs(stat), n - 1))


def expected(group: pd.DataFrame) -> dict[str, Any]:
    levels = group["levels"].iloc[0]
    done = group[group["actual"].notna()].copy()
    median = done["quantiles"].map(lambda q: q[levels.index(0.5)])
    figures: dict[str, Any] = {"served": len(group), "resolved": len(done)}
    figures["mae"] = {
        "model": (median - done["actual"]).abs().mean(),
        "naive": (done["naive"] - done["actual"]).abs().mean(),
        "drift": (done["drift"] - done["actual"]).abs().mean(),
    }
    figures["coverage"] = {}
    for i, q in enumerate(levels):
        if q < 0.5 and (1 - q) in levels:
            lower, upper = (
                done["quantiles"].map(lambda v, i=i: v[i]),
                done["quantiles"].map(lambda v, q=q: v[levels.index(1 - q)]),
            )
            inside = (done["actual"] >= lower) & (done["actual"] <= upper)
            figures["coverage"][f"{100 * (1 - 2 * q):g}"] = inside.mean()
    done["units"] = done["scale"]
    done["err_model"], done["err_naive"] = (median - done["actual"]).abs(), (done["naive"] - done["actual"]).abs()
    figures["p_naive"] = dm_p(done[done["units"].notna()], "err_model", "err_naive", int(group["step"].iloc[0]))
    scaled = done[done["scale"].notna() & done["ewma"].notna()].copy()
    for name in ("quantiles", "ewma"):
        scaled[f"loss_{name}"] = [
            pinball_mean(a, v, levels) / s
            for a, v, s in zip(scaled["actual"], scaled[name], scaled["scale"], strict=True)
        ]
    key = scaled["ticker"].fillna(scaled["series_id"])
    figures["spl"] = {
        "model": scaled.groupby(key)["loss_quantiles"].mean().mean(),
        "ewma": scaled.groupby(key)["loss_ewma"].mean().mean(),
    }
    scaled["units"] = 1.0
    figures["p_ewma"] = dm_p(scaled, "loss_quantiles", "loss_ewma", int(group["step"].iloc[0]))
    return figures


@pytest.mark.parametrize("kind", KINDS)
def test_every_figure_of_the_report_matches_an_independent_computation(kind: str, tmp_path: Path) -> None:
    frame = bars()
    records = ledger(frame) + [record(t, i, 2, frame, version="2") for t in ("AAA", "BBB") for i in range(5, 60, 3)]
    with ledger_database(kind, tmp_path) as uri:
        store = LedgerStore(uri)
        try:
            store.append([r.row() for r in records])
            score(store, frame, "bars.csv")
            report = live_report(store, model="m")
            table = joined(store)
        finally:
            store.close()
    json.dumps(report, allow_nan=False)  # strict JSON
    keys = [(g["version"], g["step"], tuple(g["levels"])) for g in report["groups"]]
    assert keys == [
        ("1", 1, tuple(OTHER_LEVELS)),
        ("1", 1, tuple(LEVELS)),
        ("1", 2, tuple(OTHER_LEVELS)),
        ("1", 2, tuple(LEVELS)),
        ("1", 3, tuple(LEVELS)),
        ("2", 1, tuple(LEVELS)),
        ("2", 2, tuple(LEVELS)),
    ]
    for got in report["groups"]:
        mine = table[
            (table["version"] == got["version"])
            & (table["step"] == got["step"])
            & table["levels"].map(lambda v, g=got: v == g["levels"])
        ]
        truth = expected(mine)
        assert (got["served"], got["resolved"]) == (truth["served"], truth["resolved"])
        assert got["pending"] == got["served"] - got["resolved"] and got["role"] == "served"
        for name in ("model", "naive", "drift"):
            assert got["mae"][name] == pytest.approx(truth["mae"][name], rel=1e-12)
        assert got["mae_ratio_naive"] == pytest.approx(truth["mae"]["model"] / truth["mae"]["naive"], rel=1e-12)
        assert got["coverage"] == pytest.approx(truth["coverage"], rel=1e-12)
        assert got["coverage"].keys() == ({"80", "50"} if len(got["levels"]) == 5 else {"90"})
        for name in ("model", "ewma"):
            assert got["spl"][name] == pytest.approx(truth["spl"][name], rel=1e-9)
        assert got["spl_ratio_ewma"] == pytest.approx(truth["spl"]["model"] / truth["spl"]["ewma"], rel=1e-9)
        for test, want in (("dm_vs_naive", truth["p_naive"]), ("dm_vs_ewma", truth["p_ewma"])):
            p_value = got[test]["p_value"]
            assert p_value is None if want is None else p_value == pytest.approx(want, rel=1e-6), test
    assert sum(g["dm_vs_naive"]["p_value"] is not None for g in report["groups"]) >= 5  # tests that ran


def test_the_report_filters_by_model_and_as_of_date_and_keeps_unresolved_groups(tmp_path: Path) -> None:
    frame = bars()
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.append([record("AAA", 40, 2, frame).row(), record("AAA", 78, 2, frame, model="other").row()])
    score(store, frame, "bars.csv")
    report = live_report(store)
    assert [(g["model"], g["step"], g["resolved"]) for g in report["groups"]] == [
        ("m", 1, 1),
        ("m", 2, 1),
        ("other", 1, 1),
        ("other", 2, 0),  # its target date is after the last bar
    ]
    pending = report["groups"][-1]
    assert pending["mae"] == {"model": None, "naive": None, "drift": None} and pending["dm_vs_naive"] is None
    json.dumps(report, allow_nan=False)
    since = live_report(store, since=dt.date(2024, 4, 1))
    assert {g["model"] for g in since["groups"]} == {"other"} and since["since"] == "2024-04-01"
    assert {g["model"] for g in live_report(store, model="m")["groups"]} == {"m"}
