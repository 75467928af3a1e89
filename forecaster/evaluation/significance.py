"""Diebold-Mariano tests of equal predictive accuracy, for one loss-differential series or a panel.

Conventions, stated once:
- d_t = loss(model) - loss(baseline); a negative mean means the model's loss is lower.
- Long-run variance: Newey-West, Bartlett weights 1 - k/h up to lag h - 1 (an h-step forecast's
  errors overlap for h - 1 days); always non-negative, unlike the rectangular kernel.
- Harvey, Leybourne and Newbold (1997) small-sample factor sqrt((n + 1 - 2h + h(h-1)/n) / n),
  p-value two-sided from Student's t with n - 1 degrees of freedom.
- Panel: one differential per origin date, the mean over series of each series' scaled loss
  difference, so series forecast on the same day are not counted as independent evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

ALPHA = 0.05  # verdicts at 5%


@dataclass(frozen=True)
class DMResult:
    stat: float  # HLN-corrected DM statistic; negative: the model's loss is lower
    p_value: float
    n: int  # length of the differential series

    @property
    def verdict(self) -> str:
        if not np.isfinite(self.p_value) or self.p_value >= ALPHA:
            return "indistinguishable"
        return "better" if self.stat < 0 else "worse"


def newey_west_variance(d: np.ndarray, max_lag: int) -> float:
    """Long-run variance of a series: gamma_0 + 2 sum_k (1 - k/(max_lag+1)) gamma_k, gamma_k = (1/n) sum."""
    n = len(d)
    centred = d - d.mean()
    variance = float(centred @ centred) / n
    for k in range(1, min(max_lag, n - 1) + 1):
        variance += 2.0 * (1.0 - k / (max_lag + 1)) * float(centred[k:] @ centred[:-k]) / n
    return variance


def dm_test(d: np.ndarray, horizon: int) -> DMResult:
    """Diebold-Mariano on the loss differential d[n] of h-step forecasts (see the module notes).

    A differential that never varies gives stat 0 and p = 1 when it is 0, and +-inf with p = 0
    otherwise; fewer than two points cannot be tested (NaN).
    """
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n < 2:
        return DMResult(float("nan"), float("nan"), n)
    mean = float(d.mean())
    variance = newey_west_variance(d, horizon - 1)
    if variance <= 0.0:
        stat = 0.0 if mean == 0.0 else float(np.sign(mean)) * float("inf")
    else:
        hln = np.sqrt(max(n + 1 - 2 * horizon + horizon * (horizon - 1) / n, 0.0) / n)
        stat = float(hln * mean / np.sqrt(variance / n))
    p_value = 1.0 if stat == 0.0 else float(2.0 * student_t.sf(abs(stat), df=n - 1))
    return DMResult(stat, p_value, n)


def panel_differential(
    loss_model: np.ndarray, loss_base: np.ndarray, series_id: np.ndarray, dates: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Losses [N] of one step on a panel -> [D]: per origin date (ascending), the mean over series of
    (loss_model - loss_base) / scale[series]. Rows where either loss is missing are left out."""
    diff = (loss_model - loss_base) / scale[series_id]
    ok = np.isfinite(diff)
    _, day = np.unique(dates[ok], return_inverse=True)
    return np.bincount(day, weights=diff[ok]) / np.bincount(day)


def dm_panel(
    loss_model: np.ndarray, loss_base: np.ndarray, series_id: np.ndarray, dates: np.ndarray, scale: np.ndarray
) -> list[DMResult]:
    """Losses [N,H] -> one DM test per step h (HAC lag h - 1) on the panel's daily differential."""
    return [
        dm_test(panel_differential(loss_model[:, h], loss_base[:, h], series_id, dates, scale), horizon=h + 1)
        for h in range(loss_model.shape[1])
    ]
