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
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from forecaster.config import quantile_column
from forecaster.data.validate import validate_ohlc
from forecaster.errors import DataError, one_line
from forecaster.model.artifact import load_bundle
from forecaster.model.batch import session_dates
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
        try:
            return self._forecast(model_input)
        except DataError as exc:  # MLflow's server answers an MlflowException as a 400 with its message
            raise PyfuncInputError(one_line(exc)) from None

    def _forecast(self, model_input: pd.DataFrame) -> pd.DataFrame:
        assert self.forecaster is not None, "load_context was not called"
        frame = pd.DataFrame(model_input).reset_index(drop=True)  # errors name rows by position
        if "ticker" not in {str(c).lower() for c in frame.columns}:
            frame = frame.assign(ticker="series")
        frame = validate_ohlc(frame)  # the rules of every bars frame; sorted by ticker, then date
        tickers, windows, last_dates = [], [], []
        for ticker, bars in frame.groupby("ticker", sort=False):
            window = self.forecaster.window(bars, field=f"ticker {ticker}")
            tickers.append(ticker)
            windows.append(window.values)
            last_dates.append(np.datetime64(window.last_date, "D"))
        forecast = self.forecaster.predict_windows(np.stack(windows))
        H = self.forecaster.horizon
        as_of = np.asarray(last_dates, dtype="datetime64[D]")
        columns = {
            "ticker": np.repeat(tickers, H),
            "as_of": np.repeat(as_of, H).astype(str),
            "step": np.tile(np.arange(1, H + 1), len(tickers)),
            # the step's trading session, as the service and `forecaster predict` date it
            "date": session_dates(as_of, H).astype("datetime64[D]").astype(str).ravel(),
            "close": forecast.median.ravel(),
            "lower": forecast.lower.ravel(),
            "upper": forecast.upper.ravel(),
        }
        for q, level in enumerate(forecast.levels):
            columns[quantile_column(level)] = forecast.quantiles[..., q].ravel()
        return pd.DataFrame(columns)


class PyfuncInputError(DataError, MlflowException):
    """A bad input to the pyfunc: a DataError for the library's callers, and an MlflowException with
    INVALID_PARAMETER_VALUE for `mlflow models serve`, which then answers 400 with this message (the
    cause) instead of 'unexpected error' and a server stack trace."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)
