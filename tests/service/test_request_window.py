"""Forecaster.window: the one place a history (request, ticker source, pyfunc) becomes the model's
input window, and the one place "enough bars?" and "prices the model can take?" are answered."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import DataError
from forecaster.model.predictor import MAX_PRICE, MIN_PRICE, Forecaster
from forecaster.registry import tracking


@pytest.fixture(scope="module")
def forecaster(registry) -> Forecaster:
    loaded, _ = tracking.load_forecaster(f"models:/{registry.model}@champion", device="cpu")
    return loaded


def ohlc(days: int, end: str = "2023-12-22") -> pd.DataFrame:
    dates = pd.bdate_range(end=end, periods=days)
    close = 50.0 + np.arange(days, dtype=float)
    return pd.DataFrame({"date": dates, "open": close, "high": close + 1, "low": close - 1, "close": close})


def test_window_is_the_last_lookback_bars_as_float32_and_the_last_date(forecaster):
    frame = ohlc(35)
    T = forecaster.lookback
    window = forecaster.window(frame)
    assert window.values.dtype == np.float32 and window.values.shape == (T, 4)
    np.testing.assert_array_equal(window.values, frame[["open", "high", "low", "close"]].to_numpy()[-T:])
    assert window.last_date == dt.date(2023, 12, 22)
    # the same bars as an array with dates beside them (the service's request path)
    as_array = forecaster.window(frame[["open", "high", "low", "close"]].to_numpy(), list(frame["date"].dt.date))
    np.testing.assert_array_equal(as_array.values, window.values)
    assert as_array.last_date == window.last_date
    # without dates there is no last date (the library's predict_history)
    assert forecaster.window(frame[["open", "high", "low", "close"]].to_numpy()).last_date is None


def test_window_too_short_is_a_data_error_naming_the_field(forecaster):
    with pytest.raises(DataError) as short:
        forecaster.window(ohlc(12), field="series[3].history")
    assert str(short.value) == f"series[3].history: 12 bars, the model needs at least lookback = {forecaster.lookback}"


@pytest.mark.parametrize("bad", [1e39, 1e-50, float("nan"), float("inf"), 0.0, -1.0, MAX_PRICE * 2, MIN_PRICE / 2])
def test_window_refuses_prices_the_model_cannot_take_naming_the_bar(forecaster, bad):
    frame = ohlc(30)
    frame.loc[25, "high"] = bad  # row 25 of 30: inside the last T = 20
    with pytest.raises(DataError, match=r"^history\[25\]\.high: .* is not a price the model accepts"):
        forecaster.window(frame)


def test_window_ignores_bars_older_than_the_lookback(forecaster):
    frame = ohlc(30)
    frame.loc[0, "high"] = 1e39  # never reaches the model
    assert forecaster.window(frame).values.shape == (forecaster.lookback, 4)


def test_window_names_a_missing_column(forecaster):
    with pytest.raises(DataError, match=r"^ticker X: missing column\(s\) \['low'\]"):
        forecaster.window(ohlc(30).drop(columns="low"), field="ticker X")


def test_predict_history_is_predict_of_the_window(forecaster):
    frame = ohlc(30)
    window = forecaster.window(frame)
    np.testing.assert_array_equal(
        forecaster.predict_history(frame[["open", "high", "low", "close"]].to_numpy()).quantiles,
        forecaster.predict_windows(window.values[None]).quantiles,
    )
