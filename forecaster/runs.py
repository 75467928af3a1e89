"""A training run as MLflow sees it: params, curves, metrics beside the baselines, plots,
backtest table, dataset, pyfunc model, registry version and alias. Shared by the CLI and
the retraining pipeline."""

from __future__ import annotations

import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from forecaster import __version__, evaluate, plots, tracking
from forecaster.backtest_file import backtest_table
from forecaster.config import DataConfig, ModelConfig, TrainConfig, to_dict
from forecaster.evaluate import summary
from forecaster.job import TrainOutcome, run_training
from forecaster.train import FitHooks

log = logging.getLogger(__name__)


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
    moves an alias.
    """
    with tracking.start_run(run_name=run_name) as tracker, tempfile.TemporaryDirectory() as tmp:
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
            tracker.log_metrics({f"test_{k}": v for k, v in summary(outcome.metrics).items()})
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
                    **{f"test_{k}": f"{v:.6g}" for k, v in summary(outcome.metrics).items()},
                },
            )
            if alias:
                tracking.set_alias(register_as, alias, version)
        return RunResult(tracker.run_id, model_uri, version, outcome.metrics, outcome, digest)


def prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items()}
