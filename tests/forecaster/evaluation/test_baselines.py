"""forecaster.evaluation.baselines: the RiskMetrics EWMA recursion and the GARCH(1,1) baseline against hand
computation and arch's own forecasts; GARCH sees nothing after a ticker's first origin."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from arch import arch_model
from factories import flat_panel_frame, random_ohlc

from forecaster.data.windows import Panel
from forecaster.evaluation import baselines, har
from forecaster.evaluation.backtest import rolling_origins
from forecaster.evaluation.baselines import (
    GarchFit,
    ewma_quantiles,
    ewma_variance,
    garch_fits,
    garch_quantiles,
    garch_step_variances,
)

LEVELS = (0.1, 0.5, 0.9)
Z90 = 1.2815515655446004  # Phi^-1(0.9)
RETURNS = [0.01, -0.02, 0.03, 0.0, -0.01, 0.02]


def panel_of(closes: dict[str, np.ndarray]) -> Panel:
    """One ticker per entry, open = high = low = close, business days from 2020-01-01."""
    return Panel.from_frame(flat_panel_frame(closes))


def test_ewma_seeds_with_the_mean_of_squared_returns_then_follows_the_riskmetrics_recursion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(baselines, "EWMA_SEED_RETURNS", 2)  # a short seed, so six returns reach the recursion
    v2 = (0.01**2 + 0.02**2) / 2  # 0.00025
    v3 = 0.94 * v2 + 0.06 * 0.03**2  # 0.000289
    v4 = 0.94 * v3 + 0.06 * 0.0**2  # 0.00027166
    v5 = 0.94 * v4 + 0.06 * 0.01**2
    v6 = 0.94 * v5 + 0.06 * 0.02**2
    np.testing.assert_allclose(ewma_variance(np.array(RETURNS)), [0.01**2, v2, v3, v4, v5, v6], rtol=1e-12)


def test_ewma_seed_uses_only_returns_already_seen() -> None:
    # with fewer returns than the 20-return seed, the variance is the running mean of squares
    squares = np.array(RETURNS) ** 2
    np.testing.assert_allclose(ewma_variance(np.array(RETURNS)), np.cumsum(squares) / np.arange(1, 7), rtol=1e-12)


def test_ewma_quantiles_at_two_steps_match_hand_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "EWMA_SEED_RETURNS", 2)
    closes = 100.0 * np.exp(np.cumsum([0.0, *RETURNS]))  # 7 bars, 6 returns
    panel = panel_of({"A": closes, "B": np.array([50.0, 55.0, 50.0, 45.0])})
    origins = rolling_origins(panel, lookback=2, horizon=2)
    assert origins.tolist() == [1, 2, 3, 4, 8]  # A at local rows 1..4, B at row 1

    q = ewma_quantiles(panel, origins, horizon=2, levels=LEVELS)

    v4 = 0.94 * (0.94 * 0.00025 + 0.06 * 0.03**2)  # A's origin at row 4 has seen returns 1..4
    last = closes[4]
    for h in (1, 2):
        sd = math.sqrt(v4 * h)
        assert q[3, h - 1] == pytest.approx([last * math.exp(-sd * Z90), last, last * math.exp(sd * Z90)], rel=1e-5)
    # A's first origin has one return; B's sees only its own: log(55/50), never A's closes
    assert q[0, 0, 2] == pytest.approx(closes[1] * math.exp(0.01 * Z90), rel=1e-5)
    assert q[4, 1, 2] == pytest.approx(55.0 * math.exp(abs(math.log(1.1)) * math.sqrt(2) * Z90), rel=1e-5)


def simulated_garch_closes(n: int, seed: int) -> np.ndarray:
    """Closes whose percent log returns follow GARCH(1,1) with omega 0.05, alpha 0.1, beta 0.85."""
    rng = np.random.default_rng(seed)
    omega, alpha, beta = 0.05, 0.1, 0.85
    sigma2, returns = omega / (1 - alpha - beta), np.empty(n)
    for t in range(n):
        returns[t] = math.sqrt(sigma2) * rng.standard_normal()
        sigma2 = omega + alpha * returns[t] ** 2 + beta * sigma2
    return 100.0 * np.exp(np.cumsum(np.concatenate([[0.0], returns / 100.0])))


def test_garch_is_fitted_only_on_returns_up_to_the_first_origin() -> None:
    closes = simulated_garch_closes(400, seed=7)
    panel = panel_of({"A": closes})
    origins = rolling_origins(panel, lookback=2, horizon=3)
    origins = origins[origins >= 300]  # first origin at row 300: 300 returns known
    later_changed = closes.copy()
    later_changed[301:] *= np.exp(np.linspace(0.0, 0.5, 100))  # a different future
    earlier_changed = closes.copy()
    earlier_changed[200:] *= 1.05  # a jump inside the fitting window

    fits = garch_fits(panel, origins)

    assert set(fits) == {0}
    assert garch_fits(panel_of({"A": later_changed}), origins) == fits
    assert garch_fits(panel_of({"A": earlier_changed}), origins)[0] != fits[0]


def test_garch_quantiles_equal_arch_forecasts_with_the_fitted_parameters() -> None:
    closes = simulated_garch_closes(400, seed=7)
    panel = panel_of({"A": closes})
    origins = rolling_origins(panel, lookback=2, horizon=3)
    origins = origins[origins >= 300]
    fit = garch_fits(panel, origins)[0]

    q = garch_quantiles(panel, origins, 3, LEVELS, {0: fit})

    percent = 100.0 * np.diff(np.log(panel.values[:, 3].astype(np.float64)))
    fixed = arch_model(percent, mean="Zero", vol="GARCH", p=1, q=1, rescale=False)
    fixed_result = fixed.fix([fit.omega, fit.alpha, fit.beta])
    # arch's origin index k is the return of row k + 1: the origin at row 300 is k = 299
    variance = fixed_result.forecast(horizon=3, start=299, reindex=False).variance.to_numpy()
    sd = np.sqrt(np.cumsum(variance[: len(origins)], axis=1)) / 100.0  # the h-day log return's sd
    last = panel.values[origins, 3].astype(np.float64)[:, None]
    np.testing.assert_allclose(q[..., 2], last * np.exp(sd * Z90), rtol=1e-9)
    np.testing.assert_allclose(q[..., 0], last * np.exp(-sd * Z90), rtol=1e-9)
    np.testing.assert_allclose(q[..., 1], np.repeat(last, 3, axis=1), rtol=1e-12)


def test_garch_step_variance_is_the_analytic_multi_step_formula() -> None:
    fit = GarchFit(omega=0.1, alpha=0.1, beta=0.8, backcast=1.0)
    # omega (1 - p^(h-1)) / (1 - p) + p^(h-1) sigma2_t+1, p = 0.9, sigma2_t+1 = 2
    expected = [2.0, 0.1 + 0.9 * 2.0, 0.1 * (1 - 0.81) / 0.1 + 0.81 * 2.0]
    np.testing.assert_allclose(garch_step_variances(fit, np.array([2.0]), 3), [expected])
    unit_root = GarchFit(omega=0.1, alpha=0.2, beta=0.8, backcast=1.0)  # p = 1: omega (h - 1) + sigma2_t+1
    np.testing.assert_allclose(garch_step_variances(unit_root, np.array([2.0]), 3), [[2.0, 2.1, 2.2]])


def test_a_short_ticker_gets_no_garch_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    panel = panel_of({"LONG": simulated_garch_closes(320, seed=1), "SHORT": simulated_garch_closes(60, seed=2)})
    origins = rolling_origins(panel, lookback=2, horizon=2)
    origins = origins[(panel.series_id[origins] == 1) | (origins >= 300)]

    with caplog.at_level(logging.INFO, logger="forecaster.evaluation.baselines"):
        fits = garch_fits(panel, origins)
        q = garch_quantiles(panel, origins, 2, LEVELS, fits)

    assert set(fits) == {0}
    short = panel.series_id[origins] == 1
    assert np.isnan(q[short]).all() and np.isfinite(q[~short]).all()
    assert "left out 1 ticker(s) with fewer than 250 returns before their first origin: SHORT (1)" in caplog.text


def test_a_failed_garch_fit_is_nan_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def fit(self, **_: object) -> None:
            raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(baselines, "arch_model", lambda *a, **k: Broken())
    panel = panel_of({"A": simulated_garch_closes(300, seed=3)})
    origins = rolling_origins(panel, lookback=2, horizon=2)
    origins = origins[origins >= 260]

    with caplog.at_level(logging.WARNING, logger="forecaster.evaluation.baselines"):
        fits = garch_fits(panel, origins)

    assert fits == {}
    assert np.isnan(garch_quantiles(panel, origins, 2, LEVELS, fits)).all()
    assert "garch: the fit failed (singular matrix) for A from 4 starting points" in caplog.text


def test_a_garch_fit_that_fails_from_archs_start_is_restarted_and_keeps_the_best_converged_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """arch's SLSQP can stop from its own starting values ("Inequality constraints incompatible",
    flag 4) and converge from another point: a stub makes the first start fail."""
    returns = np.diff(np.log(simulated_garch_closes(1500, seed=11))) * 100.0
    starts: list[object] = []
    loglik: list[float] = []

    class FailsFromItsOwnStart:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.model = arch_model(*args, **kwargs)
            self.volatility = self.model.volatility

        def fit(self, **kwargs: object) -> object:
            starts.append(kwargs["starting_values"])
            result = self.model.fit(**kwargs)
            if kwargs["starting_values"] is None:
                return type("NotConverged", (), {"convergence_flag": 4, "loglikelihood": 0.0})()
            loglik.append(result.loglikelihood)
            return result

    monkeypatch.setattr(baselines, "arch_model", FailsFromItsOwnStart)
    fit = baselines.fit_garch(returns, "A")

    assert starts[0] is None and len(starts) == 1 + len(baselines.GARCH_RESTARTS)
    variance = np.mean(returns**2)
    for start, (alpha, beta) in zip(starts[1:], baselines.GARCH_RESTARTS, strict=True):
        np.testing.assert_allclose(start, [variance * (1 - alpha - beta), alpha, beta])  # type: ignore[arg-type]
    assert fit is not None
    best = arch_model(returns, mean="Zero", vol="GARCH", p=1, q=1, dist="normal", rescale=False).fit(
        disp="off", starting_values=starts[1 + int(np.argmax(loglik))]
    )
    expected = [float(best.params[k]) for k in ("omega", "alpha[1]", "beta[1]")]
    np.testing.assert_allclose([fit.omega, fit.alpha, fit.beta], expected, rtol=1e-6)  # an optimiser's answer
    assert fit.alpha == pytest.approx(0.1, abs=0.06) and fit.beta == pytest.approx(0.85, abs=0.1)  # the true process


def test_a_garch_fit_that_converges_from_archs_start_is_fitted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    real = baselines.arch_model

    def counted(*args: object, **kwargs: object) -> object:
        model = real(*args, **kwargs)
        fit = model.fit
        model.fit = lambda **kw: calls.append(kw["starting_values"]) or fit(**kw)  # type: ignore[method-assign]
        return model

    monkeypatch.setattr(baselines, "arch_model", counted)
    assert baselines.fit_garch(np.diff(np.log(simulated_garch_closes(600, seed=5))) * 100.0, "A") is not None
    assert calls == [None]


def test_a_flat_price_gets_no_garch_fit_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="forecaster.evaluation.baselines"):
        assert baselines.fit_garch(np.zeros(300), "FLAT") is None
    assert "garch: FLAT has no price change before its first origin" in caplog.text


def test_rgarch_is_arch_garch_on_the_root_of_the_range_variance_fitted_up_to_the_first_origin() -> None:
    frame = random_ohlc(tickers=("A",), days=400, seed=3)
    panel = Panel.from_frame(frame)
    origins = rolling_origins(panel, lookback=2, horizon=3)
    origins = origins[origins >= 300]
    pseudo = 100.0 * np.sqrt(har.range_variance(panel))  # percent root of gap^2 + Garman-Klass; NaN on row 0

    fit = garch_fits(panel, origins, "rgarch")[0]

    # the same fit as arch's on the pseudo-returns of rows 1..300: QLIKE of sigma2 against the range variance
    assert fit == baselines.fit_garch(pseudo[1:301], "A", "rgarch")
    assert fit != garch_fits(panel, origins)[0]  # not the close-to-close garch
    later = frame.copy()
    later.loc[301:, ["high"]] *= 1.2  # wider ranges after the first origin
    assert garch_fits(Panel.from_frame(later), origins, "rgarch") == {0: fit}
    q = garch_quantiles(panel, origins, 3, LEVELS, {0: fit}, "rgarch")
    fixed = arch_model(pseudo[1:], mean="Zero", vol="GARCH", p=1, q=1, rescale=False).fix(
        [fit.omega, fit.alpha, fit.beta]
    )
    variance = fixed.forecast(horizon=3, start=299, reindex=False).variance.to_numpy()  # origin row 300 = k 299
    sd = np.sqrt(np.cumsum(variance[: len(origins)], axis=1)) / 100.0
    last = panel.values[origins, 3].astype(np.float64)[:, None]
    np.testing.assert_allclose(q[..., 2], last * np.exp(sd * Z90), rtol=1e-9)
