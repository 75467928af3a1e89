"""The MLflow PythonModel wrapper: long-format bars in, per-ticker quantile forecasts out.

Input: a DataFrame with columns ticker, date, open, high, low, close (at least lookback rows
per ticker, sorted or not; without a ticker column, one series). It passes the library's checks
of a bars frame (`data.validate_ohlc`: ISO dates, no repeated (ticker, date), prices that are
numbers obeying the OHLC rules; then sorted by ticker and date): a bad row is a DataError naming
its ticker, date and row, never a forecast from reordered or repeated bars. Output: one row per
ticker and step with close (the median), lower and upper (the outer quantiles) and a column per
quantile level (``q0.1``, ``q0.5``, ``q0.9``). Each ticker's window comes from the same
`Forecaster.window` as the service's, so both give the same numbers for the same bars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from forecaster.config import quantile_column
from forecaster.data.validate import validate_ohlc
from forecaster.model.artifact import load_bundle
from forecaster.model.predictor import Forecaster


class ForecasterPyfunc(PythonModel):
    def __init__(self) -> None:
        self.forecaster: Forecaster | None = None

    @classmethod
    def from_bundle_dir(cls, path: Path) -> ForecasterPyfunc:
        model = cls()
        model.forecaster = Forecaster(load_bundle(path), device="auto")
        return model

    def load_context(self, context: Any) -> None:
        self.forecaster = Forecaster(load_bundle(context.artifacts["bundle"]), device="auto")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        assert self.forecaster is not None, "load_context was not called"
        frame = pd.DataFrame(model_input).reset_index(drop=True)  # errors name rows by position
        if "ticker" not in {str(c).lower() for c in frame.columns}:
            frame = frame.assign(ticker="series")
        frame = validate_ohlc(frame)  # the rules of every bars frame; sorted by ticker, then date
        tickers, windows = [], []
        for ticker, bars in frame.groupby("ticker", sort=False):
            tickers.append(ticker)
            windows.append(self.forecaster.window(bars, field=f"ticker {ticker}").values)
        forecast = self.forecaster.predict_windows(np.stack(windows))
        H = self.forecaster.horizon
        columns = {
            "ticker": np.repeat(tickers, H),
            "step": np.tile(np.arange(1, H + 1), len(tickers)),
            "close": forecast.median.ravel(),
            "lower": forecast.lower.ravel(),
            "upper": forecast.upper.ravel(),
        }
        for q, level in enumerate(forecast.levels):
            columns[quantile_column(level)] = forecast.quantiles[..., q].ravel()
        return pd.DataFrame(columns)
