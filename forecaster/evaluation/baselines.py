"""The baselines every model is scored beside, from the true history at each origin.

Point: ``naive`` (the last close) and ``drift`` (the last close plus h times the mean one-day
change since the ticker's first bar). Probabilistic, as price quantiles at the model's levels,
with zero drift so that their median is the last close:

- ``ewma``: RiskMetrics volatility (lambda 0.94) of daily log close returns.
- ``garch``: GARCH(1,1) with a zero mean on percent log returns (the ``arch`` package), fitted
  once per ticker on the returns known at its first evaluation origin, then filtered forward
  with those fixed parameters.

- ``rgarch``: a range GARCH(1,1), sigma2_t = omega + alpha RV_t-1 + beta sigma2_t-1, driven by the
  daily range variance RV (overnight gap^2 + Garman-Klass, `har.range_variance`) instead of the
  squared return. arch 8 has no variance regressors (GARCH-X) and no range or realised GARCH, so it
  is arch's zero-mean GARCH(1,1) fitted on the pseudo-returns sqrt(RV): its Gaussian quasi-likelihood
  is then the QLIKE loss of sigma2 against RV. Fitted, filtered and extended to h steps as ``garch``.
- ``har``: the pooled HAR regression of `har` (range measures and the close EWMA, one QLIKE fit per
  step on every ticker's bars dated on or before the backtest's first origin), with the empirical
  quantiles of its standardised returns in the fitting data (so its median need not be the close).

ewma, garch and rgarch turn a variance of the h-day log return into quantiles with one Gaussian
rule, ``last_close * exp(sd_h * Phi^-1(q))``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from arch import arch_model
from arch.utility.exceptions import ConvergenceWarning
from scipy.signal import lfilter
from scipy.stats import norm

from forecaster.config import CLOSE
from forecaster.data.windows import Panel
from forecaster.evaluation import har

log = logging.getLogger(__name__)

EWMA_LAMBDA = 0.94  # RiskMetrics (1996) daily decay
EWMA_SEED_RETURNS = 20  # the variance starts as the mean of the first (up to) 20 squared returns
GARCH_MIN_RETURNS = 250  # about a year of daily returns before a GARCH(1,1) fit is worth trusting
PERCENT = 100.0  # arch fits percent returns: its optimiser is tuned for variances near 1
# (alpha, beta) the optimiser starts from when it fails from arch's own starting values (SLSQP may
# stop on "Inequality constraints incompatible" from one point and converge from another); omega
# then matches the sample variance of the returns
GARCH_RESTARTS = ((0.05, 0.90), (0.02, 0.97), (0.10, 0.80))


def point_forecasts(panel: Panel, origins: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """naive: the last close for every step; drift: the last close plus h times the mean
    one-day change of the series from its first bar in the data up to the origin. -> [N, H] each."""
    close = panel.values[:, CLOSE].astype(np.float64)
    last = close[origins]
    first_row = panel.starts[panel.series_id[origins]]
    elapsed = np.maximum(origins - first_row, 1)
    slope = (last - close[first_row]) / elapsed
    steps = np.arange(1, horizon + 1)
    return {
        "naive": np.repeat(last[:, None], horizon, axis=1),
        "drift": last[:, None] + slope[:, None] * steps[None, :],
    }


def gaussian_quantiles(last_close: np.ndarray, variance: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """last_close[N], variance[N,H] of the log return from the origin to step h -> prices [N,H,Q].

    A NaN variance gives NaN quantiles (the forecast is missing, not the last close).
    """
    z = norm.ppf(np.asarray(levels, dtype=np.float64))  # -> (Q,)
    sd = np.sqrt(variance)[..., None]  # -> (N, H, 1)
    return last_close[:, None, None] * np.exp(sd * z)  # -> (N, H, Q)


def log_returns(panel: Panel) -> np.ndarray:
    """[L]: log(close_t / close_t-1) on each row; NaN on each ticker's first row."""
    close = panel.values[:, CLOSE].astype(np.float64)
    returns = np.empty_like(close)
    returns[0] = np.nan
    returns[1:] = np.log(close[1:] / close[:-1])
    returns[panel.starts[:-1]] = np.nan  # never a return across two tickers
    return returns


def ewma_variance(returns: np.ndarray) -> np.ndarray:
    """One ticker's returns r_1..r_n -> v[n]: the one-day variance forecast after k returns.

    v_k = mean(r_1^2..r_k^2) for k <= 20 (the seed, using only returns already seen), then
    v_k = lambda * v_k-1 + (1 - lambda) * r_k^2.
    """
    squared = returns**2
    seed = min(EWMA_SEED_RETURNS, len(squared))
    v = np.empty_like(squared)
    v[:seed] = np.cumsum(squared[:seed]) / np.arange(1, seed + 1)
    if len(squared) > seed:
        # y_k = (1 - lambda) x_k + lambda y_k-1, in C; the initial state carries v_seed
        v[seed:], _ = lfilter([1.0 - EWMA_LAMBDA], [1.0, -EWMA_LAMBDA], squared[seed:], zi=[EWMA_LAMBDA * v[seed - 1]])
    return v


def ewma_rows(panel: Panel) -> np.ndarray:
    """[L]: per row, the EWMA variance of the daily log return known at that row's close (NaN on
    each ticker's first row)."""
    returns = log_returns(panel)
    variance = np.full(len(returns), np.nan)
    for s in range(len(panel.tickers)):
        start, end = panel.starts[s], panel.starts[s + 1]
        if end - start > 1:
            variance[start + 1 : end] = ewma_variance(returns[start + 1 : end])
    return variance


def ewma_quantiles(panel: Panel, origins: np.ndarray, horizon: int, levels: tuple[float, ...]) -> np.ndarray:
    """RiskMetrics random walk at every origin: sd of the h-day log return = sigma * sqrt(h). -> [N,H,Q]."""
    variance = ewma_rows(panel)  # per row: the variance known at that row's close
    steps = np.arange(1, horizon + 1)
    return gaussian_quantiles(panel.values[origins, CLOSE].astype(np.float64), variance[origins, None] * steps, levels)


@dataclass(frozen=True)
class GarchFit:
    """GARCH(1,1) parameters on percent returns and the backcast that starts its recursion."""

    omega: float
    alpha: float
    beta: float
    backcast: float

    @property
    def persistence(self) -> float:
        return self.alpha + self.beta


def fit_garch(percent_returns: np.ndarray, ticker: str, name: str = "garch") -> GarchFit | None:
    """Zero-mean GARCH(1,1) with normal errors, from arch's starting values, else the best
    converged fit from the GARCH_RESTARTS; None (and a log line naming the baseline) when none
    converges."""
    variance = float(np.mean(percent_returns**2))
    if not variance > 0.0:  # a flat price: nothing to fit (arch would only warn and fail)
        log.warning("%s: %s has no price change before its first origin; no %s forecasts for it", name, ticker, name)
        return None
    model = arch_model(percent_returns, mean="Zero", vol="GARCH", p=1, q=1, dist="normal", rescale=False)
    restarts = [np.array([variance * (1.0 - a - b), a, b]) for a, b in GARCH_RESTARTS]
    best, failure = None, "did not converge"
    for start in [None, *restarts]:
        try:
            with warnings.catch_warnings():
                # arch also flips a global warnings filter when show_warning=False: keep that local
                warnings.simplefilter("ignore", ConvergenceWarning)
                result = model.fit(disp="off", show_warning=False, starting_values=start)
        except (ValueError, np.linalg.LinAlgError, RuntimeError) as exc:
            failure = f"failed ({exc})"
            continue
        if result.convergence_flag == 0 and (best is None or result.loglikelihood > best.loglikelihood):
            best = result
        if best is not None and start is None:
            break  # converged from arch's own starting values: the common case, one fit
    if best is None:
        log.warning(
            "%s: the fit %s for %s from %d starting points; its %s forecasts are NaN, and %s is scored without it",
            name,
            failure,
            ticker,
            1 + len(restarts),
            name,
            name,
        )
        return None
    omega, alpha, beta = (float(best.params[k]) for k in ("omega", "alpha[1]", "beta[1]"))
    return GarchFit(omega, alpha, beta, float(model.volatility.backcast(percent_returns)))


def percent_shocks(panel: Panel, name: str = "garch") -> np.ndarray:
    """[L]: what drives the recursion, per row (NaN on each ticker's first row): the percent log
    return for ``garch``, the percent root of the range variance for ``rgarch``."""
    if name == "rgarch":
        return np.sqrt(har.range_variance(panel)) * PERCENT
    return log_returns(panel) * PERCENT


def garch_fits(panel: Panel, origins: np.ndarray, name: str = "garch") -> dict[int, GarchFit]:
    """Series id -> parameters fitted on that ticker's shocks (`percent_shocks`) up to its first
    origin (inclusive).

    Nothing after the first origin is seen, so no forecast uses parameters fitted on its future.
    A ticker with fewer than GARCH_MIN_RETURNS returns by then is left out (logged).
    """
    returns = percent_shocks(panel, name)
    fits: dict[int, GarchFit] = {}
    short: list[str] = []
    for s in np.unique(panel.series_id[origins]):
        ticker = panel.tickers[s]
        first_origin = origins[panel.series_id[origins] == s].min()
        known = returns[panel.starts[s] + 1 : first_origin + 1]
        if len(known) < GARCH_MIN_RETURNS:
            short.append(f"{ticker} ({len(known)})")
            continue
        fit = fit_garch(known, ticker, name)
        if fit is not None:
            fits[int(s)] = fit
    if short:
        log.info(
            "%s: left out %d ticker(s) with fewer than %d returns before their first origin: %s "
            "(evaluate later origins, e.g. with --from, to include them)",
            name,
            len(short),
            GARCH_MIN_RETURNS,
            ", ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else ""),
        )
    return fits


def garch_variance_path(fit: GarchFit, percent_returns: np.ndarray) -> np.ndarray:
    """One ticker's percent returns e_0..e_n-1 -> sigma2[n+1], sigma2[j] = variance of e_j given e_<j.

    arch's recursion: sigma2_j = omega + alpha e_j-1^2 + beta sigma2_j-1, where the backcast stands
    in for both e_-1^2 and sigma2_-1; sigma2[n] is the one-day forecast after the last return.
    """
    squared = np.concatenate([[fit.backcast], percent_returns**2])
    sigma2, _ = lfilter([1.0], [1.0, -fit.beta], fit.omega + fit.alpha * squared, zi=[fit.beta * fit.backcast])
    return np.asarray(sigma2)


def garch_step_variances(fit: GarchFit, one_day: np.ndarray, horizon: int) -> np.ndarray:
    """one_day[N] = sigma2_t+1 -> [N,H]: the analytic E[sigma2_t+h] of the GARCH(1,1) recursion,
    omega (1 - p^(h-1)) / (1 - p) + p^(h-1) sigma2_t+1 with p = alpha + beta."""
    powers = fit.persistence ** np.arange(horizon)  # p^(h-1) for h = 1..H
    # the geometric sum written out, so a fit at the unit-root bound (p = 1) needs no 0/0
    sums = np.concatenate([[0.0], np.cumsum(powers)[:-1]])
    return fit.omega * sums + powers * one_day[:, None]


def garch_quantiles(
    panel: Panel,
    origins: np.ndarray,
    horizon: int,
    levels: tuple[float, ...],
    fits: dict[int, GarchFit],
    name: str = "garch",
) -> np.ndarray:
    """GARCH(1,1) (or range GARCH: name ``rgarch``) at every origin: the h-day log return's variance
    is the sum of the expected one-day variances of steps 1..h. Tickers without a fit get NaN. -> [N,H,Q]."""
    returns = percent_shocks(panel, name)
    cumulative = np.full((len(origins), horizon), np.nan)
    series = panel.series_id[origins]
    for s, fit in fits.items():
        rows = np.flatnonzero(series == s)
        start = panel.starts[s]
        sigma2 = garch_variance_path(fit, returns[start + 1 : panel.starts[s + 1]])
        one_day = sigma2[origins[rows] - start]  # origin at local row t has seen e_0..e_t-1
        cumulative[rows] = np.cumsum(garch_step_variances(fit, one_day, horizon), axis=1) / PERCENT**2
    return gaussian_quantiles(panel.values[origins, CLOSE].astype(np.float64), cumulative, levels)


def har_quantiles(panel: Panel, origins: np.ndarray, horizon: int, levels: tuple[float, ...]) -> np.ndarray:
    """The pooled range HAR (`har`) at every origin, fitted on every ticker's bars dated on or before
    the first origin (the evaluation period's bars are never read by the fit). -> [N,H,Q]; NaN at
    the steps it could not be fitted for and at origins without 66 days of range history."""
    proxy = har.range_variance(panel)
    X = har.har_design(proxy, ewma_rows(panel), panel.starts)
    log_close = np.log(panel.values[:, CLOSE].astype(np.float64))
    fit = har.fit_har(X, proxy, log_close, panel, panel.dates[origins].min(), horizon, levels)
    return har.har_forecast(fit, X[origins], panel.values[origins, CLOSE].astype(np.float64))
