"""The one normalisation, and its inverse, shared by training, evaluation and serving.

Each window is expressed relative to its own last close, so one global model serves
tickers of any price level: inputs ``log(price / last_close) / scale``, targets
``log(close[t+h] / close[t]) / scale``. ``scale`` (the std of one-day log returns of the
close) is the only fitted state and is fitted on training windows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from forecaster.windows import CLOSE

TRANSFORM_NAME = "log_ratio_last_close"
TRANSFORM_VERSION = 1


@dataclass(frozen=True)
class WindowTransform:
    """Per-window log-ratio scaling with one global, train-fitted scale."""

    scale: float = 1.0

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """X[N,T,4] prices -> float32 [N,T,4] log ratios to each window's last close."""
        X = np.asarray(X, dtype=np.float64)
        last = X[:, -1:, CLOSE : CLOSE + 1]  # -> (N, 1, 1)
        return (np.log(X / last) / self.scale).astype(np.float32)

    def targets(self, Y: np.ndarray, last_close: np.ndarray) -> np.ndarray:
        """Y[N,H] future closes -> float32 [N,H] scaled log ratios to the last close."""
        ratio = np.asarray(Y, dtype=np.float64) / np.asarray(last_close, dtype=np.float64)[:, None]
        return (np.log(ratio) / self.scale).astype(np.float32)

    def to_prices(self, z: np.ndarray, last_close: np.ndarray) -> np.ndarray:
        """Inverse of `targets`: z[N,H(,Q)] -> prices, broadcasting the last close."""
        z = np.asarray(z, dtype=np.float64)
        last = np.asarray(last_close, dtype=np.float64).reshape((-1,) + (1,) * (z.ndim - 1))
        return last * np.exp(z * self.scale)

    def state(self) -> dict[str, Any]:
        return {"name": TRANSFORM_NAME, "version": TRANSFORM_VERSION, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowTransform:
        if state.get("name") != TRANSFORM_NAME or state.get("version") != TRANSFORM_VERSION:
            raise ValueError(
                f"transform: expected {TRANSFORM_NAME} v{TRANSFORM_VERSION}, got "
                f"{state.get('name')} v{state.get('version')}"
            )
        return cls(scale=float(state["scale"]))


def fit_transform(train_inputs: np.ndarray) -> WindowTransform:
    """Fit the scale on training windows X[N,T,4] only: std of their one-day close log returns."""
    closes = np.asarray(train_inputs, dtype=np.float64)[:, :, CLOSE]
    returns = np.diff(np.log(closes), axis=1)
    scale = float(np.std(returns)) if returns.size else 1.0
    return WindowTransform(scale=scale if np.isfinite(scale) and scale > 0 else 1.0)
