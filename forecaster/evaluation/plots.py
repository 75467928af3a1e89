"""Figures logged with each run: forecast vs actual with the interval band, and loss curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and MLflow, never a screen

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from forecaster.evaluation.backtest import Backtest  # noqa: E402
from forecaster.model.fit import EpochStats  # noqa: E402


def forecast_figure(result: Backtest, step: int = 1, max_tickers: int = 4, last_origins: int = 150) -> Figure:
    """Per ticker: the actual close on each target date `step` trading days after its origin,
    the model's median for it and its outer-quantile band, over the last origins."""
    series = np.unique(result.series_id)[:max_tickers]
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.6 * len(series)), squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=True):
        rows = np.flatnonzero(result.series_id == s)[-last_origins:]
        x = result.target_dates[rows, step - 1] if result.target_dates is not None else result.origin_dates[rows]
        ax.plot(x, result.actual[rows, step - 1], color="black", lw=1.2, label="actual")
        if "model" in result.forecasts:
            ax.plot(x, result.forecasts["model"][rows, step - 1], color="tab:blue", lw=1.0, label="model median")
        if result.lower is not None and result.upper is not None:
            ax.fill_between(
                x,
                result.lower[rows, step - 1],
                result.upper[rows, step - 1],
                color="tab:blue",
                alpha=0.2,
                label=band_label(result.levels),
            )
        ax.plot(x, result.forecasts["naive"][rows, step - 1], color="tab:orange", lw=0.8, ls="--", label="naive")
        ax.set_title(f"{result.tickers[s]}: close forecast {step} trading day(s) ahead, by target date")
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig


def band_label(levels: tuple[float, ...]) -> str:
    """The legend of the model's outer band: its quantile levels and the share they enclose."""
    lo, hi = levels[0], levels[-1]
    return f"model band q{lo:g}-q{hi:g} ({(hi - lo) * 100:.0f}%)"


def loss_figure(history: list[EpochStats]) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [s.epoch for s in history]
    ax.plot(epochs, [s.train_loss for s in history], marker="o", label="train")
    ax.plot(epochs, [s.val_loss for s in history], marker="o", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("pinball loss")
    if history:
        ax.legend()
    else:  # train.epochs 0: the untrained baseline network
        ax.text(0.5, 0.5, "no training (train.epochs 0): the EWMA random-walk baseline", ha="center", va="center")
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
