"""A training run, the same for the CLI and the retraining pipeline.

`run_training`: frame -> date split -> windows -> fit (every ensemble member) -> calibration on
validation -> bundle -> rolling-origin test backtest. The same inside an MLflow run is
`forecaster.run.tracked.tracked_training`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from forecaster.config import DataConfig, ModelConfig, TrainConfig, to_dict
from forecaster.data.validate import DateSplit, require_rows, split_by_date, validate_ohlc
from forecaster.data.windows import Panel
from forecaster.errors import DataError
from forecaster.evaluation import backtest as evaluate
from forecaster.model import distributed
from forecaster.model.artifact import load_bundle, save_bundle
from forecaster.model.calibration import Calibration, fit_calibration
from forecaster.model.device import resolve_device, use_cpu_threads
from forecaster.model.feed import WindowSet
from forecaster.model.fit import FitHooks, FitResult, Tracker, fit, predict_scaled
from forecaster.model.networks import Ensemble
from forecaster.model.predictor import Forecaster
from forecaster.model.scaling import WindowTransform

log = logging.getLogger(__name__)


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
    a training target. The transform has no fitted state (every window is scaled by its own
    volatility), so nothing about validation or test leaks into training through it.
    """
    L, H = data_config.lookback, data_config.horizon
    panel = Panel.from_frame(frame)
    split = split_by_date(frame, data_config.val_fraction, data_config.test_fraction)
    origins = panel.origins(L, H, need_future=True)
    first = split.label(panel.dates[origins + 1])
    last = split.label(panel.dates[origins + H])
    train_o = origins[(last == 0)]
    val_o = origins[(first == 1) & (last == 1)]
    test_o = origins[first == 2]
    if len(train_o) == 0:
        raise DataError(
            f"data: no training windows before {split.val_start:%Y-%m-%d}; need more history than "
            f"lookback + horizon = {data_config.min_rows} rows per ticker in the training period"
        )
    transform = WindowTransform.for_data(data_config)
    train_o = train_o[::stride] if stride > 1 else train_o
    return SplitWindows(
        panel=panel,
        split=split,
        train=WindowSet(panel, train_o, L, H, transform),
        val=WindowSet(panel, val_o, L, H, transform),
        test_origins=test_o,
    )


@dataclass
class TrainOutcome:
    forecaster: Forecaster
    fit: FitResult  # the served model (the ensemble when there are several members), first member's curves
    members: list[FitResult]
    calibration: Calibration
    windows: SplitWindows
    backtest: evaluate.Backtest | None
    metrics: dict[str, dict[str, list[float]]]
    bundle_dir: Path


class _MemberTracker:
    """Per-epoch curves of ensemble member k under their own names (member2_val_loss, ...)."""

    def __init__(self, tracker: Tracker, member: int) -> None:
        self.tracker, self.prefix = tracker, f"member{member + 1}_"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracker.log_metrics({self.prefix + k: v for k, v in metrics.items()}, step=step)


def fit_members(
    config: ModelConfig,
    train_config: TrainConfig,
    windows: SplitWindows,
    tracker: Tracker | None,
    hooks: FitHooks | None,
) -> tuple[nn.Module, list[FitResult]]:
    """`config.ensemble` networks from seeds seed, seed+1, ...; one network or their Ensemble."""
    members = []
    for k in range(config.ensemble):
        seeded = train_config.model_copy(update={"seed": train_config.seed + k})
        member_tracker = tracker if tracker is None or k == 0 else _MemberTracker(tracker, k)
        members.append(fit(config, seeded, windows.train, windows.val, tracker=member_tracker, hooks=hooks))
        log.info(
            "member %d/%d: best epoch %d, val loss %.5f",
            k + 1,
            config.ensemble,
            members[-1].best_epoch,
            members[-1].best_val_loss,
        )
    model = members[0].model if len(members) == 1 else Ensemble([m.model for m in members]).eval()
    return model, members


def calibrate(model: nn.Module, config: ModelConfig, val: WindowSet, device: torch.device) -> Calibration:
    """Offsets and shrinkage fitted on the validation windows (identity when there are none)."""
    if len(val) == 0:
        log.warning("no validation windows: the model is served uncalibrated")
        return Calibration.identity(val.horizon, len(config.network_levels))
    z_pred, z_true, sigma = predict_scaled(model, val, device)
    calibration = fit_calibration(z_pred, z_true, sigma, config.network_levels, config.network_median_index)
    log.info("calibration: median shrink per step %s", calibration.shrink.round(2).tolist())
    return calibration


def run_training(
    frame: pd.DataFrame,
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    bundle_dir: Path,
    tracker: Tracker | None = None,
    hooks: FitHooks | None = None,
    meta: dict[str, Any] | None = None,
    validated: bool = False,
) -> TrainOutcome:
    """Validate, split, fit (every ensemble member), calibrate on validation, save the bundle,
    and backtest on the test split. Under torchrun: rank 0's part (see `train_other_rank`).
    validated: the frame came from `data.validate_ohlc` with the data settings' bad_rows and splits
    (a source, the API), so only its tickers' lengths are checked again (see `training_windows`)."""
    distributed.setup_for(train_config).require_main("run_training")
    windows = training_windows(frame, data_config, train_config, validated)
    log.info(
        "windows: train %d, validation %d, test %d", len(windows.train), len(windows.val), len(windows.test_origins)
    )
    model, members = fit_members(model_config, train_config, windows, tracker, hooks)
    distributed.finish()  # under torchrun: every rank's last collective is behind it
    device = torch.device(members[0].device)
    if train_config.epochs == 0:  # the untrained network is the EWMA baseline: served as it is, not recalibrated
        calibration = Calibration.identity(data_config.horizon, len(model_config.network_levels))
    else:
        calibration = calibrate(model, model_config, windows.val, device)
    full_meta = {
        "train_config": to_dict(train_config),
        "val_start": f"{windows.split.val_start:%Y-%m-%d}",
        "test_start": f"{windows.split.test_start:%Y-%m-%d}",
        "tickers": list(windows.panel.tickers),
        "best_epochs": [m.best_epoch for m in members],
        "trained_on": members[0].device,
        **(meta or {}),
    }
    save_bundle(bundle_dir, model, model_config, data_config, windows.train.transform, calibration, full_meta)
    forecaster = Forecaster(load_bundle(bundle_dir), device=device)
    summary_fit = FitResult(
        model=model,
        history=members[0].history,
        best_epoch=members[0].best_epoch,
        best_val_loss=float(np.mean([m.best_val_loss for m in members])),
        stopped_early=members[0].stopped_early,
        device=members[0].device,
    )
    backtest, metrics = None, {}
    if len(windows.test_origins):
        backtest = evaluate.backtest(
            predict_fn(forecaster), windows.panel, data_config.lookback, data_config.horizon, windows.test_origins
        )
        metrics = evaluate.score(backtest)
        metrics["model_uncalibrated"] = uncalibrated_metrics(forecaster, backtest, windows)
    else:
        log.warning("no test windows: test_fraction is 0 or the data is too short; no test metrics")
    return TrainOutcome(forecaster, summary_fit, members, calibration, windows, backtest, metrics, bundle_dir)


def training_windows(
    frame: pd.DataFrame, data_config: DataConfig, train_config: TrainConfig, validated: bool = False
) -> SplitWindows:
    """The validated frame's windows, split by date (what every rank of a distributed run trains on);
    also where a training process takes its CPU thread count (`train.threads`). A frame its caller
    already validated is not validated again (its warnings, a split's say, would repeat): only the
    tickers too short for one window are refused or dropped (`require_rows`)."""
    use_cpu_threads(train_config.threads, resolve_device(train_config.device))
    if validated:
        frame = require_rows(frame, data_config.min_rows, data_config.bad_rows)
    else:
        frame = validate_ohlc(
            frame, bad_rows=data_config.bad_rows, min_rows=data_config.min_rows, splits=data_config.splits
        )
    return split_windows(frame, data_config, train_config.stride)


def train_other_rank(
    frame: pd.DataFrame,
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    validated: bool = False,
) -> None:
    """A rank other than 0 of a run launched by torchrun: the same windows and the same fits, in
    lockstep with rank 0 (gradients, validation and early stopping are shared); nothing logged,
    saved or registered here. Rank 0 runs `tracked_training` (or `run_training`)."""
    windows = training_windows(frame, data_config, train_config, validated)
    fit_members(model_config, train_config, windows, None, None)
    distributed.finish()  # with rank 0, which does the same after its fits


def uncalibrated_metrics(
    forecaster: Forecaster, backtest: evaluate.Backtest, windows: SplitWindows
) -> dict[str, list[float]]:
    """The test metrics of the raw network on the same origins: what calibration changed."""
    raw, levels = evaluate.model_quantiles(
        predict_fn(forecaster, calibrated=False),
        windows.panel,
        windows.test_origins,
        forecaster.lookback,
        forecaster.horizon,
    )
    return evaluate.score(evaluate.model_only(backtest, raw, levels))["model"]


def predict_fn(forecaster: Forecaster, calibrated: bool = True) -> evaluate.PredictFn:
    """Adapt a Forecaster to the evaluation's predict signature: price quantiles and their levels."""

    def predict(X: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        forecast = forecaster.predict_windows(X, calibrated=calibrated)
        return forecast.quantiles, forecast.levels

    return predict


def evaluate_frame(
    forecaster: Forecaster | None,
    frame: pd.DataFrame,
    lookback: int,
    horizon: int,
    from_date: str | pd.Timestamp | None = None,
) -> evaluate.Backtest:
    """The whole frame as test data: every origin with T bars of history and H of future."""
    panel = Panel.from_frame(frame)
    origins = evaluate.rolling_origins(panel, lookback, horizon, from_date)
    return evaluate.backtest(predict_fn(forecaster) if forecaster else None, panel, lookback, horizon, origins)
