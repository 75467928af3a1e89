"""forecaster.evaluation.backtest: the backtest, its point metrics, point baselines, MASE scales and the
Diebold-Mariano report, against numbers worked out by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from factories import flat_panel_frame, random_ohlc

from forecaster.data.windows import Panel
from forecaster.errors import DataError
from forecaster.evaluation.backtest import (
    DEFAULT_LEVELS,
    Backtest,
    PredictFn,
    backtest,
    mase_scales,
    rolling_origins,
    score,
    significance,
    significance_summary,
    summary,
)
from forecaster.evaluation.baselines import point_forecasts

LEVELS = (0.1, 0.5, 0.9)


def hand_backtest() -> Backtest:
    """Two series, H=2: series A has origins 0 and 1, series B origin 2."""
    last = np.array([10.0, 11.0, 20.0])
    model = np.array([[10.5, 12.5], [11.0, 11.0], [21.0, 21.0]])
    band = np.array([-1.0, 0.0, 1.0])  # quantiles at 0.1, 0.5, 0.9: the median -+ 1
    return Backtest(
        tickers=("A", "B"),
        series_id=np.array([0, 0, 1]),
        origin_dates=np.array(["2021-01-04", "2021-01-05", "2021-01-04"], dtype="datetime64[ns]"),
        last_close=last,
        actual=np.array([[11.0, 12.0], [12.0, 10.0], [19.0, 22.0]]),
        forecasts={"model": model, "naive": np.repeat(last[:, None], 2, axis=1)},
        quantiles={"model": model[..., None] + band},
        levels=LEVELS,
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
    return Panel.from_frame(flat_panel_frame(closes, start="2021-01-04"))


def test_naive_repeats_the_last_close_and_drift_extends_the_mean_change_since_the_first_bar() -> None:
    panel = hand_panel()
    origins = rolling_origins(panel, lookback=2, horizon=2)
    assert origins.tolist() == [1, 2, 3, 7]  # A at t = 1, 2, 3; B at t = 1

    forecasts = point_forecasts(panel, origins, horizon=2)

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


def scaled_predict(factors: tuple[float, ...], levels: tuple[float, ...]) -> PredictFn:
    """A stand-in model: quantile i = last close * factors[i] at every step."""

    def predict(X: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        last = X[:, -1, 3].astype(np.float64)[:, None, None]
        return last * np.array(factors) * np.ones((len(X), 2, len(factors))), levels  # -> (N, H, Q)

    return predict


def test_backtest_scores_every_origin_with_the_models_median_and_outer_quantiles() -> None:
    panel = hand_panel()
    origins = rolling_origins(panel, lookback=2, horizon=2)

    result = backtest(scaled_predict((0.9, 1.0, 1.2), LEVELS), panel, 2, 2, origins)

    np.testing.assert_array_equal(result.actual, [[11, 15], [15, 14], [14, 13], [95, 85]])
    np.testing.assert_array_equal(result.last_close, [12, 11, 15, 90])
    np.testing.assert_allclose(result.forecasts["model"], result.forecasts["naive"])  # median = last close
    np.testing.assert_allclose(result.lower, 0.9 * result.forecasts["naive"])
    np.testing.assert_allclose(result.upper, 1.2 * result.forecasts["naive"])
    assert result.series_id.tolist() == [0, 0, 0, 1]
    assert score(result)["model"]["mae"] == score(result)["naive"]["mae"]
    # the target date of step h is the h-th bar after the origin, within the same ticker
    assert result.target_dates is not None
    assert (result.target_dates[:, 0] > result.origin_dates).all()
    assert (np.diff(result.target_dates, axis=1) > np.timedelta64(0)).all()


def test_probabilistic_baselines_use_the_models_levels_and_their_median_is_the_last_close() -> None:
    panel = hand_panel()
    origins = rolling_origins(panel, lookback=2, horizon=2)
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)

    result = backtest(scaled_predict((0.8, 0.9, 1.0, 1.1, 1.2), levels), panel, 2, 2, origins)

    assert result.levels == levels
    assert result.quantiles["ewma"].shape == (4, 2, 5)
    np.testing.assert_allclose(result.quantiles["ewma"][..., 2], result.forecasts["naive"], rtol=1e-12)
    np.testing.assert_allclose(result.forecasts["ewma"], result.forecasts["naive"])
    metrics = score(result)
    for name in ("model", "ewma"):
        assert {"pinball_q0.05", "pinball_q0.95", "spl", "coverage", "coverage_90", "coverage_50", "msis"} <= set(
            metrics[name]
        )
        assert {"width_90", "width_50"} <= set(metrics[name])
    # garch needs GARCH_MIN_RETURNS returns before the first origin: none here, so no forecast and no metrics
    assert np.isnan(result.quantiles["garch"]).all() and np.isnan(result.forecasts["garch"]).all()
    assert "garch" not in metrics
    assert set(metrics) == {"model", "naive", "drift", "ewma"}


def test_backtest_without_a_model_scores_the_baselines_at_the_default_levels() -> None:
    panel = hand_panel()
    result = backtest(None, panel, 2, 2, rolling_origins(panel, lookback=2, horizon=2))

    assert result.levels == DEFAULT_LEVELS == (0.1, 0.5, 0.9)
    assert "model" not in result.quantiles and result.lower is None
    assert set(score(result)) == {"naive", "drift", "ewma"}
    assert significance(result) == {}


def test_a_forecast_is_scored_only_on_the_origins_where_it_has_one() -> None:
    bt = hand_backtest()
    partial = np.where(bt.series_id[:, None] == 0, bt.forecasts["naive"], np.nan)  # series B has none
    only_a = dataclasses.replace(bt, forecasts={"garch": partial}, quantiles={})

    metrics = score(only_a)["garch"]

    # series A's naive errors: [-1, -2], [-1, 1]
    assert metrics["mae"] == pytest.approx([1.0, 1.5])
    assert metrics["mase"] == pytest.approx([1.0 / 1.25, 1.5 / 1.25])


def dm_backtest(model_error: np.ndarray, naive_error: np.ndarray) -> Backtest:
    """One series, an origin a day, H = 2; the model's band is its median -+ 1, ewma's -+ 5."""
    n = len(model_error)
    actual = np.full((n, 2), 100.0)
    model = actual + model_error[:, None]
    return Backtest(
        tickers=("A",),
        series_id=np.zeros(n, dtype=np.int32),
        origin_dates=pd.bdate_range("2021-01-04", periods=n).to_numpy(),
        last_close=np.full(n, 100.0),
        actual=actual,
        forecasts={"model": model, "naive": actual + naive_error[:, None]},
        quantiles={"model": model[..., None] + np.array([-1.0, 0.0, 1.0]), "ewma": actual[..., None] + [-5, 0, 5]},
        levels=LEVELS,
        mase_scale=np.array([1.0]),
    )


def test_significance_reports_a_dm_test_per_step_for_each_comparison() -> None:
    rng = np.random.default_rng(0)
    errors = rng.normal(0.0, 1.0, 60)
    clearly_better = dm_backtest(0.1 * errors, 3.0 * errors + 2.0)

    report = significance(clearly_better)

    assert set(report) == {"model_vs_naive", "model_vs_ewma"}
    assert report["model_vs_naive"]["metric"] == "abs_error"
    assert report["model_vs_ewma"]["metric"] == "mean_pinball"
    for block in report.values():
        assert len(block["dm_stat"]) == len(block["p_value"]) == len(block["verdict"]) == 2
        assert block["n_dates"] == [60, 60]
        assert all(stat < 0 for stat in block["dm_stat"])  # negative: the model's loss is lower
        assert all(p < 0.001 for p in block["p_value"])
        assert block["verdict"] == ["better", "better"]
    flat = significance_summary(report)
    assert set(flat) == {f"{k}_{f}_h{h}" for k in report for f in ("p_value", "dm_stat") for h in (1, 2)}


def test_significance_of_identical_losses_is_indistinguishable_with_p_1() -> None:
    errors = np.random.default_rng(1).normal(0.0, 1.0, 30)
    report = significance(dm_backtest(errors, errors))["model_vs_naive"]
    assert report["dm_stat"] == [0.0, 0.0]
    assert report["p_value"] == [1.0, 1.0]
    assert report["verdict"] == ["indistinguishable", "indistinguishable"]


def test_rolling_origins_from_a_date_keeps_only_later_origins() -> None:
    panel = hand_panel()
    later = rolling_origins(panel, lookback=2, horizon=2, from_date="2021-01-06")  # A's t=2 is Wed 01-06
    assert later.tolist() == [2, 3]


def test_backtest_without_origins_names_the_rows_needed() -> None:
    with pytest.raises(DataError, match="lookback \\+ horizon = 12 rows"):
        backtest(None, hand_panel(), 10, 2, np.array([], dtype=np.int64))


def test_backtest_scores_har_and_rgarch_and_tests_the_model_against_every_quantile_baseline() -> None:
    panel = Panel.from_frame(random_ohlc(tickers=("AAA", "BBB"), days=420, seed=2))
    origins = rolling_origins(panel, lookback=10, horizon=2, from_date="2021-03-01")  # ~300 bars before

    result = backtest(scaled_predict((0.97, 1.0, 1.03), LEVELS), panel, 10, 2, origins)

    for name in ("har", "rgarch", "garch"):
        assert np.isfinite(result.quantiles[name]).all(), name
    # har's point forecast is its median, from the empirical standardised returns, not the last close
    np.testing.assert_allclose(result.forecasts["har"], result.quantiles["har"][..., 1])
    metrics = score(result)
    assert {"qlike", "hit_q0.1", "hit_q0.5", "hit_q0.9", "spl"} <= set(metrics["har"])
    report = significance(result)
    assert set(report) == {f"model_vs_{name}" for name in ("naive", "ewma", "garch", "rgarch", "har")}
    assert report["model_vs_har"]["metric"] == "mean_pinball" and len(report["model_vs_har"]["verdict"]) == 2


def test_a_quantile_baseline_without_forecasts_is_tested_as_indistinguishable() -> None:
    panel = hand_panel()  # far too short for har, garch and rgarch
    result = backtest(scaled_predict((0.9, 1.0, 1.1), LEVELS), panel, 2, 2, rolling_origins(panel, 2, 2))
    report = significance(result)
    assert report["model_vs_har"]["verdict"] == ["indistinguishable"] * 2
    assert report["model_vs_har"]["p_value"] == [None, None] and report["model_vs_har"]["n_dates"] == [0, 0]
