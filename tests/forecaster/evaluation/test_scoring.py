"""forecaster.evaluation.scoring: pinball, SPL, coverage, width and MSIS against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from forecaster.evaluation.baselines import gaussian_quantiles
from forecaster.evaluation.scoring import (
    central_bands,
    hit_rates,
    implied_variance,
    interval_score,
    pinball,
    qlike,
    quantile_metrics,
    series_mean,
)

LEVELS = (0.1, 0.5, 0.9)
# three forecasts of one step: series A (scale 2) twice, series B (scale 4) once
ACTUAL = np.array([[10.0], [12.0], [20.0]])
QUANTILES = np.array([[[9.0, 10.0, 11.0]], [[9.0, 10.0, 11.0]], [[18.0, 21.0, 22.0]]])  # -> (N=3, H=1, Q=3)
SERIES = np.array([0, 0, 1])
SCALE = np.array([2.0, 4.0])


def test_pinball_loss_per_level_matches_hand_computation() -> None:
    loss = pinball(ACTUAL, QUANTILES, LEVELS)[:, 0, :]
    # y - f per level, then max(q (y - f), (q - 1)(y - f))
    np.testing.assert_allclose(
        loss,
        [
            [0.1 * 1, 0.0, 0.1 * 1],  # y - f = 1, 0, -1
            [0.1 * 3, 0.5 * 2, 0.9 * 1],  # 3, 2, 1 (above the whole band)
            [0.1 * 2, 0.5 * 1, 0.1 * 2],  # 2, -1, -2
        ],
    )


def test_quantile_metrics_match_hand_computation() -> None:
    metrics = quantile_metrics(QUANTILES, LEVELS, ACTUAL, SERIES, SCALE)

    assert metrics["pinball_q0.1"] == pytest.approx([(0.1 + 0.3 + 0.2) / 3])
    assert metrics["pinball_q0.5"] == pytest.approx([(0.0 + 1.0 + 0.5) / 3])
    assert metrics["pinball_q0.9"] == pytest.approx([(0.1 + 0.9 + 0.2) / 3])
    # SPL: mean over levels per forecast (0.2/3, 2.2/3, 0.9/3), per series mean / scale, mean over series
    assert metrics["spl"] == pytest.approx([((0.2 / 3 + 2.2 / 3) / 2 / 2.0 + (0.9 / 3) / 4.0) / 2])
    # the 0.1-0.9 band holds 10 and 20 but not 12
    assert metrics["coverage"] == pytest.approx([2 / 3])
    assert metrics["coverage_80"] == pytest.approx([2 / 3])
    # widths 2, 2 (A, scale 2) and 4 (B, scale 4): 1 for each series
    assert metrics["width_80"] == pytest.approx([1.0])
    # MSIS, alpha = 0.2: width + 2/0.2 * miss; A: 2 and 2 + 10 * 1; B: 4
    assert metrics["msis"] == pytest.approx([((2 + 12) / 2 / 2.0 + 4 / 4.0) / 2])
    assert "coverage_50" not in metrics


def test_interval_score_penalises_misses_on_either_side_by_two_over_alpha() -> None:
    actual = np.array([5.0, 0.0, 12.0])
    score = interval_score(actual, np.full(3, 1.0), np.full(3, 10.0), alpha=0.5)
    np.testing.assert_allclose(score, [9.0, 9.0 + 4.0 * 1.0, 9.0 + 4.0 * 2.0])


def test_central_bands_pair_each_level_with_its_mirror_widest_first() -> None:
    assert central_bands((0.05, 0.25, 0.5, 0.75, 0.95)) == [(0, 4, 90.0), (1, 3, 50.0)]
    assert central_bands((0.1, 0.5, 0.8)) == []  # 0.8 is not the mirror of 0.1
    assert central_bands((0.025, 0.5, 0.975)) == [(0, 2, 95.0)]


def test_coverage_and_width_are_named_by_nominal_percent() -> None:
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    quantiles = np.array([[[1.0, 4.0, 5.0, 6.0, 9.0]]])  # one forecast, one step
    metrics = quantile_metrics(quantiles, levels, np.array([[7.0]]), np.array([0]), np.array([2.0]))
    assert metrics["coverage_90"] == [1.0] and metrics["coverage_50"] == [0.0]
    assert metrics["width_90"] == pytest.approx([8.0 / 2.0]) and metrics["width_50"] == pytest.approx([2.0 / 2.0])
    assert metrics["msis"] == pytest.approx([8.0 / 2.0])  # the widest band, 7 inside it
    assert metrics["coverage"] == metrics["coverage_90"]


def test_series_mean_weights_series_equally_whatever_their_row_counts() -> None:
    values = np.array([[1.0, 2.0], [3.0, 4.0], [10.0, 20.0]])
    # series 3 (ids need not be contiguous): rows 0 and 1; series 0: row 2
    result = series_mean(values, np.array([3, 3, 0]), scale=np.array([5.0, 1.0, 1.0, 2.0]))
    np.testing.assert_allclose(result, [(2.0 / 2.0 + 10.0 / 5.0) / 2, (3.0 / 2.0 + 20.0 / 5.0) / 2])


def test_series_mean_leaves_out_series_without_a_scale() -> None:
    values = np.array([[2.0], [4.0], [9.0], [3.0]])
    series_id = np.array([0, 0, 1, 2])
    # series 1 has a flat price (scale 0), series 2 none at all (NaN): only series 0 is averaged
    assert series_mean(values, series_id, np.array([2.0, 0.0, np.nan])).tolist() == [1.5]
    assert series_mean(values, series_id, np.array([2.0, 3.0, 1.0])).tolist() == [pytest.approx((1.5 + 3.0 + 3.0) / 3)]
    assert np.isnan(series_mean(values, series_id, np.array([0.0, 0.0, np.nan]))).all()


def test_implied_variance_reads_the_outer_levels_under_a_normal_law_exactly_for_a_gaussian_forecast() -> None:
    variance = np.array([[0.0004, 0.0009], [0.01, 0.04]])
    quantiles = gaussian_quantiles(np.array([50.0, 200.0]), variance, (0.05, 0.25, 0.5, 0.75, 0.95))
    np.testing.assert_allclose(implied_variance(quantiles, (0.05, 0.25, 0.5, 0.75, 0.95)), variance, rtol=1e-12)
    # by hand at the default levels: sd = log(q0.9 / q0.1) / (2 x 1.28155)
    by_hand = (math.log(110.0 / 90.0) / (2.0 * 1.2815515655446004)) ** 2
    assert implied_variance(np.array([[[90.0, 100.0, 110.0]]]), LEVELS)[0, 0] == pytest.approx(by_hand, rel=1e-12)
    assert np.isnan(implied_variance(np.array([[[100.0]]]), (0.5,))).all()


def test_qlike_of_known_variances_matches_hand_computation() -> None:
    # row 1: v 0.01 and r = 0.1 -> ln 0.01 + 1; row 2: v 0.04 and r = 0 -> ln 0.04
    actual = np.array([[100.0 * math.exp(0.1)], [50.0]])
    value = qlike(np.array([[0.01], [0.04]]), actual, np.array([100.0, 50.0]))
    assert value == pytest.approx([(math.log(0.01) + 1.0 + math.log(0.04)) / 2.0], rel=1e-12)
    # the true variance scores best among candidates for r^2 = 0.01
    candidates = [qlike(np.array([[v]]), actual[:1], np.array([100.0]))[0] for v in (0.005, 0.01, 0.02)]
    assert candidates[1] < min(candidates[0], candidates[2])


def test_hit_rates_and_qlike_are_quantile_metrics() -> None:
    np.testing.assert_allclose(hit_rates(QUANTILES, ACTUAL), [[0.0, 1 / 3, 2 / 3]])  # strictly below each level
    metrics = quantile_metrics(QUANTILES, LEVELS, ACTUAL, SERIES, SCALE, last_close=np.array([10.0, 10.0, 21.0]))
    assert metrics["hit_q0.1"] == [0.0] and metrics["hit_q0.5"] == pytest.approx([1 / 3])
    variance = implied_variance(QUANTILES, LEVELS)
    assert metrics["qlike"] == pytest.approx(qlike(variance, ACTUAL, np.array([10.0, 10.0, 21.0])))
    assert "qlike" not in quantile_metrics(QUANTILES, LEVELS, ACTUAL, SERIES, SCALE)  # no last close given
