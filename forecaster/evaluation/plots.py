"""Figures logged with each run: forecast vs actual with the interval band (for a few tickers,
chosen by how well the band covered them and named), and loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from textwrap import fill

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and MLflow, never a screen

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from forecaster.evaluation.backtest import Backtest  # noqa: E402
from forecaster.model.fit import EpochStats  # noqa: E402

RANKS = {1: ("",), 2: ("best", "worst"), 3: ("best", "median", "worst")}  # labels of 1, 2, 3 picks
# drawn bottom to top: the naive line wide and light under the model's thin dark median, so both
# show where they coincide (a model near the random walk draws a blue line on an orange one)
ZORDER = {"band": 1, "naive": 2, "actual": 3, "median": 4}
ACTUAL, MEDIAN, NAIVE = "actual close", "model median", "naive (last close)"  # legend labels


def forecast_figure(
    result: Backtest, step: int = 1, tickers: Sequence[str] | None = None, last_origins: int = 150
) -> Figure:
    """Per ticker, over its last origins: the actual close on each target date, the model's median
    forecast of it made `step` trading days before, its outer-quantile band and the naive forecast.

    Without `tickers`, three are drawn: those whose band covered the share of actuals closest to its
    nominal share (best), farthest from it (worst) and the middle one (median); each panel names its
    ticker and why it is there, the title says how many of how many are drawn."""
    picks = _named(result, tickers) if tickers is not None else _by_coverage(result, step)
    fig, axes = plt.subplots(
        len(picks), 1, figsize=(11, 2.9 * len(picks) + 1.6), squeeze=False, sharex=False, layout="constrained"
    )
    handles: dict[str, Artist] = {}
    for ax, (s, why) in zip(axes[:, 0], picks, strict=True):
        rows = np.flatnonzero(result.series_id == s)[-last_origins:]
        handles |= _draw(ax, result, rows, step)
        ax.set_title(f"{result.tickers[s]}{why}", loc="left", fontsize=10)
        ax.set_xlabel("target date (the day forecast)")
        ax.set_ylabel("close")
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.grid(alpha=0.3)
    order = [ACTUAL, MEDIAN, band_label(result.levels), NAIVE]
    shown = [name for name in order if name in handles]
    fig.legend([handles[n] for n in shown], shown, loc="outside right upper", frameon=False)
    days = "day" if step == 1 else "days"
    fig.suptitle(
        f"Close forecast {step} trading {days} ahead, by target date\n"
        f"{len(picks)} of {len(result.tickers)} tickers{_choice(result, tickers)}",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    fig.supxlabel(_caption(step, last_origins), fontsize=8, color="dimgray")
    return fig


def _draw(ax: Axes, result: Backtest, rows: np.ndarray, step: int) -> dict[str, Artist]:
    """One ticker's lines and band on `ax`, by their legend labels."""
    x = result.target_dates[rows, step - 1] if result.target_dates is not None else result.origin_dates[rows]
    h = step - 1
    naive = ax.plot(x, result.forecasts["naive"][rows, h], color="tab:orange", lw=3.2, alpha=0.5, label=NAIVE)
    actual = ax.plot(x, result.actual[rows, h], color="black", lw=1.0, label=ACTUAL)
    drawn: dict[str, Artist] = {ACTUAL: actual[0], NAIVE: naive[0]}
    naive[0].set_zorder(ZORDER["naive"])
    actual[0].set_zorder(ZORDER["actual"])
    if "model" in result.forecasts:
        median = ax.plot(x, result.forecasts["model"][rows, h], color="tab:blue", lw=1.3, label=MEDIAN)[0]
        median.set_zorder(ZORDER["median"])
        drawn[MEDIAN] = median
    if result.lower is not None and result.upper is not None:
        label = band_label(result.levels)
        band = ax.fill_between(x, result.lower[rows, h], result.upper[rows, h], color="tab:blue", alpha=0.18, lw=0)
        band.set_label(label)
        band.set_zorder(ZORDER["band"])
        drawn[label] = band
    return drawn


def _caption(step: int, last_origins: int) -> str:
    days = "day" if step == 1 else "days"
    return fill(
        f"Each point is one forecast, placed on the date it is for (its target date); it was made {step} "
        f"trading {days} earlier from the bars up to then, so naive is the close of that earlier day. The last "
        f"{last_origins} forecasts of each ticker in the test split.",
        150,
    )


def _choice(result: Backtest, tickers: Sequence[str] | None) -> str:
    if tickers is not None:
        return " (as asked)"
    if result.lower is None:
        return " (the first ones: no model band to choose by)"
    lo, hi = result.levels[0], result.levels[-1]
    return f": best, median and worst by how often the q{lo:g}-q{hi:g} band held the actual"


def _named(result: Backtest, tickers: Sequence[str]) -> list[tuple[int, str]]:
    index = {name: i for i, name in enumerate(result.tickers)}
    unknown = [t for t in tickers if t not in index]
    if unknown or not tickers:
        raise ValueError(
            f"tickers: {', '.join(map(repr, unknown)) or 'none given'} not in the backtest "
            f"(it has {', '.join(result.tickers[:10])}{' ...' if len(result.tickers) > 10 else ''})"
        )
    return [(index[t], "") for t in tickers]


def _by_coverage(result: Backtest, step: int) -> list[tuple[int, str]]:
    """(series id, why it is drawn) for the best, median and worst covered tickers at this step."""
    series = np.unique(result.series_id)
    if result.lower is None or result.upper is None:
        return [(int(s), "") for s in series[:3]]
    nominal = result.levels[-1] - result.levels[0]
    actual = result.actual[:, step - 1]
    inside = (actual >= result.lower[:, step - 1]) & (actual <= result.upper[:, step - 1])
    coverage = {int(s): float(inside[result.series_id == s].mean()) for s in series}
    ranked = sorted(coverage, key=lambda s: (abs(coverage[s] - nominal), result.tickers[s]))
    chosen = ranked if len(ranked) <= 3 else [ranked[0], ranked[(len(ranked) - 1) // 2], ranked[-1]]
    ranks = RANKS[len(chosen)]
    return [
        (s, f": {rank + ' coverage, ' if rank else ''}band held {coverage[s]:.0%} of actuals (nominal {nominal:.0%})")
        for s, rank in zip(chosen, ranks, strict=True)
    ]


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
        text = "no training (train.epochs 0):\nthe EWMA random-walk baseline"  # two lines: it fits the axes
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def close(fig: Figure) -> None:
    plt.close(fig)
