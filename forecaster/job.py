"""One training job, the same for the CLI and the retraining pipeline:
frame -> date split -> windows -> fit -> rolling-origin test backtest -> bundle."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecaster import evaluate
from forecaster.artifact import load_bundle, save_bundle
from forecaster.config import DataConfig, ModelConfig, TrainConfig, to_dict
from forecaster.data import DateSplit, split_by_date, validate_ohlc
from forecaster.errors import DataError
from forecaster.predict import Forecaster
from forecaster.scaling import fit_transform
from forecaster.train import FitHooks, FitResult, Tracker, WindowSet, fit
from forecaster.windows import Panel

log = logging.getLogger(__name__)
SCALE_FIT_WINDOWS = 20_000


@dataclass(frozen=True)
class SplitWindows:
    panel: Panel
    split: DateSplit
    train: WindowSet
    val: WindowSet
    test_origins: np.ndarray


def split_windows(frame: pd.DataFrame, data_config: DataConfig, stride: int = 1) -> SplitWindows:
    """Window every ticker and assign each window to the split holding all of its targets.

    A window whose targets straddle a cut is dropped, so no validation or test target is ever
    a training target; the transform's scale is fitted on training windows only.
    """
    T, H = data_config.lookback, data_config.horizon
    panel = Panel.from_frame(frame)
    split = split_by_date(frame, data_config.val_fraction, data_config.test_fraction)
    origins = panel.origins(T, H, need_future=True)
    first = split.label(panel.dates[origins + 1])
    last = split.label(panel.dates[origins + H])
    train_o = origins[(last == 0)]
    val_o = origins[(first == 1) & (last == 1)]
    test_o = origins[first == 2]
    if len(train_o) == 0:
        raise DataError(
            f"data: no training windows before {split.val_start:%Y-%m-%d}; need more history than "
            f"lookback + horizon = {T + H} rows per ticker in the training period"
        )
    sample = train_o[:: max(1, len(train_o) // SCALE_FIT_WINDOWS)]
    transform = fit_transform(panel.gather(sample, T, H).X)
    train_o = train_o[::stride] if stride > 1 else train_o
    return SplitWindows(
        panel=panel,
        split=split,
        train=WindowSet(panel, train_o, T, H, transform),
        val=WindowSet(panel, val_o, T, H, transform),
        test_origins=test_o,
    )


@dataclass
class TrainOutcome:
    forecaster: Forecaster
    fit: FitResult
    windows: SplitWindows
    backtest: evaluate.Backtest | None
    metrics: dict[str, dict[str, list[float]]]
    bundle_dir: Path


def run_training(
    frame: pd.DataFrame,
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    bundle_dir: Path,
    tracker: Tracker | None = None,
    hooks: FitHooks | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainOutcome:
    """Validate, split, fit, save the bundle and backtest on the test split."""
    frame = validate_ohlc(frame, bad_rows=data_config.bad_rows, min_rows=data_config.lookback + data_config.horizon)
    windows = split_windows(frame, data_config, train_config.stride)
    log.info(
        "windows: train %d, validation %d, test %d", len(windows.train), len(windows.val), len(windows.test_origins)
    )
    result = fit(model_config, train_config, windows.train, windows.val, tracker=tracker, hooks=hooks)
    full_meta = {
        "train_config": to_dict(train_config),
        "val_start": f"{windows.split.val_start:%Y-%m-%d}",
        "test_start": f"{windows.split.test_start:%Y-%m-%d}",
        "tickers": list(windows.panel.tickers),
        "best_epoch": result.best_epoch,
        "trained_on": result.device,
        **(meta or {}),
    }
    save_bundle(bundle_dir, result.model, model_config, data_config, windows.train.transform, full_meta)
    forecaster = Forecaster(load_bundle(bundle_dir), device=result.device)
    backtest, metrics = None, {}
    if len(windows.test_origins):
        backtest = evaluate.backtest(
            predict_fn(forecaster), windows.panel, data_config.lookback, data_config.horizon, windows.test_origins
        )
        metrics = evaluate.score(backtest)
    else:
        log.warning("no test windows: test_fraction is 0 or the data is too short; no test metrics")
    return TrainOutcome(forecaster, result, windows, backtest, metrics, bundle_dir)


def predict_fn(forecaster: Forecaster) -> evaluate.PredictFn:
    """Adapt a Forecaster to the evaluation's predict signature: price quantiles and their levels."""

    def predict(X: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        forecast = forecaster.predict(X)
        return forecast.quantiles, forecast.levels

    return predict


def evaluate_frame(
    forecaster: Forecaster | None, frame: pd.DataFrame, lookback: int, horizon: int, from_date: str | None = None
) -> evaluate.Backtest:
    """The whole frame as test data: every origin with T bars of history and H of future."""
    panel = Panel.from_frame(frame)
    origins = evaluate.rolling_origins(panel, lookback, horizon, from_date)
    return evaluate.backtest(predict_fn(forecaster) if forecaster else None, panel, lookback, horizon, origins)
