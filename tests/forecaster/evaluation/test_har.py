"""forecaster.evaluation.har and the ``har`` baseline: the range variance by hand, the QLIKE fit and
the pooled regression recover the coefficients of a known HAR process, and the fit never reads the
bars after the backtest's first origin."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from forecaster.data.windows import Panel
from forecaster.evaluation import baselines, har
from forecaster.evaluation.backtest import rolling_origins

LEVELS = (0.1, 0.5, 0.9)
K = 2.0 * math.log(2.0) - 1.0  # Garman-Klass weight of the open-to-close return
# a known log-HAR: log E[v_t+1] = b . (1, log m1, log m5, log m22, log m66, log ewma); slopes sum 0.9
TRUE_B = np.array([-0.8, 0.35, 0.3, 0.15, 0.1, 0.0])


def bars(rows: list[tuple[float, float, float, float]], ticker: str = "A", start: str = "2020-01-01") -> pd.DataFrame:
    o, h, lo, c = zip(*rows, strict=True)
    dates = pd.bdate_range(start, periods=len(rows))
    return pd.DataFrame({"date": dates, "ticker": ticker, "open": o, "high": h, "low": lo, "close": c})


def test_range_variance_is_the_squared_gap_plus_garman_klass() -> None:
    panel = Panel.from_frame(
        pd.concat(
            [
                bars([(100.0, 102.0, 99.0, 101.0), (103.0, 104.0, 100.0, 101.0)], "A"),
                bars([(50.0, 51.0, 49.0, 50.5)], "B"),
            ]
        )
    )
    v = har.range_variance(panel)
    second = math.log(103.0 / 101.0) ** 2 + 0.5 * math.log(104.0 / 100.0) ** 2 - K * math.log(101.0 / 103.0) ** 2
    assert math.isnan(v[0]) and math.isnan(v[2])  # a ticker's first bar has no gap, B's not A's last close
    assert v[1] == pytest.approx(second, rel=1e-5)


def test_trailing_and_forward_means_stay_inside_each_ticker() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0])
    starts = np.array([0, 4, 7])
    np.testing.assert_allclose(
        har.trailing_mean(values, starts, 2), [np.nan, 1.5, 2.5, 3.5, np.nan, 15.0, 25.0], equal_nan=True
    )
    np.testing.assert_allclose(
        har.forward_mean(values, starts, 2), [2.5, 3.5, np.nan, np.nan, 25.0, np.nan, np.nan], equal_nan=True
    )


def test_qlike_fit_recovers_the_coefficients_of_exponential_variances_with_multiplicative_noise() -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(20_000), rng.normal(0.0, 1.0, 20_000), rng.normal(0.0, 0.5, 20_000)])
    b = np.array([-1.0, 0.6, 0.3])
    y = np.exp(X @ b) * rng.gamma(4.0, 0.25, 20_000)  # E[u] = 1: exp(X b) is the conditional mean
    np.testing.assert_allclose(har.fit_qlike(X, y), b, atol=0.05)
    # the least-squares start alone is biased in the intercept by E[log u] = digamma(4) - log 4 = -0.13
    start, *_ = np.linalg.lstsq(X, np.log(y), rcond=None)
    assert start[0] - b[0] < -0.1


def ar1(rng: np.random.Generator, n: int, persistence: float, sd: float) -> np.ndarray:
    out, x = np.empty(n), 0.0
    for t in range(n):
        x = persistence * x + rng.normal(0.0, sd)
        out[t] = x
    return out


def har_process_frame(tickers: int, days: int, seed: int) -> pd.DataFrame:
    """Bars whose range variance (gap 0, Garman-Klass) equals v_t exactly, v_t+1 = exp(x_t . TRUE_B) u,
    u ~ Gamma(20, 1/20), x_t the logs of v's 1/5/22/66-day means up to t (TRUE_B puts 0 on the EWMA)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(tickers):
        v = list(np.exp(-8.0) * rng.gamma(20.0, 0.05, 66))
        for _ in range(days - 66):
            x = [1.0, *(math.log(np.mean(v[-w:])) for w in har.HAR_WINDOWS)]
            v.append(math.exp(float(np.dot(TRUE_B[:5], x))) * rng.gamma(20.0, 0.05))
        # the close return's share of the day's variance wanders on its own (AR(1) in logs, within
        # [0.2, 5]), so the close EWMA is not just a smoothed range variance and its 0 is identified
        share = np.exp(np.clip(ar1(rng, days, persistence=0.97, sd=0.25), math.log(0.2), math.log(5.0)))
        rows, close = [], 50.0
        for variance, ratio in zip(v, share, strict=True):
            c = math.sqrt(variance * ratio) * (1.0 if rng.random() < 0.5 else -1.0)  # open-to-close log return
            a = math.sqrt(2.0 * variance + 2.0 * K * c**2)  # log(high / low): 0.5 a^2 - K c^2 = variance
            o, new_close = close, close * math.exp(c)
            spare = (a - abs(c)) / 2.0
            rows.append((o, max(o, new_close) * math.exp(spare), min(o, new_close) * math.exp(-spare), new_close))
            close = new_close
        parts.append(bars(rows, f"T{i}"))
    return pd.concat(parts, ignore_index=True)


def test_pooled_har_recovers_a_known_har_process_from_its_bars() -> None:
    frame = har_process_frame(tickers=8, days=2500, seed=1)
    panel = Panel.from_frame(frame)
    proxy = har.range_variance(panel)
    X = har.har_design(proxy, baselines.ewma_rows(panel), panel.starts)
    log_close = np.log(panel.values[:, 3].astype(np.float64))
    fit = har.fit_har(X, proxy, log_close, panel, panel.dates.max(), 1, LEVELS)
    # every row with 66 range days behind it (the first bar has none) and a bar ahead
    assert fit.n_rows[0] == 8 * (2500 - 67)
    np.testing.assert_allclose(fit.coefficients[0, 1:], TRUE_B[1:], atol=0.03)  # the slopes, EWMA's 0 included
    # the intercept moves with the slopes' sum times the regressors' level (about -8): looser
    assert fit.coefficients[0, 0] == pytest.approx(TRUE_B[0], abs=0.1)
    # the h-step target is the mean of the next h variances: persistent, so its slopes stay near
    fit3 = har.fit_har(X, proxy, log_close, panel, panel.dates.max(), 3, LEVELS)
    assert fit3.coefficients[2, 1:].sum() == pytest.approx(TRUE_B[1:].sum(), abs=0.1)


def sample_frame() -> pd.DataFrame:
    return har_process_frame(tickers=2, days=500, seed=2)


def har_fit_of(frame: pd.DataFrame, origins_from: str) -> tuple[har.HarFit, np.ndarray, Panel]:
    panel = Panel.from_frame(frame)
    origins = rolling_origins(panel, 80, 3, from_date=origins_from)
    proxy = har.range_variance(panel)
    X = har.har_design(proxy, baselines.ewma_rows(panel), panel.starts)
    log_close = np.log(panel.values[:, 3].astype(np.float64))
    return har.fit_har(X, proxy, log_close, panel, panel.dates[origins].min(), 3, LEVELS), origins, panel


def test_har_is_fitted_only_on_bars_up_to_the_first_origin() -> None:
    frame = sample_frame()
    fit, origins, panel = har_fit_of(frame, "2021-01-01")
    cut = panel.dates[origins].min()
    assert np.isfinite(fit.coefficients).all() and np.isfinite(fit.z_quantiles).all()
    later = frame["date"] > cut
    changed = frame.copy()
    changed.loc[later, ["open", "high", "low", "close"]] *= np.exp(np.linspace(0.0, 0.5, int(later.sum())))[:, None]
    changed.loc[later, "high"] *= 1.05  # wider ranges and other closes in the evaluation period
    refit, _, _ = har_fit_of(changed, "2021-01-01")
    np.testing.assert_array_equal(refit.coefficients, fit.coefficients)
    np.testing.assert_array_equal(refit.z_quantiles, fit.z_quantiles)
    # the same change one day before the cut does move them: the fit does read the data up to it
    earlier = changed.copy()
    earlier.loc[frame["date"] == frame.loc[frame["date"] < cut, "date"].max(), "high"] *= 1.5
    assert not np.array_equal(har_fit_of(earlier, "2021-01-01")[0].coefficients, fit.coefficients)


def test_har_quantiles_scale_the_standardised_return_quantiles_by_the_step_variance() -> None:
    frame = sample_frame()
    fit, origins, panel = har_fit_of(frame, "2021-01-01")
    q = baselines.har_quantiles(panel, origins, 3, LEVELS)
    X = har.har_design(har.range_variance(panel), baselines.ewma_rows(panel), panel.starts)[origins[0]]
    last = float(panel.values[origins[0], 3])
    for h in (1, 3):
        sd = math.sqrt(h * math.exp(float(X @ fit.coefficients[h - 1])))
        np.testing.assert_allclose(q[0, h - 1], last * np.exp(sd * fit.z_quantiles[h - 1]), rtol=1e-9)
    assert (np.diff(q, axis=2) > 0).all()  # empirical quantiles never cross


def test_har_without_enough_history_before_the_first_origin_has_no_forecast(caplog: pytest.LogCaptureFixture) -> None:
    panel = Panel.from_frame(sample_frame())
    origins = rolling_origins(panel, 80, 3)  # from row 79: 13 rows with 66 days of ranges behind them
    with caplog.at_level(logging.INFO, logger="forecaster.evaluation.har"):
        q = baselines.har_quantiles(panel, origins, 3, LEVELS)
    assert np.isnan(q).all()
    assert "no har forecasts" in caplog.text and "--from" in caplog.text
