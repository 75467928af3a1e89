"""Calibration beyond average coverage: the tail tests of risk management, conditional coverage and
the calibration curve of every forecast with quantiles in a backtest.

Conventions, stated once:
- A hit of a quantile is an actual strictly below it (`scoring.hit_rates`); the calibration curve is
  each level's hit rate per step (nominal vs empirical level).
- Tails: the served levels nearest to 5% below the median and to 95% above it (the outermost ones,
  0.1 and 0.9, at the default levels). A lower-tail violation is an actual below its quantile, an
  upper-tail violation an actual above it; each tail's expected violation rate is its distance
  from 0 or 1.
- Kupiec (1995) unconditional coverage: LR_uc = -2 ln[(1-p)^(n-x) p^x / (1-x/n)^(n-x) (x/n)^x] ~ chi2(1).
  Christoffersen (1998) independence: from the transition counts n_ij (i then j) of the violation
  sequence, LR_ind = -2 ln[(1-pi)^(n00+n10) pi^(n01+n11) / (1-pi0)^n00 pi0^n01 (1-pi1)^n10 pi1^n11]
  ~ chi2(1), pi0 = n01/(n00+n01), pi1 = n11/(n10+n11), pi = (n01+n11)/(all pairs); 0 ln 0 = 0.
- Both run per ticker and step h on its non-overlapping forecasts (every h-th origin in date order:
  h-step forecasts from consecutive days share h-1 days and would fail independence by construction);
  a ticker with fewer than MIN_TESTED of them is not tested. A test passes at 5% when p >= 0.05.
- Conditional coverage: the share of actuals inside the outer band (first and last level), within
  each tercile of the forecast's own implied volatility (`scoring.implied_variance`, terciles of the
  pooled rows per step) and within each calendar year of the origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import xlogy
from scipy.stats import chi2

from forecaster.config import MEDIAN
from forecaster.evaluation import scoring
from forecaster.evaluation.backtest import Backtest
from forecaster.evaluation.significance import ALPHA

TAIL_TARGETS = (0.05, 0.95)  # the tails risk management tests, when the model serves them
MIN_TESTED = 20  # non-overlapping forecasts a ticker needs before its tails are tested
TERCILES = ("low", "mid", "high")


@dataclass(frozen=True)
class LRTest:
    lr: float  # likelihood-ratio statistic
    p_value: float  # chi2(1)

    @property
    def passed(self) -> bool:
        return bool(self.p_value >= ALPHA)


def kupiec(violations: int, n: int, p: float) -> LRTest:
    """Kupiec's unconditional coverage test of `violations` in `n` at an expected rate `p`."""
    x, rate = float(violations), violations / n
    null = xlogy(n - x, 1.0 - p) + xlogy(x, p)
    alternative = xlogy(n - x, 1.0 - rate) + xlogy(x, rate)
    lr = max(-2.0 * (null - alternative), 0.0)
    return LRTest(float(lr), float(chi2.sf(lr, df=1)))


def transition_counts(violations: np.ndarray) -> tuple[int, int, int, int]:
    """(n00, n01, n10, n11): how often a day in state i (1 = violation) is followed by state j."""
    v = np.asarray(violations, dtype=bool)
    before, after = v[:-1], v[1:]
    return (
        int(np.sum(~before & ~after)),
        int(np.sum(~before & after)),
        int(np.sum(before & ~after)),
        int(np.sum(before & after)),
    )


def christoffersen(violations: np.ndarray) -> LRTest:
    """Christoffersen's independence test of a violation sequence in time order (first-order Markov
    alternative). Fewer than two points: NaN (not testable)."""
    if len(violations) < 2:
        return LRTest(float("nan"), float("nan"))
    n00, n01, n10, n11 = transition_counts(violations)
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    null = xlogy(n00 + n10, 1.0 - pi) + xlogy(n01 + n11, pi)
    alternative = xlogy(n00, 1.0 - pi0) + xlogy(n01, pi0) + xlogy(n10, 1.0 - pi1) + xlogy(n11, pi1)
    lr = max(-2.0 * (null - alternative), 0.0)
    return LRTest(float(lr), float(chi2.sf(lr, df=1)))


def tail_levels(levels: tuple[float, ...]) -> list[tuple[int, str, float]]:
    """(index of the level, side, expected violation rate) of the tested tails: per side of the
    median, the served level nearest to 5% (lower) or 95% (upper)."""
    tails = []
    for target, side in zip(TAIL_TARGETS, ("lower", "upper"), strict=True):
        candidates = [i for i, q in enumerate(levels) if (q < MEDIAN if side == "lower" else q > MEDIAN)]
        if candidates:
            i = min(candidates, key=lambda j: abs(levels[j] - target))
            tails.append((i, side, levels[i] if side == "lower" else 1.0 - levels[i]))
    return tails


def series_rows(series_id: np.ndarray, origin_dates: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(series id, its rows in origin-date order) for every series present, ids ascending."""
    order = np.lexsort((origin_dates, series_id))
    ids, first = np.unique(series_id[order], return_index=True)
    return [(int(s), rows) for s, rows in zip(ids, np.split(order, first[1:]), strict=True)]


def ticker_tail_tests(
    violated: np.ndarray, groups: list[tuple[int, np.ndarray]], step: int, rate: float
) -> list[tuple[int, int, int, LRTest, LRTest]]:
    """violated[N] at one step, `series_rows` -> per tested series (series id, n, violations, Kupiec,
    Christoffersen) on its every `step`-th origin in date order."""
    out = []
    for s, ordered in groups:
        rows = ordered[::step]
        if len(rows) < MIN_TESTED:
            continue
        v = violated[rows]
        out.append((int(s), len(rows), int(v.sum()), kupiec(int(v.sum()), len(rows), rate), christoffersen(v)))
    return out


def tail_report(result: Backtest, name: str, rows: np.ndarray, per_ticker: bool) -> list[dict[str, Any]]:
    """One entry per tested tail: level, side, expected rate and, per step, the share of tested tickers
    passing Kupiec, Christoffersen and both (null when none is tested), optionally every ticker's tests."""
    quantiles, actual = result.quantiles[name][rows], result.actual[rows]
    groups = series_rows(result.series_id[rows], result.origin_dates[rows])
    report = []
    for index, side, rate in tail_levels(result.levels):
        q = quantiles[..., index]
        violated = actual < q if side == "lower" else actual > q  # -> (N, H)
        entry: dict[str, Any] = {"level": result.levels[index], "side": side, "expected_rate": rate}
        shares: dict[str, list[float | None]] = {"kupiec_pass": [], "christoffersen_pass": [], "both_pass": []}
        tickers, details = [], []
        for h in range(result.horizon):
            tests = ticker_tail_tests(violated[:, h], groups, h + 1, rate)
            tickers.append(len(tests))
            passed = {
                "kupiec_pass": [k.passed for *_, k, _ in tests],
                "christoffersen_pass": [c.passed for *_, c in tests],
                "both_pass": [k.passed and c.passed for *_, k, c in tests],
            }
            for key, flags in passed.items():
                shares[key].append(float(np.mean(flags)) if flags else None)
            if per_ticker:
                details.append([ticker_entry(result.tickers[s], n, x, k, c) for s, n, x, k, c in tests])
        entry |= {"n_tickers": tickers, **shares}
        if per_ticker:
            entry["tickers"] = details
        report.append(entry)
    return report


def ticker_entry(
    ticker: str, n: int, violations: int, kupiec_test: LRTest, christoffersen_test: LRTest
) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "n": n,
        "violations": violations,
        "kupiec_lr": _finite(kupiec_test.lr),
        "kupiec_p": _finite(kupiec_test.p_value),
        "christoffersen_lr": _finite(christoffersen_test.lr),
        "christoffersen_p": _finite(christoffersen_test.p_value),
    }


def coverage_by_tercile(quantiles: np.ndarray, levels: tuple[float, ...], actual: np.ndarray) -> dict[str, Any]:
    """Outer-band coverage [H] within each tercile (low, mid, high) of the implied volatility, and the
    tercile bounds of the implied sd per step."""
    inside = (actual >= quantiles[..., 0]) & (actual <= quantiles[..., -1])  # -> (N, H)
    sd = np.sqrt(scoring.implied_variance(quantiles, levels))
    bounds = np.quantile(sd, [1.0 / 3.0, 2.0 / 3.0], axis=0)  # -> (2, H)
    group = (sd > bounds[0]).astype(int) + (sd > bounds[1]).astype(int)  # 0 low, 1 mid, 2 high
    coverage = {
        label: [_share(inside[group[:, h] == g, h]) for h in range(actual.shape[1])] for g, label in enumerate(TERCILES)
    }
    return {**coverage, "sd_bounds": bounds.T.tolist()}


def coverage_by_year(
    quantiles: np.ndarray, actual: np.ndarray, origin_dates: np.ndarray
) -> dict[str, list[float | None]]:
    """{origin year: outer-band coverage [H]}, years ascending."""
    inside = (actual >= quantiles[..., 0]) & (actual <= quantiles[..., -1])
    years = np.asarray(origin_dates).astype("datetime64[Y]").astype(int) + 1970
    return {str(year): [_share(inside[years == year, h]) for h in range(actual.shape[1])] for year in np.unique(years)}


def calibration(result: Backtest, per_ticker: tuple[str, ...] = ("model",)) -> dict[str, dict[str, Any]]:
    """{forecast with quantiles: {band, curve, coverage_by_tercile, coverage_by_year, tails}} on the
    origins where that forecast has a whole forecast; forecasts named in `per_ticker` also list each
    ticker's tail tests. A forecast with no such origin is left out."""
    report: dict[str, dict[str, Any]] = {}
    for name, all_quantiles in result.quantiles.items():
        rows = np.flatnonzero(np.isfinite(all_quantiles).all(axis=(1, 2)))
        if not len(rows):
            continue
        quantiles, actual = all_quantiles[rows], result.actual[rows]
        report[name] = {
            "band": round(100.0 * (result.levels[-1] - result.levels[0]), 6),
            "curve": {
                "nominal": list(result.levels),
                "empirical": scoring.hit_rates(quantiles, actual).tolist(),  # [H][Q]
            },
            "coverage_by_tercile": coverage_by_tercile(quantiles, result.levels, actual),
            "coverage_by_year": coverage_by_year(quantiles, actual, result.origin_dates[rows]),
            "tails": tail_report(result, name, rows, per_ticker=name in per_ticker),
        }
    return report


def calibration_summary(report: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flat {name_kupiec_pass_q{level}: mean over tested steps, ..., name_coverage_{tercile}: mean over
    steps} for MLflow (steps without a figure left out)."""
    flat: dict[str, float] = {}
    for name, block in report.items():
        for tail in block["tails"]:
            for key in ("kupiec_pass", "christoffersen_pass", "both_pass"):
                flat |= _mean(f"{name}_{key}_q{tail['level']:g}", tail[key])
        for label in TERCILES:
            flat |= _mean(f"{name}_coverage_{label}_vol", block["coverage_by_tercile"][label])
    return flat


def _mean(key: str, values: list[float | None]) -> dict[str, float]:
    known = [v for v in values if v is not None]
    return {key: float(np.mean(known))} if known else {}


def _share(flags: np.ndarray) -> float | None:
    return float(flags.mean()) if flags.size else None


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
