"""forecaster.evaluation.calibration_tests: Kupiec and Christoffersen against hand computation, the
tails tested, non-overlapping h-step forecasts, coverage by volatility tercile and by year, and the
report of a controlled backtest."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forecaster.evaluation.backtest import Backtest
from forecaster.evaluation.calibration_tests import (
    MIN_TESTED,
    calibration,
    calibration_summary,
    christoffersen,
    coverage_by_tercile,
    coverage_by_year,
    kupiec,
    series_rows,
    tail_levels,
    ticker_tail_tests,
    transition_counts,
)


def chi2_1_sf(x: float) -> float:
    """P(chi2(1) > x) = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(x / 2.0))


def test_kupiec_of_3_violations_in_100_at_5_percent_matches_hand_computation() -> None:
    # LR = -2 [97 ln 0.95 + 3 ln 0.05 - 97 ln 0.97 - 3 ln 0.03] = 0.97686
    test = kupiec(3, 100, 0.05)
    assert test.lr == pytest.approx(0.9768591165554064, rel=1e-9)
    assert test.p_value == pytest.approx(chi2_1_sf(0.9768591165554064), rel=1e-9)  # 0.32298
    assert test.passed


def test_kupiec_edges_no_violation_and_exactly_the_expected_rate() -> None:
    # no violation: LR = -2 n ln(1 - p) (0 ln 0 = 0); 0 in 100 at 5%: 10.259, rejected
    assert kupiec(0, 100, 0.05).lr == pytest.approx(-200.0 * math.log(0.95), rel=1e-12)
    assert not kupiec(0, 100, 0.05).passed
    assert kupiec(5, 100, 0.05).lr == pytest.approx(0.0, abs=1e-12) and kupiec(5, 100, 0.05).p_value == 1.0


def test_christoffersen_counts_transitions_and_is_zero_when_violations_do_not_cluster() -> None:
    sequence = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    # pairs: 00 01 11 10 00 00 01 10 00 -> n00 4, n01 2, n10 2, n11 1
    assert transition_counts(sequence) == (4, 2, 2, 1)
    # pi0 = 2/6 = pi1 = 1/3 = pi = 3/9: the Markov alternative fits no better
    test = christoffersen(sequence)
    assert test.lr == pytest.approx(0.0, abs=1e-12) and test.passed


def test_christoffersen_rejects_clustered_violations_as_computed_by_hand() -> None:
    sequence = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    assert transition_counts(sequence) == (6, 1, 1, 3)
    # pi0 = 1/7, pi1 = 3/4, pi = 4/11:
    # LR = -2 [7 ln(7/11) + 4 ln(4/11) - 6 ln(6/7) - ln(1/7) - ln(1/4) - 3 ln(3/4)] = 4.18029
    test = christoffersen(sequence)
    assert test.lr == pytest.approx(4.180289412842446, rel=1e-9)
    assert test.p_value == pytest.approx(chi2_1_sf(4.180289412842446), rel=1e-9)  # 0.0409
    assert not test.passed
    assert math.isnan(christoffersen(np.array([True])).p_value)  # one point: not testable


def test_the_tails_tested_are_the_levels_nearest_5_and_95_percent() -> None:
    assert tail_levels((0.1, 0.5, 0.9)) == [(0, "lower", 0.1), (2, "upper", pytest.approx(0.1))]
    assert tail_levels((0.025, 0.05, 0.1, 0.5, 0.9, 0.95, 0.975)) == [
        (1, "lower", 0.05),
        (5, "upper", pytest.approx(0.05)),
    ]
    assert tail_levels((0.5,)) == []


def test_h_step_tails_are_tested_on_every_h_th_origin_of_each_ticker_in_date_order() -> None:
    n = 2 * MIN_TESTED
    dates = pd.bdate_range("2021-01-04", periods=n).to_numpy()[::-1]  # given in reverse: sorted by date
    violated = np.zeros(n, dtype=bool)
    violated[::-1][::2][:3] = True  # 3 violations on the even origins in date order, none on the odd
    series = np.zeros(n, dtype=np.int32)
    groups = series_rows(series, dates)
    [(s, count, hits, k, _)] = ticker_tail_tests(violated, groups, step=2, rate=0.05)
    assert (s, count, hits) == (0, MIN_TESTED, 3)
    assert k.lr == pytest.approx(kupiec(3, MIN_TESTED, 0.05).lr)
    # a ticker with fewer non-overlapping forecasts than MIN_TESTED is not tested
    assert ticker_tail_tests(violated, groups, step=3, rate=0.05) == []
    # rows of several tickers, interleaved and out of order, grouped per ticker in date order
    grouped = series_rows(np.array([1, 0, 1, 0]), np.array([4, 3, 2, 1], dtype="datetime64[D]"))
    assert [(s, rows.tolist()) for s, rows in grouped] == [(0, [3, 1]), (1, [2, 0])]


def test_coverage_by_tercile_of_implied_volatility_and_by_origin_year() -> None:
    # 6 one-step forecasts around 100 with three band widths (two each); the narrow ones miss
    half = np.array([1.0, 1.0, 5.0, 5.0, 20.0, 20.0])
    quantiles = (100.0 + np.stack([-half, np.zeros(6), half], axis=1))[:, None, :]
    actual = np.array([[103.0], [100.5], [103.0], [110.0], [103.0], [90.0]])
    tercile = coverage_by_tercile(quantiles, (0.1, 0.5, 0.9), actual)
    assert tercile["low"] == [0.5] and tercile["mid"] == [0.5] and tercile["high"] == [1.0]
    years = ["2019-12-31", "2019-12-31", "2020-01-02", "2019-12-31", "2020-01-02", "2020-01-02"]
    # 2019: rows 0 (out), 1 (in), 3 (out); 2020: rows 2, 4, 5 (all in)
    assert coverage_by_year(quantiles, actual, np.array(years, dtype="datetime64[ns]")) == {
        "2019": [pytest.approx(1 / 3)],
        "2020": [1.0],
    }


def tail_backtest() -> Backtest:
    """Two tickers, 40 daily origins each, H = 1; quantiles 90 / 100 / 110. Ticker A's actuals fall
    below 90 on 4 days (the 10% expected), B's on 12 days in a row (clustered, too many)."""
    n = 40
    actual = np.full((2 * n, 1), 100.0)
    actual[[3, 13, 23, 33], 0] = 80.0
    actual[n + 10 : n + 22, 0] = 80.0
    dates = pd.bdate_range("2021-01-04", periods=n).to_numpy()
    return Backtest(
        tickers=("A", "B"),
        series_id=np.repeat([0, 1], n).astype(np.int32),
        origin_dates=np.concatenate([dates, dates]),
        last_close=np.full(2 * n, 100.0),
        actual=actual,
        forecasts={"model": np.full((2 * n, 1), 100.0)},
        quantiles={"model": np.tile([90.0, 100.0, 110.0], (2 * n, 1, 1)), "ewma": np.full((2 * n, 1, 3), np.nan)},
        levels=(0.1, 0.5, 0.9),
        mase_scale=np.array([1.0, 1.0]),
    )


def test_calibration_report_of_a_controlled_backtest() -> None:
    report = calibration(tail_backtest())

    assert set(report) == {"model"}  # ewma has no forecast at any origin
    model = report["model"]
    assert model["band"] == 80.0
    # hit rates: 16 of 80 actuals (the 80s) below 90 and the median 100, all 80 below 110
    assert model["curve"] == {"nominal": [0.1, 0.5, 0.9], "empirical": [[0.2, 0.2, 1.0]]}
    lower, upper = model["tails"]
    assert (lower["level"], lower["side"], lower["expected_rate"], lower["n_tickers"]) == (0.1, "lower", 0.1, [2])
    a, b = lower["tickers"][0]
    assert (a["ticker"], a["n"], a["violations"], b["violations"]) == ("A", 40, 4, 12)
    assert a["kupiec_lr"] == pytest.approx(0.0, abs=1e-12) and b["kupiec_p"] < 0.05
    assert b["christoffersen_p"] < 0.05  # 11 of 12 violations followed by another
    assert lower["kupiec_pass"] == [0.5] and lower["both_pass"] == [0.5]
    # no actual above 110: 0 of 40 at 10% for each ticker fails Kupiec
    assert upper["kupiec_pass"] == [0.0] and upper["christoffersen_pass"] == [1.0]
    assert "tickers" not in calibration(tail_backtest(), per_ticker=())["model"]["tails"][0]

    flat = calibration_summary(report)
    assert flat["model_kupiec_pass_q0.1"] == 0.5 and flat["model_kupiec_pass_q0.9"] == 0.0
    assert flat["model_coverage_low_vol"] == pytest.approx(0.8)  # every band alike: all rows in "low"
