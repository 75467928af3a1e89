"""The one normalisation, and its inverse, shared by training, evaluation and serving.

Scale-free windows: every window is expressed in units of a volatility known at its origin,
estimated from the window itself, so a name never seen in training (a volatile small cap or a
quiet utility) is in distribution. For a raw window ``X[N,L,4]`` (L = lookback bars, oldest
first) with log close ``c``:

- ``sigma``: daily volatility at the origin, the square root of a RiskMetrics EWMA (lambda
  0.94) of squared close-to-close log returns over the window's last ``VOL_WINDOW`` bars,
  floored at ``VOL_FLOOR``. (A blend with a range-based variance normalised worse on held-out
  tickers; the range information enters as features instead.)
- sequence inputs ``[N,T,5]`` for the last T = ``seq_len`` bars: the close return, the
  high-low range, the open-close body and the overnight gap, each divided by sigma, and the
  log distance to the last close in sigmas (divided by 4), clipped to +-10.
- scalar inputs ``[N,5]``: the volatility level and regime (sigma against a typical 1.5%,
  short/EWMA/long-window ratios, the range-based EWMA (overnight gap squared plus Garman-Klass)
  against the close-to-close one) and the window's trend in long-window sigmas, clipped to +-5.
- targets ``z[N,H] = log(close[t+h] / close[t]) / sigma``; ``to_prices`` inverts it.

Nothing is fitted: the state is the settings, recorded in the artifact.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any

import numpy as np

from forecaster.config import CLOSE, FEATURES, N_SCALAR_FEATURES, N_SEQ_FEATURES, DataConfig

TRANSFORM_NAME = "vol_scaled_window"
TRANSFORM_VERSION = 2
VOL_LAMBDA = 0.94  # RiskMetrics daily decay
VOL_WINDOW = 100  # bars of the EWMAs (0.94^100 = 0.2%: older bars no longer matter)
VOL_INIT = 20  # the EWMAs start at the mean of their first 20 squares
VOL_FLOOR = 2e-3  # 0.2% a day: a flat (halted, stale) window must not divide by zero
TYPICAL_VOL = 0.015  # 1.5% a day: the volatility level feature is log(sigma / this)
SHORT_WINDOW = 5
SEQ_CLIP, SCALAR_CLIP, LEVEL_DIVISOR = 10.0, 5.0, 4.0
FEATURE_BLOCK = 512  # windows per block of `features`: 512 x 120 x 4 float64 = 2 MB of temporaries
OPEN, HIGH, LOW = (FEATURES.index(c) for c in ("open", "high", "low"))


@dataclass(frozen=True)
class WindowFeatures:
    """The network's inputs for N windows, and what it takes to turn its output into prices."""

    seq: np.ndarray  # [N, T, 5] float32
    scalars: np.ndarray  # [N, 6] float32
    sigma: np.ndarray  # [N] float64, daily volatility at the origin
    last_close: np.ndarray  # [N] float64


@dataclass(frozen=True)
class WindowTransform:
    """Volatility-scaled features of raw OHLC windows; `seq_len` bars go to the recurrent encoder.
    No defaults of its own: built from the data settings (`for_data`) or a bundle's stored state."""

    lookback: int
    seq_len: int

    @classmethod
    def for_data(cls, config: DataConfig) -> WindowTransform:
        """The transform of windows cut by `config`: its lookback, and its encoder's bars (seq_len)."""
        return cls(lookback=config.lookback, seq_len=config.encoder_steps)

    def __post_init__(self) -> None:
        if not 2 <= self.seq_len < self.lookback:
            raise ValueError(
                f"transform: need 2 <= seq_len < lookback, got lookback {self.lookback}, seq_len {self.seq_len}"
            )

    def features(self, X: np.ndarray) -> WindowFeatures:
        """X[N,L,4] raw OHLC prices (L = lookback, positive) -> the network's inputs.

        Computed FEATURE_BLOCK windows at a time: every step is per window, so the result is the
        same, and a block's float64 temporaries stay in the CPU's cache (2x faster for large N)."""
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[1:] != (self.lookback, len(FEATURES)):
            raise ValueError(f"windows: expected shape [N, {self.lookback}, {len(FEATURES)}], got {list(X.shape)}")
        if len(X) <= FEATURE_BLOCK:
            return self._features(X)
        blocks = [self._features(X[i : i + FEATURE_BLOCK]) for i in range(0, len(X), FEATURE_BLOCK)]
        return WindowFeatures(*(np.concatenate(parts) for parts in zip(*(astuple(b) for b in blocks), strict=True)))

    def _features(self, X: np.ndarray) -> WindowFeatures:
        # one contiguous [N, L] plane of logs per price (the float64 loop, no float64 copy of X):
        # every difference below then reads contiguous rows
        logs = np.empty((X.shape[2], len(X), X.shape[1]))
        np.log(X.transpose(2, 0, 1), out=logs, dtype=np.float64)
        close = logs[CLOSE]
        r = np.diff(close, axis=1)  # -> (N, L-1), bar i+1's close return
        # the other bar shapes only over the bars the range EWMA and the sequence read
        n = min(self.lookback - 1, max(VOL_WINDOW, self.seq_len))
        recent, prev = logs[:, :, -n:], close[:, -n - 1 : -1]  # -> (4, N, n), (N, n): bars, the closes before
        gap = recent[OPEN] - prev
        hl = recent[HIGH] - recent[LOW]
        co = recent[CLOSE] - recent[OPEN]
        gk = 0.5 * hl**2 - (2.0 * np.log(2.0) - 1.0) * co**2
        v_cc = _ewma(r**2)
        v_rg = _ewma(gap**2 + np.maximum(gk, 0.0))
        v_long = np.maximum((r**2).mean(axis=1), 1e-12)
        v_short = np.maximum((r[:, -SHORT_WINDOW:] ** 2).mean(axis=1), 1e-12)
        sigma = np.sqrt(np.maximum(v_cc, VOL_FLOOR**2))
        v_cc, v_rg = np.maximum(v_cc, 1e-12), np.maximum(v_rg, 1e-12)
        scalars = np.stack(
            [
                np.log(sigma / TYPICAL_VOL),
                0.5 * np.log(v_cc / v_long),
                0.5 * np.log(v_rg / v_cc),
                0.5 * np.log(v_short / v_cc),
                (close[:, -1] - close[:, 0]) / np.sqrt(v_long * self.lookback),
            ],
            axis=1,
        )  # -> (N, 5)
        T, scale = self.seq_len, sigma[:, None]
        level = (close[:, -T:] - close[:, -1:]) / LEVEL_DIVISOR
        seq = np.empty((len(X), T, N_SEQ_FEATURES), dtype=np.float32)  # each column written once
        for k, column in enumerate((r[:, -T:], hl[:, -T:], co[:, -T:], gap[:, -T:], level)):
            seq[..., k] = np.clip(column / scale, -SEQ_CLIP, SEQ_CLIP)
        assert scalars.shape[-1] == N_SCALAR_FEATURES
        return WindowFeatures(
            seq=seq,
            scalars=np.clip(scalars, -SCALAR_CLIP, SCALAR_CLIP).astype(np.float32),
            sigma=sigma,
            last_close=X[:, -1, CLOSE].astype(np.float64),
        )

    @staticmethod
    def targets(Y: np.ndarray, features: WindowFeatures) -> np.ndarray:
        """Y[N,H] future closes -> float32 z[N,H]: log ratios to the last close, in sigmas."""
        ratio = np.asarray(Y, dtype=np.float64) / features.last_close[:, None]
        return (np.log(ratio) / features.sigma[:, None]).astype(np.float32)

    @staticmethod
    def to_prices(z: np.ndarray, features: WindowFeatures) -> np.ndarray:
        """Inverse of `targets`: z[N,H(,Q)] -> prices."""
        z = np.asarray(z, dtype=np.float64)
        shape = (-1,) + (1,) * (z.ndim - 1)
        return features.last_close.reshape(shape) * np.exp(z * features.sigma.reshape(shape))

    def state(self) -> dict[str, Any]:
        return {
            "name": TRANSFORM_NAME,
            "version": TRANSFORM_VERSION,
            "lookback": self.lookback,
            "seq_len": self.seq_len,
            "vol": {"lambda": VOL_LAMBDA, "window": VOL_WINDOW, "floor": VOL_FLOOR},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WindowTransform:
        if state.get("name") != TRANSFORM_NAME or state.get("version") != TRANSFORM_VERSION:
            raise ValueError(
                f"transform: expected {TRANSFORM_NAME} v{TRANSFORM_VERSION}, got "
                f"{state.get('name')} v{state.get('version')} (a model from an older forecaster: retrain it)"
            )
        return cls(lookback=int(state["lookback"]), seq_len=int(state["seq_len"]))


def _ewma(x: np.ndarray) -> np.ndarray:
    """RiskMetrics EWMA of x[N,n] over its last VOL_WINDOW columns, started at the mean of the
    first VOL_INIT of them (fewer in a short window); the value after the last column."""
    x = x[:, -VOL_WINDOW:]
    start = min(VOL_INIT, x.shape[1])
    v = x[:, :start].mean(axis=1)
    weights = (1 - VOL_LAMBDA) * VOL_LAMBDA ** np.arange(x.shape[1] - start - 1, -1, -1)
    return VOL_LAMBDA ** (x.shape[1] - start) * v + x[:, start:] @ weights
