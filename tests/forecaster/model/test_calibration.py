"""forecaster.model.calibration: per-step quantile recalibration and median shrinkage, on synthetic
data whose true quantiles are known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from forecaster.model.calibration import Calibration, fit_calibration

LEVELS = (0.1, 0.5, 0.9)
MEDIAN = 1


def gaussian_forecast(n: int, horizon: int, scale: float) -> np.ndarray:
    """z quantiles [n,H,Q] of N(0, scale^2 h): a model that believes in this volatility."""
    per_step = np.array([[norm.ppf(q) * scale * np.sqrt(h + 1) for q in LEVELS] for h in range(horizon)])
    return np.broadcast_to(per_step, (n, horizon, len(LEVELS))).copy()


def coverage(z_pred: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    return ((z_true >= z_pred[..., 0]) & (z_true <= z_pred[..., -1])).mean(axis=0)


def test_calibration_reaches_nominal_coverage_on_fresh_data() -> None:
    """The model's band is too narrow (it believes sigma 1, the truth is 1.4 and fat-tailed);
    offsets fitted on one sample give 80% coverage on another from the same distribution."""
    rng = np.random.default_rng(0)
    horizon, n = 3, 40_000
    steps = np.sqrt(np.arange(1, horizon + 1))

    def outcomes() -> np.ndarray:
        return 1.4 * rng.standard_t(df=5, size=(n, horizon)) * steps

    z_pred = gaussian_forecast(n, horizon, scale=1.0)
    sigma = np.full(n, 0.01)
    before = coverage(z_pred, outcomes())
    assert (before < 0.70).all()
    calibration = fit_calibration(z_pred, outcomes(), sigma, LEVELS, MEDIAN)
    after = coverage(calibration.apply(z_pred, MEDIAN), outcomes())
    np.testing.assert_allclose(after, 0.80, atol=0.01)
    assert (calibration.offsets[:, MEDIAN] == 0).all()


def test_a_median_without_skill_is_shrunk_to_the_last_close() -> None:
    rng = np.random.default_rng(1)
    n, horizon = 20_000, 2
    z_true = rng.normal(size=(n, horizon))
    z_pred = gaussian_forecast(n, horizon, 1.0)
    z_pred[..., MEDIAN] = rng.normal(scale=0.5, size=(n, horizon))  # noise, unrelated to the outcome
    calibration = fit_calibration(z_pred, z_true, np.full(n, 0.01), LEVELS, MEDIAN)
    assert calibration.shrink.tolist() == [0.0, 0.0]
    applied = calibration.apply(z_pred, MEDIAN)
    assert (applied[..., MEDIAN] == 0).all()  # exactly the naive forecast


def test_a_median_with_skill_is_kept() -> None:
    rng = np.random.default_rng(2)
    n, horizon = 20_000, 2
    signal = rng.normal(size=(n, horizon))
    z_true = signal + rng.normal(scale=0.3, size=(n, horizon))
    z_pred = gaussian_forecast(n, horizon, 0.3)
    z_pred += signal[..., None]
    calibration = fit_calibration(z_pred, z_true, np.full(n, 0.01), LEVELS, MEDIAN)
    assert (calibration.shrink >= 0.9).all()


def test_applied_quantiles_never_cross_and_state_round_trips() -> None:
    calibration = Calibration(np.array([[0.5, 0.0, -0.5]]), np.array([1.0]))  # offsets that cross the band
    z = np.array([[[-0.2, 0.0, 0.2]]])
    assert (np.diff(calibration.apply(z, MEDIAN), axis=-1) >= 0).all()
    again = Calibration.from_state(calibration.state(), horizon=1, n_quantiles=3)
    np.testing.assert_array_equal(again.offsets, calibration.offsets)
    with pytest.raises(ValueError, match="calibration: expected offsets \\[2, 3\\]"):
        Calibration.from_state(calibration.state(), horizon=2, n_quantiles=3)


def test_apply_is_offsets_then_shrink_then_a_sort_whether_or_not_rows_cross() -> None:
    rng = np.random.default_rng(8)
    calibration = Calibration(rng.normal(0.0, 0.05, size=(2, 3)), np.array([0.5, 1.0]))
    z = np.sort(rng.normal(size=(50, 2, 3)), axis=-1)
    crossing = z.copy()
    crossing[7, 1] = [0.3, 0.2, 0.1]  # one row whose raw quantiles cross
    with_nan = z.copy()
    with_nan[3, 0, 0] = np.nan  # sorted to the end, as np.sort does
    for raw in (z, crossing, with_nan):
        expected = raw + calibration.offsets[None]
        expected[..., MEDIAN] *= calibration.shrink[None]
        np.testing.assert_array_equal(calibration.apply(raw, MEDIAN), np.sort(expected, axis=-1))
