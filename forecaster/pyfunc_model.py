"""The MLflow PythonModel wrapper: long-format bars in, per-ticker quantile forecasts out.

Input: a DataFrame with columns ticker, date, open, high, low, close (at least lookback rows
per ticker, sorted or not; without a ticker column, one series). Output: one row per ticker and
step with close (the median), lower and upper (the outer quantiles) and a column per quantile
level (``q0.1``, ``q0.5``, ``q0.9``). Each ticker's window comes from the same
`Forecaster.window` as the service's, so both give the same numbers for the same bars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from forecaster.artifact import load_bundle
from forecaster.config import quantile_column
from forecaster.predict import Forecaster


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
        frame = pd.DataFrame(model_input).copy()
        frame.columns = [str(c).lower() for c in frame.columns]
        if "ticker" not in frame.columns:
            frame["ticker"] = "series"
        order = ["ticker", "date"] if "date" in frame.columns else ["ticker"]
        frame = frame.sort_values(order, kind="stable")
        tickers, windows = [], []
        for ticker, bars in frame.groupby("ticker", sort=False):
            tickers.append(ticker)
            windows.append(self.forecaster.window(bars, field=f"ticker {ticker}").values)
        forecast = self.forecaster.predict(np.stack(windows))
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
