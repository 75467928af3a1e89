"""The MLflow PythonModel wrapper: long-format bars in, per-ticker quantile forecasts out.

Input: a DataFrame with columns ticker, date, open, high, low, close (at least lookback rows
per ticker, sorted or not). Output: one row per ticker and step with close (median), lower
and upper (outer quantiles). It calls the same Forecaster as the library and the service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from forecaster.artifact import load_bundle
from forecaster.data import PRICE_COLUMNS
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
        frame = frame.sort_values(["ticker", "date"], kind="stable")
        tickers = list(dict.fromkeys(frame["ticker"]))
        T = self.forecaster.lookback
        windows = []
        for ticker in tickers:
            bars = frame.loc[frame["ticker"] == ticker, list(PRICE_COLUMNS)].to_numpy(dtype=np.float32)
            if len(bars) < T:
                raise ValueError(f"ticker {ticker}: {len(bars)} bars, the model needs lookback = {T}")
            windows.append(bars[-T:])
        forecast = self.forecaster.predict(np.stack(windows))
        H = self.forecaster.horizon
        return pd.DataFrame(
            {
                "ticker": np.repeat(tickers, H),
                "step": np.tile(np.arange(1, H + 1), len(tickers)),
                "close": forecast.median.ravel(),
                "lower": forecast.lower.ravel(),
                "upper": forecast.upper.ravel(),
            }
        )
