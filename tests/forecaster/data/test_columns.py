"""forecaster.data.columns: a frame in another dialect mapped onto the standard columns, once."""

from __future__ import annotations

import pandas as pd
import pytest
from factories import random_ohlc

from forecaster.data.columns import column_map, map_columns, parse_columns
from forecaster.errors import DataError

NIXTLA = {"ticker": "unique_id", "date": "ds", "open": "Open", "high": "High", "low": "Low", "close": "Adj Close"}


def foreign(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as NeuralForecast / Yahoo users hold it, with an unadjusted Close beside Adj Close."""
    renamed = frame.rename(columns={k: v for k, v in NIXTLA.items()})
    return renamed.assign(Close=renamed["Adj Close"] * 2.0)


def test_a_mapped_frame_becomes_the_standard_frame_and_the_callers_frame_is_kept() -> None:
    bars = random_ohlc(days=20)
    given = foreign(bars)

    ohlc = {k: v for k, v in NIXTLA.items() if k not in ("ticker", "date")}
    mapped = map_columns(given, column_map("unique_id", "ds", ohlc))

    pd.testing.assert_frame_equal(mapped[list(bars.columns)], bars)
    assert "Close" not in mapped.columns  # displaced by the column mapped to close
    assert "unique_id" in given.columns  # the caller's frame is not renamed


def test_names_match_in_any_case_as_file_headers_do() -> None:
    bars = random_ohlc(days=5).rename(columns={"ticker": "Symbol"})
    assert "ticker" in map_columns(bars, {"ticker": "SYMBOL"}).columns


def test_a_close_only_frame_is_refused_naming_what_is_missing_and_how_to_map() -> None:
    series = pd.DataFrame({"unique_id": ["A"] * 3, "ds": pd.bdate_range("2024-01-01", periods=3), "y": [1.0, 2, 3]})
    close_only = r"missing column\(s\) \['open', 'high', 'low'\] \(the model reads .* a close-only series"
    with pytest.raises(DataError, match=close_only) as caught:
        map_columns(series, column_map("unique_id", "ds", {"close": "y"}))
    assert "--columns ticker=unique_id,date=ds" in str(caught.value) and "id_col=" in str(caught.value)
    everything = r"\['date', 'ticker', 'open', 'high', 'low', 'close'\].*found \['unique_id', 'ds', 'y'\]"
    with pytest.raises(DataError, match=everything):
        map_columns(series, None)


def test_bad_mappings_are_errors_naming_them() -> None:
    bars = random_ohlc(days=5)
    with pytest.raises(DataError, match=r"columns: close is mapped to 'Adj Close', which the data does not have"):
        map_columns(bars, {"close": "Adj Close"})
    with pytest.raises(ValueError, match=r"columns: unknown standard name\(s\) \['price'\]"):
        map_columns(bars, {"price": "close"})
    with pytest.raises(ValueError, match="id_col: 'a' and columns\\['ticker'\\] = 'b' differ"):
        column_map("a", None, {"ticker": "b"})


def test_the_command_line_form_parses_into_the_same_mapping() -> None:
    assert parse_columns("ticker=unique_id, date=ds,close=Adj Close") == {
        "ticker": "unique_id",
        "date": "ds",
        "close": "Adj Close",
    }
    assert parse_columns(None) == {}
    with pytest.raises(ValueError, match="--columns: expected NAME=COLUMN items .* got 'ticker'"):
        parse_columns("ticker")
    with pytest.raises(ValueError, match="--columns: 'date' is mapped twice"):
        parse_columns("date=a,date=b")
