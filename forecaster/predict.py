"""Forecaster: a loaded bundle on a device, turning price windows into price quantiles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from forecaster.artifact import Bundle
from forecaster.device import resolve_device
from forecaster.train import autocast

PREDICT_BATCH = 4096


@dataclass(frozen=True)
class Forecast:
    """quantiles[N,H,Q] prices; median[N,H] is the point forecast."""

    quantiles: np.ndarray
    levels: tuple[float, ...]

    @property
    def median(self) -> np.ndarray:
        return self.quantiles[..., self.levels.index(0.5)]

    @property
    def lower(self) -> np.ndarray:
        return self.quantiles[..., 0]

    @property
    def upper(self) -> np.ndarray:
        return self.quantiles[..., -1]


class Forecaster:
    """The ready predictor every caller uses: library, evaluation, pyfunc and service."""

    def __init__(self, bundle: Bundle, device: str | torch.device = "auto") -> None:
        self.bundle = bundle
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = bundle.build(self.device)  # weights move to the device once, here
        self.transform = bundle.transform

    @property
    def lookback(self) -> int:
        return self.bundle.data_config.lookback

    @property
    def horizon(self) -> int:
        return self.bundle.model_config.horizon

    @property
    def quantiles(self) -> tuple[float, ...]:
        return self.bundle.model_config.quantiles

    def predict(self, X: np.ndarray) -> Forecast:
        """X[N,T,4] raw OHLC windows (T = lookback, last row = last observed day) -> Forecast."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3 or X.shape[1:] != (self.lookback, 4):
            raise ValueError(f"windows: expected shape [N, {self.lookback}, 4], got {list(X.shape)}")
        if len(X) == 0:
            return Forecast(np.empty((0, self.horizon, len(self.quantiles))), self.quantiles)
        scaled = self.transform.inputs(X)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(scaled), PREDICT_BATCH):
                x = torch.from_numpy(scaled[start : start + PREDICT_BATCH]).to(self.device)
                with autocast(self.device):
                    out = self.model(x)
                outputs.append(out.float().cpu().numpy())  # -> (B, H, Q)
        z = np.concatenate(outputs)
        return Forecast(self.transform.to_prices(z, X[:, -1, 3]), self.quantiles)

    def predict_history(self, history: np.ndarray) -> Forecast:
        """One series' bars [L,4] (L >= lookback) -> the forecast from its last T rows."""
        history = np.asarray(history, dtype=np.float32)
        if history.ndim != 2 or history.shape[1] != 4:
            raise ValueError(f"history: expected shape [L, 4], got {list(history.shape)}")
        if len(history) < self.lookback:
            raise ValueError(f"history: {len(history)} bars, the model needs at least lookback = {self.lookback}")
        return self.predict(history[None, -self.lookback :])
