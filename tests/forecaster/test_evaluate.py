"""forecaster.evaluate: metrics, baselines and MASE scales against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import DataError
from forecaster.evaluate import (
    Backtest,
    backtest,
    baseline_forecasts,
    mase_scales,
    rolling_origins,
    score,
    summary,
)
from forecaster.windows import Panel


def hand_backtest() -> Backtest:
    """Two series, H=2: series A has origins 0 and 1, series B origin 2."""
    last = np.array([10.0, 11.0, 20.0])
    model = np.array([[10.5, 12.5], [11.0, 11.0], [21.0, 21.0]])
    return Backtest(
        tickers=("A", "B"),
        series_id=np.array([0, 0, 1]),
        origin_dates=np.array(["2021-01-04", "2021-01-05", "2021-01-04"], dtype="datetime64[ns]"),
        last_close=last,
        actual=np.array([[11.0, 12.0], [12.0, 10.0], [19.0, 22.0]]),
        forecasts={"model": model, "naive": np.repeat(last[:, None], 2, axis=1)},
        lower=model - 1.0,
        upper=model + 1.0,
        mase_scale=np.array([1.25, 2.0]),
    )


def test_model_metrics_per_step_match_hand_computation() -> None:
    metrics = score(hand_backtest())["model"]
    # errors (model - actual): A [-0.5, 0.5], [-1, 1]; B [2, -1]
    assert metrics["mae"] == pytest.approx([(0.5 + 1 + 2) / 3, (0.5 + 1 + 1) / 3])
    assert metrics["rmse"] == pytest.approx([math.sqrt((0.25 + 1 + 4) / 3), math.sqrt((0.25 + 1 + 1) / 3)])
    assert metrics["mape"] == pytest.approx(
        [100 * (0.5 / 11 + 1 / 12 + 2 / 19) / 3, 100 * (0.5 / 12 + 1 / 10 + 1 / 22) / 3]
    )
    # MASE: per series MAE / that series' scale, then the mean over series
    assert metrics["mase"] == pytest.approx(
        [((0.5 + 1) / 2 / 1.25 + 2 / 2.0) / 2, ((0.5 + 1) / 2 / 1.25 + 1 / 2.0) / 2]
    )
    # direction vs the last close: row 0 up/up = up/up; row 1 flat vs up/down; row 2 up/up vs down/up
    assert metrics["dir_acc"] == pytest.approx([1 / 3, 2 / 3])
    # interval [model - 1, model + 1] holds the actual: 11, 12 | 12, 10 | not 19, 22
    assert metrics["coverage"] == pytest.approx([2 / 3, 1.0])


def test_naive_metrics_match_hand_computation_and_have_no_coverage() -> None:
    metrics = score(hand_backtest())["naive"]
    # errors (last - actual): A [-1, -2], [-1, 1]; B [1, -2]
    assert metrics["mae"] == pytest.approx([1.0, 5 / 3])
    assert metrics["rmse"] == pytest.approx([1.0, math.sqrt(9 / 3)])
    assert metrics["mape"] == pytest.approx(
        [100 * (1 / 11 + 1 / 12 + 1 / 19) / 3, 100 * (2 / 12 + 1 / 10 + 2 / 22) / 3]
    )
    assert metrics["mase"] == pytest.approx([(1 / 1.25 + 1 / 2) / 2, (1.5 / 1.25 + 2 / 2) / 2])
    assert metrics["dir_acc"] == pytest.approx([0.0, 0.0])  # a flat forecast never calls a move
    assert "coverage" not in metrics


def test_summary_is_the_mean_over_steps() -> None:
    flat = summary(score(hand_backtest()))
    assert flat["model_mae"] == pytest.approx((3.5 / 3 + 2.5 / 3) / 2)
    assert flat["naive_dir_acc"] == 0.0
    assert set(flat) >= {f"{n}_{m}" for n in ("model", "naive") for m in ("mae", "rmse", "mape", "mase", "dir_acc")}


def hand_panel() -> Panel:
    """A: closes 10, 12, 11, 15, 14, 13; B: 100, 90, 95, 85 (open = high = low = close)."""
    closes = {"A": [10.0, 12.0, 11.0, 15.0, 14.0, 13.0], "B": [100.0, 90.0, 95.0, 85.0]}
    parts = [
        pd.DataFrame(
            {
                "date": pd.bdate_range("2021-01-04", periods=len(c)),
                "ticker": t,
                "open": c,
                "high": c,
                "low": c,
                "close": c,
            }
        )
        for t, c in closes.items()
    ]
    return Panel.from_frame(pd.concat(parts, ignore_index=True))


def test_naive_repeats_the_last_close_and_drift_extends_the_mean_change_since_the_first_bar() -> None:
    panel = hand_panel()
    origins = rolling_origins(panel, lookback=2, horizon=2)
    assert origins.tolist() == [1, 2, 3, 7]  # A at t = 1, 2, 3; B at t = 1

    forecasts = baseline_forecasts(panel, origins, horizon=2)

    np.testing.assert_allclose(forecasts["naive"], [[12, 12], [11, 11], [15, 15], [90, 90]])
    # drift = last + h * (last - first) / (t - first)
    np.testing.assert_allclose(
        forecasts["drift"],
        [
            [12 + 1 * 2 / 1, 12 + 2 * 2 / 1],
            [11 + 1 * 1 / 2, 11 + 2 * 1 / 2],
            [15 + 1 * 5 / 3, 15 + 2 * 5 / 3],
            [90 - 1 * 10 / 1, 90 - 2 * 10 / 1],
        ],
    )


def test_mase_scale_is_each_series_mean_absolute_one_day_change() -> None:
    np.testing.assert_allclose(mase_scales(hand_panel()), [(2 + 1 + 4 + 1 + 1) / 5, (10 + 5 + 10) / 3])


def test_backtest_scores_every_origin_with_the_models_median_and_outer_quantiles() -> None:
    panel = hand_panel()
    origins = rolling_origins(panel, lookback=2, horizon=2)

    def predict(X: np.ndarray) -> tuple[np.ndarray, int]:
        last = X[:, -1, 3].astype(np.float64)[:, None, None]
        return last * np.array([0.9, 1.0, 1.2]) * np.ones((len(X), 2, 3)), 1  # -> (N, H, Q)

    result = backtest(predict, panel, 2, 2, origins)

    np.testing.assert_array_equal(result.actual, [[11, 15], [15, 14], [14, 13], [95, 85]])
    np.testing.assert_array_equal(result.last_close, [12, 11, 15, 90])
    np.testing.assert_allclose(result.forecasts["model"], result.forecasts["naive"])  # median = last close
    np.testing.assert_allclose(result.lower, 0.9 * result.forecasts["naive"])
    np.testing.assert_allclose(result.upper, 1.2 * result.forecasts["naive"])
    assert result.series_id.tolist() == [0, 0, 0, 1]
    assert score(result)["model"]["mae"] == score(result)["naive"]["mae"]
    table = result.table()
    assert len(table) == 4 * 2
    assert table.columns.tolist() == [
        "ticker",
        "origin_date",
        "step",
        "target_date",
        "last_close",
        "actual",
        "model",
        "naive",
        "drift",
        "model_lower",
        "model_upper",
    ]
    # the target date of step h is the h-th bar after the origin, within the same ticker
    assert (table["target_date"] > table["origin_date"]).all()
    assert table.groupby(["ticker", "origin_date"])["target_date"].is_monotonic_increasing.all()
    assert table["ticker"].tolist() == ["A"] * 6 + ["B"] * 2
    assert table["step"].tolist() == [1, 2] * 4


def test_rolling_origins_from_a_date_keeps_only_later_origins() -> None:
    panel = hand_panel()
    later = rolling_origins(panel, lookback=2, horizon=2, from_date="2021-01-06")  # A's t=2 is Wed 01-06
    assert later.tolist() == [2, 3]


def test_backtest_without_origins_names_the_rows_needed() -> None:
    with pytest.raises(DataError, match="lookback \\+ horizon = 12 rows"):
        backtest(None, hand_panel(), 10, 2, np.array([], dtype=np.int64))
