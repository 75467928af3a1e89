"""Figures of the notebook API's tables (`forecaster.plot`): a forecast table as a fan chart per
ticker (after its recent history, when given), a backtest table as actual vs median and band over
time. The run's MLflow figures are forecaster.evaluation.plots; these read only the DataFrames the
API returns (`Forecaster.forecast`, `forecaster.backtest`), so any table of those columns plots.

Figures are built with `matplotlib.figure.Figure`, never pyplot: no backend is chosen, no figure is
left open in pyplot's registry, and a notebook displays the returned Figure as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from forecaster.config import MEDIAN, quantile_column

FORECAST_COLUMNS = ("ticker", "as_of", "step", "date")  # `Forecaster.forecast`'s table
BACKTEST_COLUMNS = ("ticker", "origin", "step", "date", "actual")  # `backtest_file.backtest_table`
MAX_TICKERS = 6  # panels drawn without `tickers`; the title says how many of how many
HISTORY_BARS = 60  # bars of history drawn before a forecast


def quantile_levels(table: pd.DataFrame) -> tuple[float, ...]:
    """The model's quantile levels among the table's columns (``q0.1``, ...; a baseline's ``ewma_q0.1``
    is not one), increasing; a table without the median is a ValueError."""
    levels = []
    for column in table.columns:
        text = str(column)
        try:
            level = float(text[1:]) if text.startswith("q") else None
        except ValueError:
            level = None
        if level is not None and quantile_column(level) == text:
            levels.append(level)
    if MEDIAN not in levels:
        raise ValueError(f"table: no median column {quantile_column(MEDIAN)!r}; found {list(table.columns)}")
    return tuple(sorted(levels))


def table_kind(table: pd.DataFrame) -> str:
    """'backtest' or 'forecast' by the columns; anything else is a ValueError naming what is expected."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table: expected a DataFrame from forecast() or backtest(), got {type(table).__name__}")
    if all(c in table.columns for c in BACKTEST_COLUMNS):
        return "backtest"
    if all(c in table.columns for c in FORECAST_COLUMNS):
        return "forecast"
    raise ValueError(
        f"table: expected a forecast table ({', '.join(FORECAST_COLUMNS)}, q...) or a backtest table "
        f"({', '.join(BACKTEST_COLUMNS)}, q...); found {list(table.columns)}"
    )


def chosen_tickers(table: pd.DataFrame, tickers: Sequence[str] | None, max_tickers: int) -> list[str]:
    """`tickers` (each must be in the table), else the table's first `max_tickers` in sorted order."""
    present = sorted(table["ticker"].astype(str).unique())
    if tickers is None:
        return present[:max_tickers]
    unknown = sorted(set(tickers) - set(present))
    if unknown:
        raise ValueError(f"tickers: {unknown} not in the table; it holds {present[:20]}")
    return list(tickers)


def _panels(n: int, title: str) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(10, 2.8 * n + 1.0), layout="constrained")
    axes = list(figure.subplots(n, 1, squeeze=False)[:, 0])
    figure.suptitle(title)
    return figure, axes


def _title(kind: str, drawn: list[str], present: int) -> str:
    shown = f"{len(drawn)} of {present} tickers" if len(drawn) < present else f"{present} ticker(s)"
    return f"{kind}: {shown}"


def _finish(ax: Axes, ticker: str, ylabel: str) -> None:
    ax.set_title(ticker, loc="left")
    ax.set_xlabel("date")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)  # outside the data


def forecast_figure(
    table: pd.DataFrame,
    history: pd.DataFrame | None = None,
    tickers: Sequence[str] | None = None,
    max_tickers: int = MAX_TICKERS,
    history_bars: int = HISTORY_BARS,
) -> Figure:
    """Per ticker: its last `history_bars` closes (from `history`, a validated bars frame, when given),
    then the median forecast by date and one shaded band per quantile pair (outermost lightest)."""
    levels = quantile_levels(table)
    drawn = chosen_tickers(table, tickers, max_tickers)
    figure, axes = _panels(len(drawn), _title("forecast", drawn, table["ticker"].nunique()))
    pairs = [(lo, hi) for lo, hi in zip(levels, reversed(levels), strict=True) if lo < hi]
    for ax, ticker in zip(axes, drawn, strict=True):
        rows = table[table["ticker"].astype(str) == ticker].sort_values("step")
        dates = pd.to_datetime(rows["date"])
        if history is not None:
            past = history[history["ticker"].astype(str) == ticker].sort_values("date").tail(history_bars)
            ax.plot(pd.to_datetime(past["date"]), past["close"], color="black", lw=1.2, label="close")
        for i, (lo, hi) in enumerate(pairs):
            alpha = 0.15 + 0.2 * i / max(1, len(pairs) - 1)
            lower, upper = rows[quantile_column(lo)], rows[quantile_column(hi)]
            ax.fill_between(dates, lower, upper, color="tab:blue", alpha=alpha, lw=0, label=f"{lo:g}-{hi:g}")
        ax.plot(dates, rows[quantile_column(MEDIAN)], color="tab:blue", lw=1.8, marker=".", label="median")
        _finish(ax, f"{ticker}, as of {pd.Timestamp(rows['as_of'].iloc[0]):%Y-%m-%d}", "price")
    return figure


def backtest_figure(
    table: pd.DataFrame,
    step: int = 1,
    tickers: Sequence[str] | None = None,
    max_tickers: int = MAX_TICKERS,
) -> Figure:
    """Per ticker, over the target dates: the actual close, the median forecast of it made `step`
    trading days before and the band between the outermost quantiles."""
    levels = quantile_levels(table)
    steps = sorted(int(s) for s in table["step"].unique())
    if step not in steps:
        raise ValueError(f"step: {step} is not in the table; its steps are {steps}")
    at_step = table[table["step"] == step]
    drawn = chosen_tickers(at_step, tickers, max_tickers)
    title = _title(f"backtest, {step} step(s) ahead by target date", drawn, at_step["ticker"].nunique())
    figure, axes = _panels(len(drawn), title)
    lo, hi = levels[0], levels[-1]
    for ax, ticker in zip(axes, drawn, strict=True):
        rows = at_step[at_step["ticker"].astype(str) == ticker].sort_values("date")
        dates = pd.to_datetime(rows["date"])
        if lo < hi:
            covered = float(
                np.mean((rows["actual"] >= rows[quantile_column(lo)]) & (rows["actual"] <= rows[quantile_column(hi)]))
            )
            band = f"{lo:g}-{hi:g} band (covered {covered:.0%})"
            ax.fill_between(
                dates,
                rows[quantile_column(lo)],
                rows[quantile_column(hi)],
                color="tab:blue",
                alpha=0.2,
                lw=0,
                label=band,
            )
        ax.plot(dates, rows["actual"], color="black", lw=1.2, label="actual")
        ax.plot(dates, rows[quantile_column(MEDIAN)], color="tab:blue", lw=1.2, label="median")
        _finish(ax, ticker, "price")
    return figure
