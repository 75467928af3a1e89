"""Per-step forecast metrics on plain arrays: point errors and quantile scores.

Every function takes rows of one backtest (N forecasts, H steps) and returns one value per
step. Scale-free metrics divide each series by its own scale (the mean absolute one-day close
change, as in MASE) and then average over series, so a high-priced ticker does not dominate.

The variance a set of quantiles implies (for QLIKE and volatility terciles) is read from its outer
levels under a normal law of the log return: sd = log(q_last / q_first) / (z_last - z_first),
z = Phi^-1(level), i.e. the 10-90 width over 2.563 at the default levels; exact for a Gaussian
forecast such as ewma or garch.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def series_mean(values: np.ndarray, series_id: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """values[N,H] -> [H]: per series the mean over its rows divided by scale[series], then the
    mean over the series present that have a scale (finite and positive: a flat price has none;
    NaN when no series has one)."""
    present, rows_of = np.unique(series_id, return_inverse=True)
    counts = np.bincount(rows_of)
    sums = np.stack([np.bincount(rows_of, weights=values[:, h]) for h in range(values.shape[1])], axis=1)
    scales = scale[present]
    scaled = np.isfinite(scales) & (scales > 0)
    if not scaled.any():
        return np.full(values.shape[1], np.nan)
    return (sums[scaled] / counts[scaled, None] / scales[scaled, None]).mean(axis=0)


def point_metrics(
    pred: np.ndarray, actual: np.ndarray, last_close: np.ndarray, series_id: np.ndarray, scale: np.ndarray
) -> dict[str, np.ndarray]:
    """mae, rmse, mape (%), mase and dir_acc (share of steps whose move from the last close has
    the sign of the actual move) of point forecasts pred[N,H]."""
    error = pred - actual  # -> (N, H)
    last = last_close[:, None]
    return {
        "mae": np.abs(error).mean(axis=0),
        "rmse": np.sqrt((error**2).mean(axis=0)),
        "mape": (np.abs(error) / np.abs(actual)).mean(axis=0) * 100.0,
        "mase": series_mean(np.abs(error), series_id, scale),
        "dir_acc": (np.sign(pred - last) == np.sign(actual - last)).mean(axis=0),
    }


def pinball(actual: np.ndarray, quantiles: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """actual[N,H], quantiles[N,H,Q] -> [N,H,Q]: max(q (y - f), (q - 1) (y - f))."""
    q = np.asarray(levels, dtype=np.float64)
    diff = actual[..., None] - quantiles
    return np.maximum(q * diff, (q - 1.0) * diff)


def interval_score(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, alpha: float) -> np.ndarray:
    """Gneiting-Raftery / M4 interval score of the (1 - alpha) band, per row and step."""
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    return (upper - lower) + (2.0 / alpha) * (below + above)


def central_bands(levels: tuple[float, ...]) -> list[tuple[int, int, float]]:
    """(index of q, index of 1 - q, nominal coverage in %) for every q < 0.5 whose mirror is a level;
    widest first."""
    bands = []
    for i, q in enumerate(levels):
        if q < 0.5:
            mirror = [j for j, other in enumerate(levels) if np.isclose(other, 1.0 - q)]
            if mirror:
                bands.append((i, mirror[0], round(100.0 * (1.0 - 2.0 * q), 6)))
    return sorted(bands, key=lambda band: -band[2])


def implied_variance(quantiles: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """quantiles[N,H,Q] (prices) -> [N,H]: the variance of the log return to each step that the outer
    levels imply under a normal law (see the module notes). NaN with fewer than two levels."""
    if len(levels) < 2:
        return np.full(quantiles.shape[:2], np.nan)
    spread = norm.ppf(levels[-1]) - norm.ppf(levels[0])
    return (np.log(quantiles[..., -1] / quantiles[..., 0]) / spread) ** 2


def qlike(variance: np.ndarray, actual: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """variance[N,H] of the log return from the origin, actual[N,H] closes -> [H]: the mean QLIKE loss
    log v + r^2 / v with r = log(actual / last_close) (Patton 2011's robust loss without its constant:
    lower is better, only differences between forecasts of the same rows mean anything)."""
    r = np.log(actual / last_close[:, None])
    return np.mean(np.log(variance) + r**2 / variance, axis=0)


def hit_rates(quantiles: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """[H,Q]: the share of actuals strictly below each quantile (a calibrated level q hits q)."""
    return (actual[..., None] < quantiles).mean(axis=0)


def quantile_metrics(
    quantiles: np.ndarray,
    levels: tuple[float, ...],
    actual: np.ndarray,
    series_id: np.ndarray,
    scale: np.ndarray,
    last_close: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Scores of quantiles[N,H,Q] at `levels`, per step:

    - ``pinball_q{level}``: mean pinball loss in price units;
    - ``hit_q{level}``: share of actuals below the quantile (`hit_rates`);
    - ``qlike``: QLIKE of the implied variance (`implied_variance`, `qlike`), given `last_close`[N]
      and at least two levels;
    - ``spl``: M5's scaled pinball loss, the mean over levels of the pinball loss, scaled per series;
    - ``coverage``: share of actuals inside the outer quantiles (first and last level);
    - ``coverage_{P}`` and ``width_{P}``: for each central band of nominal P %, its empirical
      coverage and its mean width scaled per series;
    - ``msis``: M4's mean scaled interval score of the widest central band (alpha = 1 - P/100).
    """
    loss = pinball(actual, quantiles, levels)  # -> (N, H, Q)
    metrics = {f"pinball_q{level:g}": loss[..., i].mean(axis=0) for i, level in enumerate(levels)}
    hits = hit_rates(quantiles, actual)
    metrics |= {f"hit_q{level:g}": hits[:, i] for i, level in enumerate(levels)}
    if last_close is not None and len(levels) >= 2:
        metrics["qlike"] = qlike(implied_variance(quantiles, levels), actual, last_close)
    metrics["spl"] = series_mean(loss.mean(axis=2), series_id, scale)
    metrics["coverage"] = ((actual >= quantiles[..., 0]) & (actual <= quantiles[..., -1])).mean(axis=0)
    bands = central_bands(levels)
    for lo, hi, nominal in bands:
        lower, upper = quantiles[..., lo], quantiles[..., hi]
        metrics[f"coverage_{nominal:g}"] = ((actual >= lower) & (actual <= upper)).mean(axis=0)
        metrics[f"width_{nominal:g}"] = series_mean(upper - lower, series_id, scale)
    if bands:
        lo, hi, nominal = bands[0]
        score = interval_score(actual, quantiles[..., lo], quantiles[..., hi], alpha=1.0 - nominal / 100.0)
        metrics["msis"] = series_mean(score, series_id, scale)
    return metrics
