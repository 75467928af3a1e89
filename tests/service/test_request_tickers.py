"""The wire's tickers and dates follow the library's one rule each (issue 17.2, 19.4, 19.12): a ticker
by forecaster.data.rules.check_ticker (so "A,B", "BRK B", ".X" and "MSFT\\u200b" are a 422 naming the
field), a bar's date by forecaster.data.rules.parse_day (so epoch seconds and 01/02/2013 are refused,
not read as 2020-01-01), and no bar after tomorrow by the same latest_bar_day as files."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

import forecaster.data.rules as rules
from service.schemas import Bar, ForecastRequest

ACCEPTED = ["AAPL", "aapl", "BRK-B", "BRK.B", "7203.T", "^GSPC", "EURUSD=X"]
REFUSED = ["A,B", "BRK B", ".X", "MSFT\u200b", " AAPL", "BRK/B", "\u0410APL"]
BAR = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5}


def texts(body: Any) -> list[str]:
    """Every string of a JSON answer (the 422's messages, whatever its layout)."""
    if isinstance(body, dict):
        return [t for value in body.values() for t in texts(value)]
    if isinstance(body, list):
        return [t for value in body for t in texts(value)]
    return [body] if isinstance(body, str) else []


@pytest.mark.parametrize("symbol", REFUSED)
def test_a_ticker_that_is_no_symbol_is_refused_by_the_schema(symbol: str) -> None:
    with pytest.raises(ValidationError, match="is not a ticker symbol: "):
        ForecastRequest.model_validate({"ticker": symbol})
    with pytest.raises(ValidationError, match="is not a ticker symbol: "):
        ForecastRequest.model_validate({"series": [{"ticker": symbol}]})


@pytest.mark.parametrize("symbol", ACCEPTED)
def test_the_rule_s_symbols_are_accepted_as_given(symbol: str) -> None:
    assert ForecastRequest.model_validate({"ticker": symbol}).ticker == symbol


@pytest.mark.parametrize("date", ["1577836800", 1577836800, "01/02/2013", "2020-13-01", "yesterday", 1.5])
def test_a_bar_date_that_is_not_iso_is_refused(date: Any) -> None:
    with pytest.raises(ValidationError, match="expected a date YYYY-MM-DD|is not a calendar date"):
        Bar.model_validate({"date": date, **BAR})


@pytest.mark.parametrize("date", ["2020-01-02", " 2020-01-02 ", "2020-01-02T00:00:00", "2020-01-02T16:00:00-05:00"])
def test_iso_dates_are_read_as_the_library_reads_them(date: str) -> None:
    assert Bar.model_validate({"date": date, **BAR}).date == dt.date(2020, 1, 2)


def test_the_latest_bar_date_is_the_library_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "utc_today", lambda: dt.date(2024, 6, 27))
    assert Bar.model_validate({"date": "2024-06-28", **BAR}).date == dt.date(2024, 6, 28)
    with pytest.raises(ValidationError, match="2024-06-29 is in the future .*the latest accepted is 2024-06-28"):
        Bar.model_validate({"date": "2024-06-29", **BAR})


def test_a_bad_ticker_is_a_422_naming_the_field(client: Any) -> None:
    response = client.post("/forecast", json={"series": [{"ticker": "AAA"}, {"ticker": "MSFT\u200b"}]})
    assert response.status_code == 422, response.text
    assert "series[1].ticker: 'MSFT\\u200b' is not a ticker symbol" in " ".join(texts(response.json()))


def test_an_epoch_date_is_a_422_naming_the_bar(client: Any, history: list[dict[str, Any]]) -> None:
    bars = [dict(bar) for bar in history]
    bars[3]["date"] = "1577836800"
    response = client.post("/forecast", json={"history": bars})
    assert response.status_code == 422, response.text
    assert "history[3].date: expected a date YYYY-MM-DD, got '1577836800'" in " ".join(texts(response.json()))


def test_both_body_paths_refuse_a_bar_after_the_library_s_latest_date(
    client: Any, history: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast (orjson) path and pydantic's read tomorrow from the same rule: with the clock moved
    back, the last bar is in the future for both, and the answer is the one 422."""
    last = dt.date.fromisoformat(history[-1]["date"])
    monkeypatch.setattr(rules, "utc_today", lambda: last - dt.timedelta(days=2))
    response = client.post("/forecast", json={"history": history})
    assert response.status_code == 422, response.text
    assert f"{last:%Y-%m-%d} is in the future" in " ".join(texts(response.json()))
