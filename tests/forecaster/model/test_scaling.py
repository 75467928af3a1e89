"""forecaster.model.scaling: volatility-scaled (scale-free) windows and their exact inverse."""

from __future__ import annotations

import numpy as np
import pytest
from factories import random_ohlc

from forecaster.config import N_SCALAR_FEATURES, N_SEQ_FEATURES
from forecaster.data.windows import Panel
from forecaster.model.scaling import FEATURE_BLOCK, VOL_FLOOR, VOL_INIT, VOL_LAMBDA, WindowTransform

L, T, H = 40, 20, 3


def windows(n_tickers: int = 2, days: int = 120) -> tuple[np.ndarray, np.ndarray]:
    panel = Panel.from_frame(random_ohlc(tickers=("AAA", "BBB", "CCC")[:n_tickers], days=days, seed=4))
    w = panel.gather(panel.origins(L, H), L, H)
    return w.X.astype(np.float64), w.Y.astype(np.float64)


def hand_ewma(x: np.ndarray) -> float:
    """The RiskMetrics recursion written out: start at the mean of the first VOL_INIT, then update."""
    v = x[:VOL_INIT].mean()
    for value in x[VOL_INIT:]:
        v = VOL_LAMBDA * v + (1 - VOL_LAMBDA) * value
    return float(v)


def test_sigma_is_the_close_ewma_and_the_range_ewma_a_feature_written_out() -> None:
    X, _ = windows()
    features = WindowTransform(lookback=L, seq_len=T).features(X)
    logs = np.log(X[0])
    r = np.diff(logs[:, 3])
    gap = logs[1:, 0] - logs[:-1, 3]
    hl = logs[1:, 1] - logs[1:, 2]
    co = logs[1:, 3] - logs[1:, 0]
    gk = 0.5 * hl**2 - (2 * np.log(2) - 1) * co**2
    v_cc, v_rg = hand_ewma(r**2), hand_ewma(gap**2 + np.maximum(gk, 0))
    assert features.sigma[0] == pytest.approx(np.sqrt(v_cc), rel=1e-10)
    assert features.scalars[0, 2] == pytest.approx(0.5 * np.log(v_rg / v_cc), rel=1e-5)
    # the per-bar return feature is the close return in sigmas
    np.testing.assert_allclose(features.seq[0, :, 0], (r[-T:] / features.sigma[0]).astype(np.float32), rtol=1e-5)
    assert features.seq.shape == (len(X), T, N_SEQ_FEATURES)
    assert features.scalars.shape == (len(X), N_SCALAR_FEATURES)
    assert features.seq[:, -1, 4].tolist() == [0.0] * len(X)  # the last bar is the reference level


def test_every_sequence_column_written_out_for_a_window_longer_than_the_ewma() -> None:
    """lookback 130 > VOL_WINDOW + 1: the transform computes the bar shapes only over the bars it
    reads; each column must still be the bar's own shape in sigmas, whatever the input's dtype."""
    long_l, long_t = 130, 60
    panel = Panel.from_frame(random_ohlc(tickers=("AAA",), days=200, seed=5))
    X32 = panel.gather(panel.origins(long_l, H), long_l, H).X[:3]
    transform = WindowTransform(lookback=long_l, seq_len=long_t)
    features = transform.features(X32)
    X = X32.astype(np.float64)
    assert features.last_close.dtype == np.float64
    for name in ("seq", "scalars", "sigma", "last_close"):
        assert np.array_equal(getattr(features, name), getattr(transform.features(X), name)), name
    for i in range(len(X)):
        logs = np.log(X[i])
        r = np.diff(logs[:, 3])
        shapes = {
            "return": r,
            "high-low": logs[1:, 1] - logs[1:, 2],
            "close-open": logs[1:, 3] - logs[1:, 0],
            "gap": logs[1:, 0] - logs[:-1, 3],
        }
        sigma = np.sqrt(hand_ewma(r[-100:] ** 2))
        assert features.sigma[i] == pytest.approx(sigma, rel=1e-10)
        for column, (name, shape) in enumerate(shapes.items()):
            expected = np.clip(shape[-long_t:] / sigma, -10, 10)
            np.testing.assert_allclose(features.seq[i, :, column], expected, rtol=1e-5, atol=1e-6, err_msg=name)
        level = (logs[-long_t:, 3] - logs[-1, 3]) / sigma / 4
        np.testing.assert_allclose(features.seq[i, :, 4], np.clip(level, -10, 10), rtol=1e-5, atol=1e-6)
        gk = 0.5 * shapes["high-low"] ** 2 - (2 * np.log(2) - 1) * shapes["close-open"] ** 2
        v_rg = hand_ewma((shapes["gap"] ** 2 + np.maximum(gk, 0))[-100:])
        assert features.scalars[i, 2] == pytest.approx(0.5 * np.log(v_rg / sigma**2), rel=1e-5)


def test_windows_are_scale_free() -> None:
    """The same path at 100x the price, or with every log move doubled (a twice as volatile name),
    gives the same sequence inputs: only the volatility level feature says which it was."""
    X, _ = windows()
    transform = WindowTransform(lookback=L, seq_len=T)
    base = transform.features(X)
    pricier = transform.features(X * 100.0)
    np.testing.assert_allclose(pricier.seq, base.seq, atol=1e-5)
    np.testing.assert_allclose(pricier.scalars, base.scalars, atol=1e-5)
    wilder = transform.features(np.exp(2.0 * np.log(X)))
    np.testing.assert_allclose(wilder.seq, base.seq, atol=1e-4)
    np.testing.assert_allclose(wilder.sigma, 2.0 * base.sigma, rtol=1e-9)
    np.testing.assert_allclose(wilder.scalars[:, 0], base.scalars[:, 0] + np.log(2.0), atol=1e-5)
    np.testing.assert_allclose(wilder.scalars[:, 1:], base.scalars[:, 1:], atol=1e-4)


def test_targets_and_prices_are_exact_inverses() -> None:
    X, Y = windows()
    transform = WindowTransform(lookback=L, seq_len=T)
    features = transform.features(X)
    z = transform.targets(Y, features)
    np.testing.assert_allclose(transform.to_prices(z, features), Y, rtol=1e-5)
    np.testing.assert_allclose(z[0], np.log(Y[0] / X[0, -1, 3]) / features.sigma[0], rtol=1e-5)
    # quantiles [N,H,Q] broadcast the same way
    assert transform.to_prices(np.zeros((len(X), H, 3)), features)[:, :, 1] == pytest.approx(
        np.repeat(X[:, -1, 3:4], H, axis=1)
    )


def test_a_batch_larger_than_a_block_gives_each_window_its_own_features() -> None:
    X, _ = windows(n_tickers=3, days=450)  # more windows than two blocks: the last block is partial
    assert len(X) > 2 * FEATURE_BLOCK
    transform = WindowTransform(L, T)
    batch = transform.features(X)
    assert batch.seq.shape == (len(X), T, N_SEQ_FEATURES) and batch.scalars.shape == (len(X), N_SCALAR_FEATURES)
    for i in (0, FEATURE_BLOCK - 1, FEATURE_BLOCK, 2 * FEATURE_BLOCK, len(X) - 1):  # around block edges
        alone = transform.features(X[i : i + 1])
        np.testing.assert_allclose(batch.seq[i], alone.seq[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(batch.scalars[i], alone.scalars[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose([batch.sigma[i], batch.last_close[i]], [alone.sigma[0], alone.last_close[0]])


def test_a_flat_window_is_floored_not_divided_by_zero() -> None:
    X = np.full((1, L, 4), 50.0)
    features = WindowTransform(lookback=L, seq_len=T).features(X)
    assert features.sigma[0] == pytest.approx(VOL_FLOOR)
    assert np.isfinite(features.seq).all() and np.isfinite(features.scalars).all()


def test_state_round_trips_and_older_transforms_are_refused() -> None:
    transform = WindowTransform(lookback=L, seq_len=T)
    assert WindowTransform.from_state(transform.state()) == transform
    with pytest.raises(ValueError, match="retrain"):
        WindowTransform.from_state({"name": "log_ratio_last_close", "version": 1, "scale": 0.01})
    with pytest.raises(ValueError, match="seq_len"):
        WindowTransform(lookback=10, seq_len=10)
    with pytest.raises(ValueError, match="expected shape"):
        transform.features(np.ones((2, L - 1, 4)))


def test_the_transform_takes_its_sizes_from_the_data_settings_and_has_none_of_its_own() -> None:
    from forecaster.config import DataConfig

    data = DataConfig(lookback=121, horizon=3)
    assert WindowTransform.for_data(data) == WindowTransform(lookback=121, seq_len=data.encoder_steps)
    with pytest.raises(TypeError):
        WindowTransform()  # type: ignore[call-arg]
