"""Range-based volatility measures and the pooled HAR regression behind the ``har`` baseline.

- The daily variance proxy of a bar is the squared overnight gap plus Garman-Klass (1980):
  ``ln(O_t / C_t-1)^2 + 0.5 ln(H_t / L_t)^2 - (2 ln 2 - 1) ln(C_t / O_t)^2``: an estimate of the
  close-to-close variance of that day from its range (NaN on a ticker's first bar: no gap).
- The regressors at a bar t are the logs of the 1/5/22/66-day means of the proxy up to t and of the
  close-to-close EWMA variance at t, plus a constant (6 coefficients).
- One direct regression per step h (not the HAR recursion): the target is the mean of the next h
  daily proxies, and ``exp(x_t . b_h)`` its forecast, fitted by QLIKE (Patton 2011), i.e. minimising
  ``mean(y e^{-x b} + x b)``, a convex objective, from the least-squares fit of ``log y`` as start.
  The h-day log return's variance is then ``h exp(x_t . b_h)``.
- Quantiles: the empirical quantiles of the standardised h-day log returns of the fitting rows.

Pure numpy/scipy on panel rows; the baseline that uses it lives in `baselines`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from forecaster.config import CLOSE, FEATURES
from forecaster.data.windows import Panel

log = logging.getLogger(__name__)

HAR_WINDOWS: tuple[int, ...] = (1, 5, 22, 66)  # trading days: a day, a week, a month, a quarter
HAR_MIN_ROWS = 250  # pooled fitting rows per step below which the regression is not fitted
# floor of every variance before its log: a daily sd of 0.01%, below any traded stock's range, so a
# bar without range or a flat EWMA seed gives a finite (very low) regressor instead of -inf
VARIANCE_FLOOR = 1e-8
OPEN, HIGH, LOW = (FEATURES.index(name) for name in ("open", "high", "low"))
GK_CLOSE_WEIGHT = 2.0 * np.log(2.0) - 1.0  # Garman-Klass weight of the open-to-close return


def range_variance(panel: Panel) -> np.ndarray:
    """[L]: overnight gap^2 + Garman-Klass of every bar; NaN on each ticker's first bar."""
    values = panel.values.astype(np.float64)
    o, h, lo, c = values[:, OPEN], values[:, HIGH], values[:, LOW], values[:, CLOSE]
    gap = np.empty_like(c)
    gap[0] = np.nan
    gap[1:] = np.log(o[1:] / c[:-1])
    gap[panel.starts[:-1]] = np.nan  # never a gap across two tickers
    garman_klass = 0.5 * np.log(h / lo) ** 2 - GK_CLOSE_WEIGHT * np.log(c / o) ** 2
    return gap**2 + garman_klass


def trailing_mean(values: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """[L]: mean of values[t-window+1 .. t] within each ticker; NaN where that span leaves the ticker
    or holds a NaN."""
    out = np.full(len(values), np.nan)
    for s in range(len(starts) - 1):
        part = values[starts[s] : starts[s + 1]]
        if len(part) >= window:
            sums = np.convolve(part, np.ones(window), mode="valid")  # NaN propagates to the spans holding it
            out[starts[s] + window - 1 : starts[s + 1]] = sums / window
    return out


def forward_mean(values: np.ndarray, starts: np.ndarray, horizon: int) -> np.ndarray:
    """[L]: mean of values[t+1 .. t+horizon] within each ticker; NaN past the ticker's end."""
    out = np.full(len(values), np.nan)
    ahead = trailing_mean(values, starts, horizon)  # mean of [u-h+1 .. u], stored at u = t + h
    rows = np.arange(len(values) - horizon)
    same = np.searchsorted(starts, rows, side="right") == np.searchsorted(starts, rows + horizon, side="right")
    out[rows[same]] = ahead[rows[same] + horizon]
    return out


def har_design(proxy: np.ndarray, ewma: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """X[L, 2 + len(HAR_WINDOWS)]: 1, log of each trailing mean of the proxy, log of the EWMA variance
    (floored at VARIANCE_FLOOR); a row with any NaN is not usable (left NaN)."""
    columns = [np.ones(len(proxy))]
    columns += [np.log(np.maximum(trailing_mean(proxy, starts, w), VARIANCE_FLOOR)) for w in HAR_WINDOWS]
    columns.append(np.log(np.maximum(ewma, VARIANCE_FLOOR)))
    X = np.stack(columns, axis=1)
    missing = np.isnan(np.stack([trailing_mean(proxy, starts, max(HAR_WINDOWS)), ewma], axis=1)).any(axis=1)
    X[missing] = np.nan
    return X


def qlike_objective(b: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """mean(y e^{-Xb} + Xb) and its gradient mean((1 - y e^{-Xb}) x)."""
    xb = X @ b
    ratio = y * np.exp(-xb)
    return float(np.mean(ratio + xb)), X.T @ (1.0 - ratio) / len(y)


def qlike_hessian(b: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """mean(y e^{-Xb} x x'): positive semi-definite, so the objective is convex."""
    ratio = y * np.exp(-(X @ b))
    return (X * ratio[:, None]).T @ X / len(y)


def fit_qlike(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """b minimising the QLIKE loss of exp(X b) against the variance proxies y >= 0, from the least
    squares fit of log y (rows with y > 0) as the starting point. A ValueError when the optimiser
    does not converge."""
    positive = y > 0
    start, *_ = np.linalg.lstsq(X[positive], np.log(y[positive]), rcond=None)
    result = minimize(qlike_objective, start, args=(X, y), jac=True, hess=qlike_hessian, method="trust-exact")
    if not result.success or not np.all(np.isfinite(result.x)):
        raise ValueError(f"the QLIKE fit did not converge ({result.message})")
    return np.asarray(result.x)


@dataclass(frozen=True)
class HarFit:
    """Per step h (rows): the coefficients b_h and the standardised-return quantiles at the levels."""

    coefficients: np.ndarray  # [H, 2 + len(HAR_WINDOWS)]; NaN rows: not fitted for that step
    z_quantiles: np.ndarray  # [H, Q]
    n_rows: np.ndarray  # [H] fitting rows per step
    cut: np.datetime64  # the last date whose bars the fit may see


def fit_har(
    X: np.ndarray,
    proxy: np.ndarray,
    log_close: np.ndarray,
    panel: Panel,
    cut: np.datetime64,
    horizon: int,
    levels: tuple[float, ...],
) -> HarFit:
    """Fit one QLIKE regression per step h on the rows t whose targets t+1..t+h are all dated on or
    before `cut`; the bars after it are never read. Steps with fewer than HAR_MIN_ROWS rows or a
    failed fit get NaN (logged)."""
    width = X.shape[1]
    coefficients = np.full((horizon, width), np.nan)
    z_quantiles = np.full((horizon, len(levels)), np.nan)
    n_rows = np.zeros(horizon, dtype=np.int64)
    rows = np.arange(len(proxy))
    end = panel.starts[panel.series_id + 1]  # first row of the next ticker, per row
    for h in range(1, horizon + 1):
        inside = rows + h < end
        known = np.zeros(len(rows), dtype=bool)
        known[inside] = panel.dates[rows[inside] + h] <= cut
        y = forward_mean(proxy, panel.starts, h)
        ret = np.full(len(rows), np.nan)
        ret[inside] = log_close[rows[inside] + h] - log_close[rows[inside]]
        fit_rows = known & np.isfinite(X).all(axis=1) & np.isfinite(y) & np.isfinite(ret)
        n_rows[h - 1] = int(fit_rows.sum())
        if n_rows[h - 1] < HAR_MIN_ROWS:
            log.info(
                "har: %d fitting rows for step %d before %s (needs %d); no har forecasts at that step "
                "(evaluate later origins, e.g. with --from, to give it history)",
                n_rows[h - 1],
                h,
                np.datetime_as_string(cut, unit="D"),
                HAR_MIN_ROWS,
            )
            continue
        try:
            b = fit_qlike(X[fit_rows], y[fit_rows])
        except (ValueError, np.linalg.LinAlgError) as exc:
            log.warning("har: step %d: %s; no har forecasts at that step", h, exc)
            continue
        coefficients[h - 1] = b
        z = ret[fit_rows] / np.sqrt(h * np.exp(X[fit_rows] @ b))
        z_quantiles[h - 1] = np.quantile(z, levels)
    return HarFit(coefficients, z_quantiles, n_rows, cut)


def har_forecast(fit: HarFit, X: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """Price quantiles [N,H,Q] from the regressors X[N, k] at the origins:
    last_close exp(sqrt(h exp(x b_h)) z_h,q). NaN where X or the step's fit is missing."""
    horizon = fit.coefficients.shape[0]
    steps = np.arange(1, horizon + 1)
    variance = steps[None, :] * np.exp(X @ fit.coefficients.T)  # -> (N, H)
    return last_close[:, None, None] * np.exp(np.sqrt(variance)[..., None] * fit.z_quantiles[None, :, :])
