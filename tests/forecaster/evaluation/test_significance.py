"""forecaster.evaluation.significance: the Diebold-Mariano statistic (Newey-West variance, HLN correction,
Student t p-value) and the panel's daily loss differential, against numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from forecaster.evaluation.significance import dm_panel, dm_test, newey_west_variance, panel_differential

D = np.array([1.0, -1.0, 2.0, 0.0, 3.0])  # mean 1, centred 0, -2, 1, -1, 2


def t4_two_sided_p(stat: float) -> float:
    """Student t with 4 degrees of freedom in closed form: F(t) = 1/2 + 3/4 u (1 - u^2 / 3), u = t / sqrt(4 + t^2)."""
    u = abs(stat) / math.sqrt(4 + stat**2)
    return 2 * (0.5 - 0.75 * u * (1 - u**2 / 3))


def test_dm_one_step_matches_hand_computation() -> None:
    # gamma_0 = (0 + 4 + 1 + 1 + 4) / 5 = 2; DM = 1 / sqrt(2 / 5); HLN factor sqrt((5 + 1 - 2) / 5)
    result = dm_test(D, horizon=1)
    assert result.stat == pytest.approx(math.sqrt(2.0))
    assert result.p_value == pytest.approx(t4_two_sided_p(math.sqrt(2.0)))
    assert result.p_value == pytest.approx(0.2302, abs=1e-4)
    assert result.n == 5 and result.verdict == "indistinguishable"


def test_dm_two_steps_adds_the_lag_one_autocovariance_with_bartlett_weight_one_half() -> None:
    # gamma_1 = (0*(-2) + (-2)*1 + 1*(-1) + (-1)*2) / 5 = -1; variance = 2 + 2 * 0.5 * (-1) = 1
    assert newey_west_variance(D, max_lag=1) == pytest.approx(1.0)
    # DM = 1 / sqrt(1 / 5) = sqrt(5); HLN factor sqrt((5 + 1 - 4 + 2 / 5) / 5) = sqrt(0.48)
    result = dm_test(D, horizon=2)
    assert result.stat == pytest.approx(math.sqrt(2.4))
    assert result.p_value == pytest.approx(t4_two_sided_p(math.sqrt(2.4)))


def test_identical_losses_are_indistinguishable_with_p_1() -> None:
    result = dm_test(np.zeros(20), horizon=3)
    assert (result.stat, result.p_value, result.verdict) == (0.0, 1.0, "indistinguishable")


def test_clearly_lower_losses_are_better_and_clearly_higher_are_worse() -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.2, 50)
    better = dm_test(-1.0 + noise, horizon=1)
    assert better.stat < 0 and better.p_value < 1e-6 and better.verdict == "better"
    worse = dm_test(1.0 + noise, horizon=2)
    assert worse.stat > 0 and worse.p_value < 1e-6 and worse.verdict == "worse"


def test_fewer_than_two_points_cannot_be_tested() -> None:
    result = dm_test(np.array([1.0]), horizon=1)
    assert math.isnan(result.p_value) and result.verdict == "indistinguishable"


def test_panel_differential_is_the_daily_mean_of_scaled_loss_differences() -> None:
    day1, day2 = np.datetime64("2021-01-04"), np.datetime64("2021-01-05")
    dates = np.array([day2, day1, day1, day2])
    series = np.array([0, 0, 1, 1])
    scale = np.array([2.0, 4.0])
    model = np.array([2.0, 5.0, 4.0, np.nan])  # the last row has no model loss: left out
    base = np.array([4.0, 1.0, 8.0, 1.0])
    # day 1: ((5 - 1) / 2 + (4 - 8) / 4) / 2 = 0.5; day 2: (2 - 4) / 2 = -1
    np.testing.assert_allclose(panel_differential(model, base, series, dates, scale), [0.5, -1.0])


def test_dm_panel_tests_each_step_with_its_own_lag() -> None:
    dates = pd.bdate_range("2021-01-04", periods=5).to_numpy()
    model = np.stack([D, D], axis=1)  # the same differential at both steps, base loss 0
    tests = dm_panel(model, np.zeros_like(model), np.zeros(5, dtype=np.int32), dates, np.array([1.0]))
    assert [t.stat for t in tests] == pytest.approx([math.sqrt(2.0), math.sqrt(2.4)])
