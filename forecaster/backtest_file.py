"""The backtest as a long table, one row per ticker x origin x step, and its file (.parquet or .csv).

Columns: ticker, origin (date of the last observed bar), step, date (target date), actual,
last_close, the model's quantiles ``q0.1, q0.5, ...``, each probabilistic baseline's quantiles
``ewma_q0.1, ...`` and each point baseline by name (``naive``, ``drift``). The same table is the
MLflow run's ``backtest.csv`` and the file of ``forecaster evaluate --backtest-out``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.evaluate import Backtest

SUFFIXES: tuple[str, ...] = (".parquet", ".csv")


def quantile_column(level: float, prefix: str = "") -> str:
    """'q0.1' for the model, 'ewma_q0.1' for a baseline."""
    return f"{prefix}q{level:g}"


def backtest_table(result: Backtest) -> pd.DataFrame:
    """Long table of every forecast in the backtest (see the module docstring)."""
    n, h = result.actual.shape
    columns: dict[str, np.ndarray] = {
        "ticker": np.repeat(np.asarray(result.tickers)[result.series_id], h),
        "origin": np.repeat(result.origin_dates, h),
        "step": np.tile(np.arange(1, h + 1), n),
    }
    if result.target_dates is not None:
        columns["date"] = result.target_dates.ravel()
    columns["actual"] = result.actual.ravel()
    columns["last_close"] = np.repeat(result.last_close, h)
    for name, quantiles in result.quantiles.items():
        prefix = "" if name == "model" else f"{name}_"
        for i, level in enumerate(result.levels):
            columns[quantile_column(level, prefix)] = quantiles[..., i].ravel()
    for name, point in result.forecasts.items():
        if name not in result.quantiles:  # a quantile forecast's point is its median, already a column
            columns[name] = point.ravel()
    return pd.DataFrame(columns)


def check_backtest_path(path: str | Path) -> Path:
    """The path if its suffix is a supported format, else ValueError naming the suffixes."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"backtest file: expected a {' or '.join(SUFFIXES)} file, got '{path.name}'")
    return path


def write_backtest(result: Backtest, path: str | Path) -> Path:
    """Write the long table atomically: a temp file in the same folder, then os.replace, so a
    reader never sees half a file and a failed write leaves any previous file whole."""
    path = check_backtest_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = backtest_table(result)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
