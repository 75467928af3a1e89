"""The one evaluation: rolling-origin forecasts beside naive and drift, scored per step.

Used by ``forecaster evaluate``, by the metrics logged at the end of training, by the
retraining gate and by the benchmarks, so every number in the product means the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.errors import DataError
from forecaster.windows import CLOSE, Panel

METRICS: tuple[str, ...] = ("mae", "rmse", "mape", "mase", "dir_acc")
BASELINES: tuple[str, ...] = ("naive", "drift")
CHUNK = 8192

# predict(X[N,T,4]) -> (quantiles[N,H,Q] prices, index of the median in Q)
PredictFn = Callable[[np.ndarray], tuple[np.ndarray, int]]


@dataclass(frozen=True)
class Backtest:
    """Every rolling-origin forecast: one row per origin, one column per step."""

    tickers: tuple[str, ...]
    series_id: np.ndarray  # [N]
    origin_dates: np.ndarray  # [N] date of the last observed bar
    last_close: np.ndarray  # [N]
    actual: np.ndarray  # [N, H]
    forecasts: dict[str, np.ndarray]  # name -> [N, H] point forecasts (model, naive, drift)
    lower: np.ndarray | None  # [N, H] model's outer quantiles
    upper: np.ndarray | None
    mase_scale: np.ndarray  # [S] mean |one-step change| of each series' close over the data
    target_dates: np.ndarray | None = None  # [N, H] date of each forecast step

    @property
    def horizon(self) -> int:
        return self.actual.shape[1]

    def table(self) -> pd.DataFrame:
        """Long table: ticker, origin, step, actual and each forecast (the MLflow artifact)."""
        n, h = self.actual.shape
        frame = pd.DataFrame(
            {
                "ticker": np.repeat(np.asarray(self.tickers)[self.series_id], h),
                "origin_date": np.repeat(self.origin_dates, h),
                "step": np.tile(np.arange(1, h + 1), n),
                **({"target_date": self.target_dates.ravel()} if self.target_dates is not None else {}),
                "last_close": np.repeat(self.last_close, h),
                "actual": self.actual.ravel(),
            }
        )
        for name, values in self.forecasts.items():
            frame[name] = values.ravel()
        if self.lower is not None and self.upper is not None:
            frame["model_lower"] = self.lower.ravel()
            frame["model_upper"] = self.upper.ravel()
        return frame


def rolling_origins(
    panel: Panel, lookback: int, horizon: int, from_date: str | pd.Timestamp | None = None
) -> np.ndarray:
    """Every row with T bars of history and H bars of future (stride 1), optionally from a date on."""
    origins = panel.origins(lookback, horizon, need_future=True)
    if from_date is not None:
        origins = origins[panel.dates[origins] >= pd.Timestamp(from_date).to_datetime64()]
    return origins


def baseline_forecasts(panel: Panel, origins: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """naive: the last close for every step; drift: the last close plus h times the mean
    one-day change of the series from its first bar in the data up to the origin."""
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


def mase_scales(panel: Panel) -> np.ndarray:
    """Per series: mean absolute one-step change of the close over the whole data given."""
    close = panel.values[:, CLOSE].astype(np.float64)
    scales = np.empty(len(panel.tickers))
    for s in range(len(panel.tickers)):
        diffs = np.abs(np.diff(close[panel.starts[s] : panel.starts[s + 1]]))
        scales[s] = diffs.mean() if diffs.size else np.nan
    return scales


def backtest(predict: PredictFn | None, panel: Panel, lookback: int, horizon: int, origins: np.ndarray) -> Backtest:
    """Forecast from the true history at every origin with the model (if any) and the baselines."""
    if len(origins) == 0:
        raise DataError(
            f"evaluate: no forecast origins: every ticker needs lookback + horizon = {lookback + horizon} rows"
        )
    actual = panel.future_closes(origins, horizon)  # no X needed here: the model gathers in chunks
    forecasts = baseline_forecasts(panel, origins, horizon)
    lower = upper = None
    if predict is not None:
        parts = [
            predict(panel.gather(origins[i : i + CHUNK], lookback, horizon).X) for i in range(0, len(origins), CHUNK)
        ]
        quantiles = np.concatenate([q for q, _ in parts])  # -> (N, H, Q)
        median_index = parts[0][1]
        forecasts = {"model": quantiles[..., median_index], **forecasts}
        lower, upper = quantiles[..., 0], quantiles[..., -1]
    return Backtest(
        tickers=panel.tickers,
        series_id=panel.series_id[origins],
        origin_dates=panel.dates[origins],
        last_close=panel.values[origins, CLOSE].astype(np.float64),
        actual=actual.astype(np.float64),
        forecasts=forecasts,
        lower=lower,
        upper=upper,
        mase_scale=mase_scales(panel),
        target_dates=panel.dates[origins[:, None] + np.arange(1, horizon + 1)],
    )


def score(result: Backtest) -> dict[str, dict[str, list[float]]]:
    """{forecast name: {metric: [value for step 1..H]}}; the model also gets interval coverage."""
    return {name: score_forecast(result, pred, name == "model") for name, pred in result.forecasts.items()}


def score_forecast(result: Backtest, pred: np.ndarray, with_coverage: bool) -> dict[str, list[float]]:
    actual, last = result.actual, result.last_close[:, None]
    error = pred - actual  # -> (N, H)
    metrics = {
        "mae": np.abs(error).mean(axis=0),
        "rmse": np.sqrt((error**2).mean(axis=0)),
        "mape": (np.abs(error) / np.abs(actual)).mean(axis=0) * 100.0,
        "mase": _mase(result, np.abs(error)),
        "dir_acc": (np.sign(pred - last) == np.sign(actual - last)).mean(axis=0),
    }
    if with_coverage and result.lower is not None and result.upper is not None:
        metrics["coverage"] = ((actual >= result.lower) & (actual <= result.upper)).mean(axis=0)
    return {k: [float(v) for v in values] for k, values in metrics.items()}


def _mase(result: Backtest, abs_error: np.ndarray) -> np.ndarray:
    """MAE per series and step, divided by that series' scale, averaged over series."""
    series = np.unique(result.series_id)
    per_series = np.stack([abs_error[result.series_id == s].mean(axis=0) / result.mase_scale[s] for s in series])
    return per_series.mean(axis=0)


def summary(metrics: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """Flat {name_metric: mean over steps} for logging and gating."""
    return {
        f"{name}_{metric}": float(np.mean(values))
        for name, block in metrics.items()
        for metric, values in block.items()
    }
