"""A training run, the same for the CLI and the retraining pipeline.

`run_training`: frame -> date split -> windows -> fit (every ensemble member) -> calibration on
validation -> bundle -> rolling-origin test backtest. `tracked_training`: the same inside an
MLflow run, as MLflow sees it: params, curves, metrics beside the baselines, plots, backtest
table, dataset, pyfunc model, registry version and alias."""

from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from forecaster import __version__, distributed, evaluate, plots, tracking
from forecaster.artifact import load_bundle, save_bundle
from forecaster.backtest_file import backtest_table
from forecaster.calibration import Calibration, fit_calibration
from forecaster.config import DataConfig, ModelConfig, TrainConfig, to_dict
from forecaster.data import DateSplit, split_by_date, validate_ohlc
from forecaster.device import resolve_device, use_cpu_threads
from forecaster.errors import DataError
from forecaster.feed import WindowSet
from forecaster.models import Ensemble
from forecaster.predict import Forecaster
from forecaster.scaling import WindowTransform
from forecaster.train import FitHooks, FitResult, Tracker, fit, predict_scaled
from forecaster.windows import Panel

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
            f"lookback + horizon = {L + H} rows per ticker in the training period"
        )
    transform = WindowTransform(lookback=L, seq_len=data_config.encoder_steps)
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
) -> TrainOutcome:
    """Validate, split, fit (every ensemble member), calibrate on validation, save the bundle,
    and backtest on the test split. Under torchrun: rank 0's part (see `train_other_rank`)."""
    distributed.setup_for(train_config).require_main("run_training")
    windows = training_windows(frame, data_config, train_config)
    log.info(
        "windows: train %d, validation %d, test %d", len(windows.train), len(windows.val), len(windows.test_origins)
    )
    model, members = fit_members(model_config, train_config, windows, tracker, hooks)
    device = torch.device(members[0].device)
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


def training_windows(frame: pd.DataFrame, data_config: DataConfig, train_config: TrainConfig) -> SplitWindows:
    """The validated frame's windows, split by date (what every rank of a distributed run trains on);
    also where a training process takes its CPU thread count (`train.threads`)."""
    use_cpu_threads(train_config.threads, resolve_device(train_config.device))
    frame = validate_ohlc(frame, bad_rows=data_config.bad_rows, min_rows=data_config.lookback + data_config.horizon)
    return split_windows(frame, data_config, train_config.stride)


def train_other_rank(
    frame: pd.DataFrame, data_config: DataConfig, model_config: ModelConfig, train_config: TrainConfig
) -> None:
    """A rank other than 0 of a run launched by torchrun: the same windows and the same fits, in
    lockstep with rank 0 (gradients, validation and early stopping are shared); nothing logged,
    saved or registered here. Rank 0 runs `tracked_training` (or `run_training`)."""
    fit_members(model_config, train_config, training_windows(frame, data_config, train_config), None, None)


def uncalibrated_metrics(
    forecaster: Forecaster, backtest: evaluate.Backtest, windows: SplitWindows
) -> dict[str, list[float]]:
    """The test metrics of the raw network on the same origins: what calibration changed."""
    L, H, origins = forecaster.lookback, forecaster.horizon, windows.test_origins
    raw = np.concatenate(
        [
            forecaster.predict(
                windows.panel.gather(origins[i : i + evaluate.CHUNK], L, H).X, calibrated=False
            ).quantiles
            for i in range(0, len(origins), evaluate.CHUNK)
        ]
    )
    model = {"model": raw[..., forecaster.median_index]}
    return evaluate.score(
        replace(backtest, quantiles={**backtest.quantiles, "model": raw}, forecasts={**backtest.forecasts, **model})
    )["model"]


def predict_fn(forecaster: Forecaster, calibrated: bool = True) -> evaluate.PredictFn:
    """Adapt a Forecaster to the evaluation's predict signature: price quantiles and their levels."""

    def predict(X: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
        forecast = forecaster.predict(X, calibrated=calibrated)
        return forecast.quantiles, forecast.levels

    return predict


def evaluate_frame(
    forecaster: Forecaster | None, frame: pd.DataFrame, lookback: int, horizon: int, from_date: str | None = None
) -> evaluate.Backtest:
    """The whole frame as test data: every origin with T bars of history and H of future."""
    panel = Panel.from_frame(frame)
    origins = evaluate.rolling_origins(panel, lookback, horizon, from_date)
    return evaluate.backtest(predict_fn(forecaster) if forecaster else None, panel, lookback, horizon, origins)


@dataclass(frozen=True)
class RunResult:
    run_id: str
    model_uri: str
    version: str | None
    metrics: dict[str, dict[str, list[float]]]
    outcome: TrainOutcome
    dataset_digest: str


def code_version() -> str:
    """The git commit of the code, else the package version."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return sha or __version__


def default_run_name(frame: pd.DataFrame, model_config: ModelConfig) -> str:
    """A readable run name: what was trained on which data ('gru n-to-1, 35 tickers to 2015-12-31')."""
    tickers, last = frame["ticker"].nunique(), frame["date"].max()
    return f"{model_config.arch} {model_config.mode}, {tickers} tickers to {last:%Y-%m-%d}"


def run_description(source: str, frame: pd.DataFrame, outcome: TrainOutcome) -> str:
    """The run's (and its registered version's) description: data, model and test figures vs the baselines."""
    lines = [
        f"Trained on {source}: {frame['ticker'].nunique()} tickers, "
        f"{frame['date'].min():%Y-%m-%d}..{frame['date'].max():%Y-%m-%d}; "
        f"validation from {outcome.windows.split.val_start:%Y-%m-%d}, "
        f"test from {outcome.windows.split.test_start:%Y-%m-%d}.",
        f"Calibrated on validation; median shrink per step {outcome.calibration.shrink.round(2).tolist()}.",
    ]
    summary = evaluate.summary(outcome.metrics)
    if "model_mae" in summary and "naive_mae" in summary:
        lines.append(f"Test MAE / naive: {summary['model_mae'] / summary['naive_mae']:.4f}.")
    if "model_spl" in summary and "ewma_spl" in summary:
        lines.append(f"Test SPL / ewma: {summary['model_spl'] / summary['ewma_spl']:.4f}.")
    if "model_coverage" in summary:
        lines.append(f"Test coverage of the outer band: {summary['model_coverage']:.3f}.")
    return "\n\n".join(lines)


def check_registration(register_as: str | None, alias: str | None) -> None:
    """An alias points into a registered model: asking for one without the other is an error."""
    if alias and not register_as:
        raise ValueError("alias: an alias needs register_as (--register-as NAME), the registered model it points into")


def tracked_training(
    frame: pd.DataFrame,
    source: str,
    data_config: DataConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    register_as: str | None = None,
    alias: str | None = None,
    run_name: str | None = None,
    hooks: FitHooks | None = None,
    extra_tags: dict[str, Any] | None = None,
) -> RunResult:
    """Train inside an MLflow run and log everything; register and alias when asked.

    The alias is set only after the model is logged and registered, so a failed run never
    moves an alias. Under torchrun this is rank 0's part: no other rank may start an MLflow run.
    """
    check_registration(register_as, alias)
    distributed.setup_for(train_config).require_main("tracked_training")
    run_name = run_name or default_run_name(frame, model_config)
    # the caller's tags go on the run when it starts: a run killed at any point is still findable by them
    start_tags = {k: str(v) for k, v in (extra_tags or {}).items()}
    with tracking.start_run(run_name=run_name, tags=start_tags) as tracker, tempfile.TemporaryDirectory() as tmp:
        params = {
            **prefixed("data", to_dict(data_config)),
            **prefixed("model", to_dict(model_config)),
            **prefixed("train", to_dict(train_config)),
            "source": source,
        }
        tracker.log_params(params)
        digest = tracker.log_dataset(frame, source=source, name=Path(source).name or "ohlc")
        tracker.set_tags(
            {
                "code_version": code_version(),
                "data_digest": digest,
                "data_start": f"{frame['date'].min():%Y-%m-%d}",
                "data_end": f"{frame['date'].max():%Y-%m-%d}",
                "tickers": ",".join(sorted(frame["ticker"].unique())),
                **(extra_tags or {}),
            }
        )
        outcome = run_training(
            frame,
            data_config,
            model_config,
            train_config,
            Path(tmp) / "bundle",
            tracker=tracker,
            hooks=hooks,
            meta={"data_digest": digest, "source": source},
        )
        fit = outcome.fit
        tracker.log_metrics(
            {"best_epoch": fit.best_epoch, "best_val_loss": fit.best_val_loss, "epochs_run": len(fit.history)}
        )
        tracker.set_tags(
            {
                "val_start": f"{outcome.windows.split.val_start:%Y-%m-%d}",
                "test_start": f"{outcome.windows.split.test_start:%Y-%m-%d}",
            }
        )
        figure = plots.loss_figure(fit.history)
        tracker.log_figure(figure, "plots/loss.png")
        plots.close(figure)
        if outcome.backtest is not None:
            tests = evaluate.significance(outcome.backtest)  # Diebold-Mariano per step vs naive and ewma
            tracker.log_metrics({f"test_{k}": v for k, v in evaluate.summary(outcome.metrics).items()})
            tracker.log_metrics({f"test_{k}": v for k, v in evaluate.significance_summary(tests).items()})
            for h in range(1, outcome.backtest.horizon + 1):  # per-step curves, one batch per step h
                tracker.log_metrics(
                    {
                        f"test_{name}_{metric}_by_step": values[h - 1]
                        for name, block in outcome.metrics.items()
                        for metric, values in block.items()
                    },
                    step=h,
                )
            tracker.log_dict(
                {
                    "horizon": outcome.backtest.horizon,
                    "levels": list(outcome.backtest.levels),
                    "metrics": outcome.metrics,
                    "significance": tests,
                },
                "metrics/test_metrics.json",
            )
            tracker.log_table(backtest_table(outcome.backtest), "backtest.csv")
            for step in sorted({1, data_config.horizon}):
                figure = plots.forecast_figure(outcome.backtest, step=step)
                tracker.log_figure(figure, f"plots/forecast_vs_actual_h{step}.png")
                plots.close(figure)
        example = tracking.example_input(frame, data_config.lookback)
        model_uri, version = tracking.log_model(outcome.bundle_dir, example, registered_name=register_as)
        if register_as and version is not None:
            tracking.set_version_tags(
                register_as,
                version,
                {
                    "data_digest": digest,
                    "code_version": code_version(),
                    **{f"test_{k}": f"{v:.6g}" for k, v in evaluate.summary(outcome.metrics).items()},
                },
            )
            if alias:
                tracking.set_alias(register_as, alias, version)
        description = run_description(source, frame, outcome)
        tracking.describe_run(tracker.run_id, description)
        if register_as and version is not None:
            tracking.describe_version(register_as, version, description)
        return RunResult(tracker.run_id, model_uri, version, outcome.metrics, outcome, digest)


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}
