"""What a training run shows in MLflow as metrics, under which names, and what its registered
version carries.

MLflow's run page draws one chart per metric, grouped by the key up to its last ``/`` and the
groups sorted by name (keys without ``/`` come last, as "Model metrics"). So the names decide what
a person sees first:

    loss/train, loss/val                  the per-epoch curves (step = epoch)
    test/model/<HEADLINE_MODEL>           the model on the test split, mean over steps 1..H
    test/vs_naive/mae_ratio, steps_better, steps_worse
    test/vs_ewma/spl_ratio, steps_better, steps_worse
                                          the model against the random walk and the EWMA-volatility
                                          random walk: a ratio < 1 is better; the steps (of H) where
                                          Diebold-Mariano finds it better / worse at 5%
    ---- the headline above (at most MAX_HEADLINE_CHARTS charts), the details below ----
    test_all/<forecast>/<metric>          every forecast's every metric, mean over steps
    test_dm/<comparison>/steps_better, steps_worse
    train/best_epoch, best_val_loss, epochs_run, lr, windows_per_s; train/member<k>/<curve>

Figures per forecast step are not metrics: MLflow's step axis is the training step, so they would
read as training curves. They are in the run's artifacts metrics/test_by_step.csv (a table) and
metrics/test_metrics.json.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from forecaster.model.fit import FitResult, Tracker

Metrics = dict[str, dict[str, list[float]]]  # {forecast: {metric: [value per step]}}
Significance = dict[str, dict[str, Any]]  # evaluation.backtest.significance's report

HEADLINE_GROUPS = ("loss", "test/model", "test/vs_naive", "test/vs_ewma")
HEADLINE_MODEL = ("mase", "mae", "spl", "coverage", "dir_acc")  # coverage: of the outer band
MAX_HEADLINE_CHARTS = 20  # what a person sees on the run page before the details
MAX_VERSION_TAGS = 8  # the registry list stays readable: digest, headline figures, the gate's verdict

# fit's per-epoch keys -> their grouped names; other keys of fit go under train/
CURVES = {"train_loss": "loss/train", "val_loss": "loss/val", "lr": "train/lr", "windows_per_s": "train/windows_per_s"}
MEMBER = re.compile(r"member(\d+)_(.+)")  # an ensemble member's curve (forecaster.run.steps)
# the version's headline tags: run metric -> tag (short: the registry list cuts tags at ~16 characters)
VERSION_HEADLINE = {"test/vs_naive/mae_ratio": "mae_vs_naive", "test/vs_ewma/spl_ratio": "spl_vs_ewma"}


def curve_name(key: str) -> str:
    """fit's per-epoch key -> its name on the run (an ensemble member's under train/member<k>/)."""
    if key in CURVES:
        return CURVES[key]
    member = MEMBER.fullmatch(key)
    if member is not None:
        return f"train/member{member.group(1)}/{member.group(2)}"
    return f"train/{key}"


class GroupedCurves:
    """The Tracker training reports to, passing its per-epoch curves on under their grouped names."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.tracker.log_metrics({curve_name(k): v for k, v in metrics.items()}, step=step)


def fit_summary(fit: FitResult) -> dict[str, float]:
    return {
        "train/best_epoch": fit.best_epoch,
        "train/best_val_loss": fit.best_val_loss,
        "train/epochs_run": len(fit.history),
    }


def means(metrics: Metrics) -> dict[str, dict[str, float]]:
    """Each forecast's each metric, mean over the steps."""
    return {name: {m: float(np.mean(values)) for m, values in block.items()} for name, block in metrics.items()}


def headline(metrics: Metrics, tests: Significance) -> dict[str, float]:
    """The test figures a person looks at first (see the module's table); a figure whose forecast
    was not scored is left out."""
    mean = means(metrics)
    model, naive, ewma = mean.get("model", {}), mean.get("naive", {}), mean.get("ewma", {})
    figures = {f"test/model/{m}": model[m] for m in HEADLINE_MODEL if m in model}
    figures |= _ratio("test/vs_naive/mae_ratio", model.get("mae"), naive.get("mae"))
    figures |= _steps("test/vs_naive", tests.get("model_vs_naive"))
    figures |= _ratio("test/vs_ewma/spl_ratio", model.get("spl"), ewma.get("spl"))
    figures |= _steps("test/vs_ewma", tests.get("model_vs_ewma"))
    return figures


def details(metrics: Metrics, tests: Significance) -> dict[str, float]:
    """Every forecast's every metric (mean over steps) and every comparison's DM verdict counts."""
    figures = {
        f"test_all/{name}/{metric}": value for name, block in means(metrics).items() for metric, value in block.items()
    }
    for comparison, block in tests.items():
        figures |= _steps(f"test_dm/{comparison}", block)
    return figures


def per_forecast(group: str, flat: dict[str, float], forecasts: Iterable[str]) -> dict[str, float]:
    """A flat {<forecast>_<figure>: value} summary as {group/<forecast>/<figure>: value}; a key
    that starts with no forecast's name stays whole under the group."""
    names = sorted(forecasts, key=len, reverse=True)  # model_uncalibrated before model
    grouped = {}
    for key, value in flat.items():
        name = next((n for n in names if key.startswith(f"{n}_")), None)
        grouped[f"{group}/{key}" if name is None else f"{group}/{name}/{key[len(name) + 1 :]}"] = value
    return grouped


def by_step_table(metrics: Metrics, tests: Significance) -> pd.DataFrame:
    """One row per forecast and metric (and per DM comparison's p-value and statistic): its value at
    each step h1..hH and the mean, the figures MLflow's metrics do not hold per step."""
    rows = [
        _row(name, metric, values, float(np.mean(values)))
        for name, block in metrics.items()
        for metric, values in block.items()
    ]
    for comparison, block in tests.items():
        for field in ("p_value", "dm_stat"):  # per step only: their mean would mean nothing
            values = [math.nan if v is None else v for v in block.get(field, [])]
            rows.append(_row(comparison, f"dm_{field}", values, math.nan))
    return pd.DataFrame(rows)


def version_tags(digest: str, metrics: Metrics) -> dict[str, str]:
    """What the registered version carries of the run: the data digest and the headline ratios
    (the retraining gate adds its verdict); every other figure stays on the run."""
    figures = headline(metrics, {})
    return {
        "data_digest": digest,
        **{tag: f"{figures[key]:.4g}" for key, tag in VERSION_HEADLINE.items() if key in figures},
    }


def _ratio(key: str, ours: float | None, theirs: float | None) -> dict[str, float]:
    if ours is None or theirs is None or not math.isfinite(theirs) or theirs == 0:
        return {}
    return {key: ours / theirs}


def _steps(group: str, block: dict[str, Any] | None) -> dict[str, float]:
    """The steps where the Diebold-Mariano test found the model better / worse (verdicts at 5%)."""
    if not block or "verdict" not in block:
        return {}
    verdicts = list(block["verdict"])
    return {f"{group}/steps_better": verdicts.count("better"), f"{group}/steps_worse": verdicts.count("worse")}


def _row(forecast: str, metric: str, values: list[float], mean: float) -> dict[str, Any]:
    return {"forecast": forecast, "metric": metric, "mean": mean, **{f"h{h}": v for h, v in enumerate(values, start=1)}}
