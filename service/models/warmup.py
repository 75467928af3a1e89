"""The check a model passes before it serves, and that /ready repeats on the serving one: a forecast
of a fixed probe window whose every number is finite and whose quantiles rise with their levels.

A version whose weights or calibration hold NaN loads and runs; only its numbers show it is
unusable. It must never replace a good one, nor answer requests with nulls.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from forecaster.config import FEATURES
from forecaster.model.predictor import Forecaster


def probe_window(lookback: int) -> np.ndarray:
    """One made-up window [1, lookback, 4] (open, high, low, close) of a gently moving price near
    100: the same every time, valid bars, a volatility above any floor."""
    t = np.arange(lookback + 1, dtype=np.float64)
    close = 100.0 * np.exp(0.01 * np.sin(0.7 * t))
    open_, close = close[:-1], close[1:]
    columns = {
        "open": open_,
        "high": np.maximum(open_, close) * 1.002,
        "low": np.minimum(open_, close) * 0.998,
        "close": close,
    }
    return np.stack([columns[name] for name in FEATURES], axis=-1)[None].astype(np.float32)


def unusable(quantiles: np.ndarray, levels: Sequence[float]) -> str | None:
    """Why a forecast quantiles[N,H,Q] cannot be served (non-finite numbers, quantiles out of
    order), in words safe to show anyone; None when it can."""
    finite = np.isfinite(quantiles)
    if not finite.all():
        return f"non-finite values (NaN or inf) in {int((~finite).sum())} of {finite.size} numbers"
    crossed = np.argwhere(np.diff(quantiles, axis=-1) < 0)
    if len(crossed):
        n, h, k = (int(i) for i in crossed[0])
        low, high = quantiles[n, h, k], quantiles[n, h, k + 1]
        return (
            f"quantiles out of order at step {h + 1}: level {levels[k]:g} is {low:.6g}, "
            f"above level {levels[k + 1]:g} at {high:.6g}"
        )
    return None


def warm_up(forecaster: Forecaster) -> str | None:
    """One forward pass before serving (the first request does not pay for it), checked: why the
    model cannot serve, or None. Exceptions of the pass itself propagate."""
    forecast = forecaster.predict_windows(probe_window(forecaster.lookback))
    return unusable(forecast.quantiles, forecaster.quantiles)
