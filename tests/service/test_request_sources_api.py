"""Ticker requests over HTTP when the service's own data is broken, missing or old: the server's
problem (503 with Retry-After, no traceback, no path), never a 500, never blamed on the client,
never answered from the bundled sample; old histories refused or flagged as configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.errors import SourceError
from service import history as history_module


def assert_servers_fault(response: Any, *hidden: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    text = response.text
    assert "Traceback" not in text and "Error:" not in text
    for secret in hidden:
        assert secret not in text


@pytest.mark.parametrize(
    "make",
    [None, lambda p: p.write_bytes(b"\x1f\x8b\x08\x00broken")],
    ids=["missing", "corrupt"],
)
def test_bad_data_file_is_503_and_requests_with_histories_still_work(serve_app, tmp_path, history, make):
    path = tmp_path / "hidden-dir" / "bars.csv.gz"
    path.parent.mkdir()
    if make is not None:
        make(path)
    with serve_app(data_path=str(path)) as http:
        response = http.post("/forecast", json={"ticker": "AAA"})
        assert_servers_fault(response, "hidden-dir")
        assert "FORECASTER_DATA_PATH" in response.json()["detail"]  # says what the operator must fix
        assert_servers_fault(http.post("/forecast", json={"series": [{"history": history}, {"ticker": "AAA"}]}))
        response = http.post("/forecast", json={"history": history})
        assert response.status_code == 200, response.text


@pytest.fixture
def yahoo_down(monkeypatch: pytest.MonkeyPatch) -> None:
    real = history_module.load_source

    def fake(source: str, *args: Any, **kwargs: Any) -> Any:
        if source == "yfinance":
            raise SourceError("yahoo: unreachable (test)")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(history_module, "load_source", fake)


@pytest.fixture
def old_cache(tmp_path: Path, registry) -> Path:
    """The yfinance cache holds 'ZZZ': bars that end on 2023-12-22, long ago."""
    cache = tmp_path / "cache"
    cache.mkdir()
    bars = registry.frame[registry.frame["ticker"] == "CCC"].assign(ticker="ZZZ", volume=1000.0)
    bars.to_parquet(cache / "ZZZ.parquet", index=False)
    return cache


def test_old_yfinance_history_is_refused_never_replaced_by_the_sample(serve_app, yahoo_down, old_cache):
    with serve_app(data_source="yfinance", cache_dir=str(old_cache)) as http:
        too_old = http.post("/forecast", json={"ticker": "ZZZ"})  # the cache: too old
        assert_servers_fault(too_old)
        why = "ticker: the service's latest bar for 'ZZZ' (yfinance-cache) is from 2023-12-22"
        assert why in too_old.json()["detail"]
        assert_servers_fault(http.post("/forecast", json={"ticker": "AAA"}))  # the data file: too old too
        assert_servers_fault(http.post("/forecast", json={"ticker": "AAPL"}))  # only in the sample: not served


def test_old_yfinance_history_is_served_flagged_when_the_policy_says_so(serve_app, yahoo_down, old_cache):
    with serve_app(data_source="yfinance", cache_dir=str(old_cache), stale_policy="serve") as http:
        response = http.post("/forecast", json={"series": [{"ticker": "ZZZ"}, {"ticker": "AAA"}]})
        assert response.status_code == 200, response.text
        cached, from_file = response.json()["forecasts"]
        assert (cached["source"], cached["as_of"], cached["stale"]) == ("yfinance-cache", "2023-12-22", True)
        assert (from_file["source"], from_file["stale"]) == ("file", True)
        assert_servers_fault(http.post("/forecast", json={"ticker": "AAPL"}))  # still never the sample


def test_age_limit_off_serves_old_history_as_not_stale(serve_app, yahoo_down, old_cache):
    with serve_app(data_source="yfinance", cache_dir=str(old_cache), max_history_age_days=0) as http:
        response = http.post("/forecast", json={"ticker": "ZZZ"})
        assert response.status_code == 200, response.text
        forecast = response.json()["forecasts"][0]
        assert (forecast["source"], forecast["stale"]) == ("yfinance-cache", False)
        assert pd.Timestamp(forecast["points"][0]["date"]) > pd.Timestamp(forecast["as_of"])
