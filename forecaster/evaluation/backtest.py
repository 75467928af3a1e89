"""The one evaluation: rolling-origin forecasts beside the baselines, scored per step and tested.

Used by ``forecaster evaluate``, by the metrics logged at the end of training, by the
retraining gate and by the benchmarks, so every number in the product means the same.
Forecasts with quantiles (the model, ``ewma``, ``garch``, ``rgarch``, ``har``) are scored at the
model's quantile levels; every forecast gets the point metrics of its median. The model is tested
against ``naive`` (absolute error) and each quantile baseline (mean pinball loss) with
Diebold-Mariano per step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from forecaster.config import CLOSE, MEDIAN, ModelConfig
from forecaster.data.validate import parse_day
from forecaster.data.windows import Panel
from forecaster.errors import DataError
from forecaster.evaluation import baselines, scoring
from forecaster.evaluation.significance import dm_panel

log = logging.getLogger(__name__)

DEFAULT_LEVELS: tuple[float, ...] = ModelConfig().quantiles  # scored without a model
QUANTILE_BASELINES: tuple[str, ...] = ("ewma", "garch", "rgarch", "har")
CHUNK = 8192

# predict(X[N,T,4]) -> (quantiles[N,H,Q] prices, the Q levels they are at)
PredictFn = Callable[[np.ndarray], tuple[np.ndarray, tuple[float, ...]]]
Metrics = dict[str, dict[str, list[float]]]


@dataclass(frozen=True)
class Backtest:
    """Every rolling-origin forecast: one row per origin, one column per step."""

    tickers: tuple[str, ...]
    series_id: np.ndarray  # [N]
    origin_dates: np.ndarray  # [N] date of the last observed bar
    last_close: np.ndarray  # [N]
    actual: np.ndarray  # [N, H]
    forecasts: dict[str, np.ndarray]  # name -> [N, H] point forecasts (model median, baselines); NaN = none
    quantiles: dict[str, np.ndarray]  # name -> [N, H, Q] price quantiles at `levels` (model, ewma, garch)
    levels: tuple[float, ...]
    mase_scale: np.ndarray  # [S] mean |one-step change| of each series' close over the data
    target_dates: np.ndarray | None = None  # [N, H] date of each forecast step

    @property
    def horizon(self) -> int:
        return self.actual.shape[1]

    @property
    def lower(self) -> np.ndarray | None:
        """The model's outer (first) quantile [N, H], if there is a model."""
        return self.quantiles["model"][..., 0] if "model" in self.quantiles else None

    @property
    def upper(self) -> np.ndarray | None:
        return self.quantiles["model"][..., -1] if "model" in self.quantiles else None


def rolling_origins(
    panel: Panel, lookback: int, horizon: int, from_date: str | pd.Timestamp | None = None
) -> np.ndarray:
    """Every row with T bars of history and H bars of future (stride 1), optionally from a date on.

    A `from_date` after the last such row is a DataError naming that row's date."""
    origins = panel.origins(lookback, horizon, need_future=True)
    if from_date is None:
        return origins
    cut = parse_day(from_date, "from")
    later = origins[panel.dates[origins] >= cut.to_datetime64()]
    if len(origins) and not len(later):
        last = pd.Timestamp(panel.dates[origins].max())
        raise DataError(
            f"evaluate: no forecast origins on or after {cut:%Y-%m-%d} (from): the last date with lookback "
            f"{lookback} bars of history and horizon {horizon} bars of future is {last:%Y-%m-%d}"
        )
    return later


def mase_scales(panel: Panel) -> np.ndarray:
    """Per series: mean absolute one-step change of the close over the whole data given; NaN for a
    series whose close never changes (no scale: left out of every scaled metric and test, logged)."""
    close = panel.values[:, CLOSE].astype(np.float64)
    scales = np.empty(len(panel.tickers))
    for s in range(len(panel.tickers)):
        diffs = np.abs(np.diff(close[panel.starts[s] : panel.starts[s + 1]]))
        scales[s] = diffs.mean() if diffs.size else np.nan
    flat = scales == 0.0
    if flat.any():
        names = [str(t) for t in np.asarray(panel.tickers)[flat]]
        log.warning(
            "evaluate: %d ticker(s) whose close never changes, left out of the scaled metrics (mase, spl, "
            "widths, msis) and the Diebold-Mariano tests: %s",
            len(names),
            ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else ""),
        )
        scales[flat] = np.nan
    return scales


def backtest(predict: PredictFn | None, panel: Panel, lookback: int, horizon: int, origins: np.ndarray) -> Backtest:
    """Forecast from the true history at every origin with the model (if any) and the baselines.

    The probabilistic baselines use the model's quantile levels (DEFAULT_LEVELS without a model).
    """
    if len(origins) == 0:
        raise DataError(
            f"evaluate: no forecast origins: every ticker needs lookback + horizon = {lookback + horizon} rows"
        )
    actual = panel.future_closes(origins, horizon)  # no X needed here: the model gathers in chunks
    quantiles: dict[str, np.ndarray] = {}
    levels = DEFAULT_LEVELS
    if predict is not None:
        quantiles["model"], levels = model_quantiles(predict, panel, origins, lookback, horizon)
    quantiles["ewma"] = baselines.ewma_quantiles(panel, origins, horizon, levels)
    for name in ("garch", "rgarch"):
        fits = baselines.garch_fits(panel, origins, name)
        quantiles[name] = baselines.garch_quantiles(panel, origins, horizon, levels, fits, name)
    quantiles["har"] = baselines.har_quantiles(panel, origins, horizon, levels)
    last_close = panel.values[origins, CLOSE].astype(np.float64)
    forecasts = {
        **({"model": quantiles["model"][..., levels.index(MEDIAN)]} if "model" in quantiles else {}),
        **baselines.point_forecasts(panel, origins, horizon),
        # each quantile baseline's median where it has a whole forecast (the last close for the
        # zero-drift Gaussian ones; har's median standardised return may move it)
        **{
            name: np.where(np.isfinite(quantiles[name]).all(axis=2), quantiles[name][..., levels.index(MEDIAN)], np.nan)
            for name in QUANTILE_BASELINES
        },
    }
    return Backtest(
        tickers=panel.tickers,
        series_id=panel.series_id[origins],
        origin_dates=panel.dates[origins],
        last_close=last_close,
        actual=actual.astype(np.float64),
        forecasts=forecasts,
        quantiles=quantiles,
        levels=levels,
        mase_scale=mase_scales(panel),
        target_dates=panel.dates[origins[:, None] + np.arange(1, horizon + 1)],
    )


def model_quantiles(
    predict: PredictFn, panel: Panel, origins: np.ndarray, lookback: int, horizon: int
) -> tuple[np.ndarray, tuple[float, ...]]:
    """A model's price quantiles [N,H,Q] (float64) at every origin, gathered CHUNK windows at a time,
    and the levels they are at."""
    parts = [predict(panel.gather(origins[i : i + CHUNK], lookback, horizon).X) for i in range(0, len(origins), CHUNK)]
    return np.concatenate([q for q, _ in parts]).astype(np.float64), tuple(parts[0][1])


def model_only(result: Backtest, quantiles: np.ndarray, levels: tuple[float, ...]) -> Backtest:
    """Another model's forecasts on the same origins as `result`, without its baselines: what to
    score a second model on the same rows without fitting the baselines again."""
    return replace(
        result,
        forecasts={"model": quantiles[..., levels.index(MEDIAN)]},
        quantiles={"model": quantiles},
        levels=levels,
    )


def score(result: Backtest) -> Metrics:
    """{forecast name: {metric: [value for step 1..H]}}: point metrics of every forecast, and the
    quantile metrics (scoring.quantile_metrics) of those with quantiles.

    A forecast is scored on the origins where it has a value; one with none (e.g. garch when no
    ticker has enough history) is left out, with a log line.
    """
    metrics: Metrics = {}
    for name, pred in result.forecasts.items():
        rows = np.isfinite(pred).all(axis=1)
        if not rows.any():
            log.info("evaluate: %s has no forecast at any origin; not scored", name)
            continue
        keep = slice(None) if rows.all() else rows
        sid, actual = result.series_id[keep], result.actual[keep]
        block = scoring.point_metrics(pred[keep], actual, result.last_close[keep], sid, result.mase_scale)
        if name in result.quantiles:
            q = result.quantiles[name][keep]
            block |= scoring.quantile_metrics(
                q, result.levels, actual, sid, result.mase_scale, last_close=result.last_close[keep]
            )
        metrics[name] = {k: [float(v) for v in values] for k, values in block.items()}
    return metrics


def significance(result: Backtest) -> dict[str, dict[str, Any]]:
    """Diebold-Mariano per step: model vs naive on absolute error, model vs each quantile baseline
    (ewma, garch, rgarch, har) on the mean pinball loss over the levels, on the origins where both
    have a forecast; each series' losses scaled by its MASE scale (see forecaster.evaluation.significance).

    {"model_vs_naive": {"metric", "dm_stat": [H], "p_value": [H], "verdict": [H]}, "model_vs_ewma": ...};
    empty without a model. Non-finite numbers (an untestable or degenerate step) are null.
    """
    if "model" not in result.forecasts:
        return {}
    actual = result.actual

    def mean_pinball(name: str) -> np.ndarray:
        return scoring.pinball(actual, result.quantiles[name], result.levels).mean(axis=2)

    def abs_error(name: str) -> np.ndarray:
        return np.abs(result.forecasts[name] - actual)

    comparisons = {
        "model_vs_naive": ("abs_error", abs_error("model"), abs_error("naive")),
        **{
            f"model_vs_{name}": ("mean_pinball", mean_pinball("model"), mean_pinball(name))
            for name in QUANTILE_BASELINES
            if name in result.quantiles
        },
    }
    report: dict[str, dict[str, Any]] = {}
    for key, (metric, ours, theirs) in comparisons.items():
        tests = dm_panel(ours, theirs, result.series_id, result.origin_dates, result.mase_scale)
        report[key] = {
            "metric": metric,
            "dm_stat": [_finite(t.stat) for t in tests],
            "p_value": [_finite(t.p_value) for t in tests],
            "verdict": [t.verdict for t in tests],
            "n_dates": [t.n for t in tests],
        }
    return report


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def summary(metrics: Metrics) -> dict[str, float]:
    """Flat {name_metric: mean over steps} for logging and gating."""
    return {
        f"{name}_{metric}": float(np.mean(values))
        for name, block in metrics.items()
        for metric, values in block.items()
    }


def significance_summary(report: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Flat {comparison_p_value_hN / _dm_stat_hN: value} for MLflow (null steps left out)."""
    return {
        f"{key}_{field}_h{h}": value
        for key, block in report.items()
        for field in ("p_value", "dm_stat")
        for h, value in enumerate(block[field], start=1)
        if value is not None
    }
