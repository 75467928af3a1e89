"""A training run as MLflow sees it, the same for the CLI and the retraining pipeline:
`forecaster.run.steps.run_training` inside an MLflow run, with its params, curves, metrics beside the
baselines (named and grouped by `forecaster.run.metric_names`), plots, backtest table, dataset,
pyfunc model, registry version and alias."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster import __version__
from forecaster.config import DataConfig, ModelConfig, TrainConfig, to_dict
from forecaster.evaluation import backtest as evaluate
from forecaster.evaluation import calibration_tests, plots
from forecaster.evaluation.backtest_file import backtest_table
from forecaster.evaluation.calibration_plot import calibration_figure
from forecaster.model import distributed
from forecaster.model.fit import FitHooks
from forecaster.registry import tracking
from forecaster.registry.runs import ui_link
from forecaster.run import metric_names
from forecaster.run.steps import TrainOutcome, run_training


@dataclass(frozen=True)
class RunResult:
    run_id: str
    model_uri: str
    version: str | None
    metrics: dict[str, dict[str, list[float]]]
    outcome: TrainOutcome
    dataset_digest: str
    ui_link: str = ""  # the run's page in the MLflow UI, in the Model training view


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
    """Before any training: an alias points into a registered model, so asking for one without the
    other is an error; and both are names the registry takes (`tracking.check_names`)."""
    if alias is not None and not register_as:
        raise ValueError("alias: an alias needs register_as (--register-as NAME), the registered model it points into")
    tracking.check_names(register_as, alias)


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
    validated: bool = False,
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
            tracker=metric_names.GroupedCurves(tracker),
            hooks=hooks,
            meta={"data_digest": digest, "source": source},
            validated=validated,  # the caller's validation stands: no second pass, no repeated warnings
        )
        fit = outcome.fit
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
            # headline first: the run page lists metrics as they were logged
            tracker.log_metrics(metric_names.headline(outcome.metrics, tests))
            tracker.log_metrics(metric_names.details(outcome.metrics, tests))
            calibration = calibration_tests.calibration(outcome.backtest)  # tail tests, conditional coverage
            summary = calibration_tests.calibration_summary(calibration)
            tracker.log_metrics(metric_names.per_forecast("test_calibration", summary, calibration))
            # figures per forecast step: a table and the JSON, never on MLflow's training-step axis
            tracker.log_table(metric_names.by_step_table(outcome.metrics, tests), "metrics/test_by_step.csv")
            tracker.log_dict(
                {
                    "horizon": outcome.backtest.horizon,
                    "levels": list(outcome.backtest.levels),
                    "metrics": outcome.metrics,
                    "significance": tests,
                    "calibration": calibration,
                },
                "metrics/test_metrics.json",
            )
            tracker.log_table(backtest_table(outcome.backtest), "backtest.csv")
            for step in sorted({1, data_config.horizon}):
                figure = plots.forecast_figure(outcome.backtest, step=step)
                tracker.log_figure(figure, f"plots/forecast_vs_actual_h{step}.png")
                plots.close(figure)
                figure = calibration_figure(calibration, step=step)
                tracker.log_figure(figure, f"plots/calibration_h{step}.png")
                plots.close(figure)
        tracker.log_metrics(metric_names.fit_summary(fit))
        example = tracking.example_input(frame, data_config.lookback)
        model_uri, version = tracking.log_model(outcome.bundle_dir, example, registered_name=register_as)
        if register_as and version is not None:
            tracking.set_version_tags(register_as, version, metric_names.version_tags(digest, outcome.metrics))
            if alias == tracking.CHAMPION:  # the champion it replaces stays `previous`: rollback works
                tracking.make_champion(register_as, version)
            elif alias:
                tracking.set_alias(register_as, alias, version)
        description = run_description(source, frame, outcome)
        tracking.describe_run(tracker.run_id, description)
        if register_as and version is not None:
            tracking.describe_version(register_as, version, description)
        link = ui_link(tracker.run.info.experiment_id, tracker.run_id)
        return RunResult(tracker.run_id, model_uri, version, outcome.metrics, outcome, digest, link)


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}
