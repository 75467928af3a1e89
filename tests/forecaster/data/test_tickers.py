"""One ticker rule (forecaster.data.rules.check_ticker) for files, yfinance, the retrain settings and
the service (issue 19.4, 17.2): the symbols the three old rules disagreed on ("BRK B", ".X", "A,B")
are refused by all four; invisible characters are refused; AAPL and aapl in one file are an error,
not two series; " AAPL" is stripped with a warning, not silently. The service's requests:
tests/service/test_request_tickers.py."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
import pytest
from factories import random_ohlc, to_csv
from pydantic import ValidationError

import forecaster.data.yahoo as yahoo
from forecaster.data.rules import TICKER_MAX_LENGTH, case_clashes, check_ticker
from forecaster.data.sources import load_source
from forecaster.data.validate import validate_ohlc
from forecaster.data.yahoo import fetch_yahoo, yahoo_symbols
from forecaster.errors import DataError
from pipelines.settings import load_settings

ACCEPTED = ["AAPL", "aapl", "BRK-B", "BRK.B", "7203.T", "^GSPC", "EURUSD=X", "M&M.NS", "BTC-USD", "my_series"]
REFUSED = {  # text -> the reason's words
    "BRK B": "a space",
    ".X": "must start with a letter, a digit or ^",
    "A,B": "the character ','",
    "MSFT\u200b": "an invisible or control character (U+200B ZERO WIDTH SPACE)",
    "AA\tPL": "an invisible or control character (U+0009",
    "\u0410APL": "not ASCII (U+0410 CYRILLIC CAPITAL LETTER A)",  # a Cyrillic A that prints like AAPL
    " AAPL": "spaces around it",
    "BRK/B": "the character '/'",
    "": "empty",
    "X" * (TICKER_MAX_LENGTH + 1): f"longer than {TICKER_MAX_LENGTH} characters",
}


@pytest.mark.parametrize("text", ACCEPTED)
def test_the_rule_accepts_symbols_and_keeps_them_as_given(text: str) -> None:
    assert check_ticker(text, "ticker") == text


@pytest.mark.parametrize("text", list(REFUSED))
def test_the_rule_refuses_naming_the_field_the_text_and_why(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_ticker(text, "tickers")
    assert str(refused.value).startswith(f"tickers: {text!r} is not a ticker symbol: ")
    assert REFUSED[text] in str(refused.value)
    assert "\u200b" not in str(refused.value)  # the invisible character is shown escaped


def test_case_clashes_groups_the_spellings_of_one_symbol() -> None:
    assert case_clashes(["AAPL", "MSFT", "aapl", "Aapl", "msft2"]) == [["AAPL", "Aapl", "aapl"]]
    assert case_clashes(["AAPL", "MSFT"]) == []


# ---------------------------------------------------------------- files


def two_tickers(second: str) -> pd.DataFrame:
    frame = random_ohlc(tickers=("AAPL", "MSFT"), days=20)
    return frame.assign(ticker=frame["ticker"].replace("MSFT", second))


def test_aapl_and_aapl_in_lower_case_in_one_file_are_refused_even_when_dropping(tmp_path: Path) -> None:
    to_csv(two_tickers("aapl").assign(date=lambda f: f["date"] + pd.Timedelta(days=400)), tmp_path / "bars.csv")
    for bad_rows in ("fail", "drop"):
        with pytest.raises(DataError, match="one ticker spelled in two cases would be two series: 'AAPL' and 'aapl'"):
            load_source(path=tmp_path / "bars.csv", bad_rows=bad_rows)


def test_a_ticker_with_spaces_around_it_is_merged_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    frame = random_ohlc(tickers=("AAPL",), days=20)
    frame.loc[10:, "ticker"] = " AAPL"
    with caplog.at_level(logging.WARNING):
        clean = validate_ohlc(frame)
    assert clean["ticker"].unique().tolist() == ["AAPL"] and len(clean) == 20
    assert "stripped the spaces around 10 ticker cell(s) (e.g. ' AAPL' -> 'AAPL')" in caplog.text


def test_a_ticker_with_a_zero_width_space_is_a_bad_row_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    frame = two_tickers("MSFT\u200b")
    first = frame.index[frame["ticker"] == "MSFT\u200b"][0]
    with pytest.raises(DataError) as refused:
        validate_ohlc(frame)
    message = str(refused.value)
    assert "20 bad row(s)" in message
    assert (
        f"date {frame.at[first, 'date']:%Y-%m-%d} (row {first}): ticker: 'MSFT\\u200b' is not a ticker symbol"
        in message
    )
    with caplog.at_level(logging.WARNING):
        kept = validate_ohlc(frame, bad_rows="drop")
    assert kept["ticker"].unique().tolist() == ["AAPL"] and "dropped 20 bad row(s)" in caplog.text


@pytest.mark.parametrize("symbol", ["BRK B", ".X", "A,B"])
def test_the_symbols_the_old_rules_disagreed_on_are_bad_rows_in_a_file(symbol: str) -> None:
    with pytest.raises(DataError, match=re.escape(f"ticker: {symbol!r} is not a ticker symbol")):
        validate_ohlc(two_tickers(symbol))


# ---------------------------------------------------------------- yfinance


@pytest.mark.parametrize("symbol", ["BRK B", ".X", "A,B", "MSFT\u200b"])
def test_yfinance_refuses_them_before_any_request(symbol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_request(*args: object, **kwargs: object) -> None:
        raise AssertionError("yfinance was asked")

    monkeypatch.setattr(yahoo.yf, "download", no_request)
    with pytest.raises(ValueError, match=re.escape(f"tickers: {symbol!r} is not a ticker symbol")):
        fetch_yahoo([symbol], start="2020-01-01", end="2020-02-01")


def test_yfinance_asks_for_upper_case_symbols_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert yahoo_symbols(["aapl", "AAPL", "brk-b"]) == ["AAPL", "BRK-B"]
    assert "ticker 'aapl' asked for as 'AAPL'" in caplog.text and "'brk-b' asked for as 'BRK-B'" in caplog.text


# ---------------------------------------------------------------- retrain settings


@pytest.mark.parametrize(("text", "symbol"), [("AAPL,BRK B", "BRK B"), (".X", ".X"), ('["A,B"]', "A,B")])
def test_retrain_settings_refuse_them(text: str, symbol: str, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FORECASTER_RETRAIN_TICKERS", text)
    with pytest.raises(
        ValidationError, match=re.escape(f"{symbol!r} is not a ticker symbol") + ".*expected A,B or a JSON list"
    ):
        load_settings()


def test_retrain_settings_take_a_comma_list_with_spaces_between_symbols(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("FORECASTER_RETRAIN_TICKERS", "AAPL, BRK-B ,^GSPC")
    assert load_settings().tickers == ["AAPL", "BRK-B", "^GSPC"]
