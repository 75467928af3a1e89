"""forecaster.scaling: the one normalisation, its inverse and its recorded state."""

from __future__ import annotations

import numpy as np
import pytest
from factories import random_ohlc

from forecaster.scaling import TRANSFORM_NAME, TRANSFORM_VERSION, WindowTransform, fit_transform
from forecaster.windows import Panel


def some_windows(lookback: int = 12, horizon: int = 4):  # type: ignore[no-untyped-def]
    panel = Panel.from_frame(random_ohlc(tickers=("AAA", "BBB"), days=60))
    return panel.gather(panel.origins(lookback, horizon), lookback, horizon)


def test_targets_then_to_prices_gives_back_the_future_closes() -> None:
    windows = some_windows()
    transform = WindowTransform(scale=0.013)
    z = transform.targets(windows.Y, windows.last_close)
    assert z.dtype == np.float32 and z.shape == windows.Y.shape
    np.testing.assert_allclose(transform.to_prices(z, windows.last_close), windows.Y, rtol=1e-6)


def test_to_prices_broadcasts_over_a_quantile_axis() -> None:
    windows = some_windows()
    transform = WindowTransform(scale=0.02)
    z = transform.targets(windows.Y, windows.last_close)
    stacked = np.stack([z - 1.0, z, z + 1.0], axis=-1)  # -> (N, H, 3)
    prices = transform.to_prices(stacked, windows.last_close)
    assert prices.shape == (*windows.Y.shape, 3)
    np.testing.assert_allclose(prices[..., 1], windows.Y, rtol=1e-6)
    np.testing.assert_allclose(prices[..., 2] / prices[..., 1], np.exp(0.02), rtol=1e-6)


def test_inputs_put_each_windows_last_close_at_exactly_zero() -> None:
    windows = some_windows()
    x = WindowTransform(scale=0.01).inputs(windows.X)
    assert x.dtype == np.float32 and x.shape == windows.X.shape
    assert (x[:, -1, 3] == 0.0).all()
    # and the rest are log ratios to that close, divided by the scale
    expected = np.log(windows.X[:, 0, 0].astype(np.float64) / windows.last_close) / 0.01
    np.testing.assert_allclose(x[:, 0, 0], expected, rtol=1e-5)


def test_inputs_do_not_depend_on_the_price_level() -> None:
    windows = some_windows()
    transform = WindowTransform(scale=0.01)
    np.testing.assert_allclose(transform.inputs(windows.X * 37.0), transform.inputs(windows.X), atol=1e-4)


def test_state_round_trips_through_from_state() -> None:
    transform = WindowTransform(scale=0.0123456789)
    state = transform.state()
    assert state == {"name": TRANSFORM_NAME, "version": TRANSFORM_VERSION, "scale": 0.0123456789}
    assert WindowTransform.from_state(state) == transform


@pytest.mark.parametrize("change", [{"name": "minmax"}, {"version": TRANSFORM_VERSION + 1}, {"name": None}])
def test_from_state_rejects_another_transform_name_or_version(change: dict) -> None:
    state = {**WindowTransform(scale=0.5).state(), **change}
    with pytest.raises(ValueError, match=f"expected {TRANSFORM_NAME} v{TRANSFORM_VERSION}"):
        WindowTransform.from_state(state)


def test_fit_transform_falls_back_to_one_for_flat_prices() -> None:
    flat = np.full((5, 10, 4), 42.0)
    assert fit_transform(flat).scale == 1.0
