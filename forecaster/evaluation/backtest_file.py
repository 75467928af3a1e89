"""The backtest as a long table, one row per ticker x origin x step, and its file (.parquet or .csv).

Columns: ticker, origin (date of the last observed bar), step, date (target date), actual,
last_close, the model's quantiles ``q0.1, q0.5, ...``, each probabilistic baseline's quantiles
``ewma_q0.1, ...`` and each point baseline by name (``naive``, ``drift``). The same table is the
MLflow run's ``backtest.csv`` and the file of ``forecaster evaluate --backtest-out``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.config import quantile_column
from forecaster.data.storage import check_table_path, write_table_atomically
from forecaster.evaluation.backtest import Backtest


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


def check_backtest_path(path: str | Path, reads: str | Path | None = None) -> Path:
    """The path if the backtest can be written there (`storage.check_table_path`), else ValueError."""
    return check_table_path(path, "backtest file", reads)


def write_backtest(result: Backtest, path: str | Path) -> Path:
    """Write the long table atomically (forecaster.data.storage): a reader never sees half a file and a
    failed write leaves any previous file whole."""
    return write_table_atomically(backtest_table(result), check_backtest_path(path))
