"""Per-step recalibration of the network's quantiles, fitted on the validation split.

Both corrections work in the network's own units (volatility-scaled log ratios, `z`), so they
transfer across price levels and volatility regimes, and both are stored in the artifact and
applied by `Forecaster.predict_windows`, the one place every caller (library, evaluation, pyfunc,
service) gets forecasts from:

- **offsets** ``[H,Q]``: quantile recalibration by shifting. For each step h and level q, the
  offset is the q-quantile of the validation residuals ``z - zhat_q``; after the shift the
  empirical level of every quantile on the validation windows is its nominal level. The
  median's offset is 0: its location is the job of the shrinkage.
- **shrink** ``[H]``: the median is multiplied by a factor in [0, 1], chosen per step on a grid
  to minimise the validation MAE of the price forecast. 0 is exactly the naive forecast (the
  last close): where the network has no edge in the median it adds no noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SHRINK_GRID = np.linspace(0.0, 1.0, 21)


@dataclass(frozen=True)
class Calibration:
    offsets: np.ndarray  # [H, Q] added to z quantiles
    shrink: np.ndarray  # [H] factor on the median

    @classmethod
    def identity(cls, horizon: int, n_quantiles: int) -> Calibration:
        return cls(np.zeros((horizon, n_quantiles)), np.ones(horizon))

    def apply(self, z: np.ndarray, median_index: int) -> np.ndarray:
        """z[N,H,Q] raw network quantiles -> calibrated, still increasing along Q."""
        z = np.asarray(z, dtype=np.float64) + self.offsets[None]
        z[..., median_index] *= self.shrink[None]
        # a shift or a shrunk median could cross a neighbour: sorted then (rarely: checking is 6x
        # cheaper than sorting every row; a NaN fails the check and is sorted as before)
        return z if (np.diff(z, axis=-1) >= 0).all() else np.sort(z, axis=-1)

    def state(self) -> dict[str, Any]:
        return {"offsets": self.offsets.round(6).tolist(), "shrink": self.shrink.round(6).tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any], horizon: int, n_quantiles: int) -> Calibration:
        offsets = np.asarray(state["offsets"], dtype=np.float64)
        shrink = np.asarray(state["shrink"], dtype=np.float64)
        if offsets.shape != (horizon, n_quantiles) or shrink.shape != (horizon,):
            raise ValueError(
                f"calibration: expected offsets [{horizon}, {n_quantiles}] and shrink [{horizon}], "
                f"got {list(offsets.shape)} and {list(shrink.shape)}"
            )
        return cls(offsets, shrink)


def fit_calibration(
    z_pred: np.ndarray, z_true: np.ndarray, sigma: np.ndarray, levels: tuple[float, ...], median_index: int
) -> Calibration:
    """Offsets and shrink factors from validation forecasts z_pred[N,H,Q] and outcomes z_true[N,H]
    (sigma[N]: each window's volatility, to score the shrinkage on price-level returns)."""
    n, horizon, q = z_pred.shape
    if n == 0:
        return Calibration.identity(horizon, q)
    residual = z_true[:, :, None] - z_pred  # -> (N, H, Q)
    offsets = np.stack([[np.quantile(residual[:, h, k], levels[k]) for k in range(q)] for h in range(horizon)])
    offsets[:, median_index] = 0.0
    calibrated = np.sort(z_pred + offsets[None], axis=-1)[..., median_index]  # -> (N, H)
    actual = np.exp(sigma[:, None] * z_true)  # -> (N, H) price relative to the last close
    shrink = np.empty(horizon)
    for h in range(horizon):
        errors = [np.abs(np.exp(sigma * c * calibrated[:, h]) - actual[:, h]).mean() for c in SHRINK_GRID]
        shrink[h] = SHRINK_GRID[int(np.argmin(errors))]
    return Calibration(offsets, shrink)
