"""fetch_yahoo against recorded Yahoo v8 chart responses, through yfinance's real download path.

Only the transport is fake: ``curl_cffi.requests.Session.request`` (what yfinance's YfData calls)
answers from ``recorded/`` the way Yahoo does (bars filtered by period1/period2, 404 for an unknown
symbol, 429 when rate limited). The cookie/crumb handshake is stubbed, yfinance's on-disk caches are
swapped for its dummies, and opening a socket or running a curl transfer fails the test.
"""

from __future__ import annotations

import json
import logging
import re
import socket
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import curl_cffi
import numpy as np
import pandas as pd
import pytest
import yfinance as yf
import yfinance.base as yf_base
import yfinance.cache as yf_cache
from curl_cffi.requests import Session
from curl_cffi.requests.models import Headers, Response
from yfinance.data import YfData

from forecaster.data.retry import RetryPolicy
from forecaster.data.yahoo import COVERED_FROM, fetch_yahoo
from forecaster.errors import DataError, SourceError

RECORDED = Path(__file__).parent / "recorded"
YAHOO = r"^https://query[12]\.finance\.yahoo\.com"
ENDPOINTS = {  # group 1 is the symbol where the path names it; v7 quote takes it as ?symbols=
    "chart": re.compile(YAHOO + r"/v8/finance/chart/([^/?]+)$"),
    "quoteSummary": re.compile(YAHOO + r"/v10/finance/quoteSummary/([^/?]+)$"),
    "quote": re.compile(YAHOO + r"/v7/finance/quote\??$"),
    "timeseries": re.compile(YAHOO + r"/ws/fundamentals-timeseries/v1/finance/timeseries/([^/?]+)\?"),
}
# When the chart has no timezone for a symbol, yfinance falls back to its info lookup; these are
# Yahoo's answers to that lookup for an unknown symbol.
UNKNOWN_SYMBOL = {
    "quoteSummary": (404, "quote_summary_not_found.json"),
    "quote": (200, "quote_not_found.json"),
    "timeseries": (200, "timeseries_not_found.json"),
}
NEW_YORK = "America/New_York"


class Seen(NamedTuple):
    endpoint: str
    symbol: str
    params: dict[str, Any]
    status: int


class FakeYahoo:
    """Answers yfinance's HTTP requests from recorded files and remembers every request."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.unexpected: list[str] = []
        self.rate_limited: set[str] = set()

    def request(self, method: str, url: str, params: dict | None) -> Response:
        """Yahoo's answer to one GET: a chart (history or timezone probe) or an unknown symbol's info."""
        params = dict(params or {})
        endpoint, symbol = next(
            (
                (name, m.group(1) if m.groups() else str(params.get("symbols")))
                for name, pattern in ENDPOINTS.items()
                if (m := pattern.match(url))
            ),
            ("", ""),
        )
        known = (RECORDED / f"chart_{symbol}.json").exists()
        if method == "GET" and endpoint == "chart":
            status, body = self._chart(symbol, params)
        elif method == "GET" and endpoint in UNKNOWN_SYMBOL and not known:
            status, name = UNKNOWN_SYMBOL[endpoint]
            body = (RECORDED / name).read_bytes()
        else:
            self.unexpected.append(f"{method} {url}")
            raise RuntimeError(f"test: unexpected request {method} {url}")
        self.requests.append(Seen(endpoint, symbol, params, status))
        return _response(url, status, body)

    def chart_requests(self, symbol: str) -> list[dict[str, Any]]:
        """Params of the history requests (period1/period2) for one symbol, timezone probes left out."""
        charts = [r for r in self.requests if r.endpoint == "chart" and r.symbol == symbol]
        return [r.params for r in charts if "period1" in r.params]

    def _chart(self, symbol: str, params: dict[str, Any]) -> tuple[int, bytes]:
        if symbol in self.rate_limited:
            return 429, (RECORDED / "rate_limited.txt").read_bytes()
        path = RECORDED / f"chart_{symbol}.json"
        if not path.exists():
            return 404, (RECORDED / "chart_not_found.json").read_bytes()
        doc = json.loads(path.read_text())
        result = doc["chart"]["result"][0]
        stamps = result.pop("timestamp")
        if "range" in params:  # the timezone probe (range=1d) gets the latest bar
            keep = [len(stamps) - 1]
        else:
            keep = [i for i, t in enumerate(stamps) if int(params["period1"]) <= t < int(params["period2"])]
        result["meta"]["range"] = params.get("range", "")
        indicators = result["indicators"]
        if keep:  # Yahoo's layout: every array cut to the bars in the window
            result["timestamp"] = [stamps[i] for i in keep]
            quote = indicators["quote"][0]
            indicators["quote"][0] = {k: [v[i] for i in keep] for k, v in quote.items()}
            adj = indicators["adjclose"][0]["adjclose"]
            indicators["adjclose"][0]["adjclose"] = [adj[i] for i in keep]
            dividends = result.get("events", {}).get("dividends", {})
            lo, hi = result["timestamp"][0], result["timestamp"][-1]
            kept = {k: d for k, d in dividends.items() if lo <= d["date"] <= hi}
            result.pop("events", None)
            if kept:
                result["events"] = {"dividends": kept}
        else:  # a window without trading days: meta only, empty indicators
            result.pop("events", None)
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return 200, json.dumps(doc).encode()


def _response(url: str, status: int, body: bytes) -> Response:
    response = Response()
    response.url = url
    response.status_code = status
    response.reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests"}[status]
    response.ok = status < 400
    response.content = body
    kind = "text/plain" if status == 429 else "application/json;charset=utf-8"
    response.headers = Headers({"content-type": kind})
    return response


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeYahoo]:
    fake = FakeYahoo()

    def no_network(*args: Any, **kwargs: Any) -> None:
        fake.unexpected.append("real network access")
        raise RuntimeError("test: real network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(curl_cffi.Curl, "perform", no_network)

    def request(session: Session, method: str, url: str, params: dict | None = None, **_: Any) -> Response:
        return fake.request(method, url, params)

    monkeypatch.setattr(Session, "request", request)
    # Cookie and crumb would come from fc.yahoo.com and /v1/test/getcrumb.
    monkeypatch.setattr(YfData, "_get_cookie_and_crumb", lambda self, timeout=30: ("recorded", self._cookie_strategy))
    # yfinance keeps timezones and cookies in sqlite files under the user's cache folder.
    monkeypatch.setattr(yf_cache._TzCacheManager, "_tz_cache", yf_cache._TzCacheDummy())
    monkeypatch.setattr(yf_cache._CookieCacheManager, "_Cookie_cache", yf_cache._CookieCacheDummy())
    # yfinance tries its info fallback only for the first two symbols without a timezone per process.
    monkeypatch.setattr(yf_base, "_tz_info_fetch_ctr", 0)
    YfData.cache_get.cache_clear()
    yield fake
    YfData.cache_get.cache_clear()
    assert fake.unexpected == [], f"requests outside the recording: {fake.unexpected}"


def recorded_bars(symbol: str) -> pd.DataFrame:
    """The adjusted bars yfinance should make of the recording: prices times adjclose / close."""
    result = json.loads((RECORDED / f"chart_{symbol}.json").read_text())["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    adjclose = np.array(result["indicators"]["adjclose"][0]["adjclose"])
    ratio = adjclose / np.array(quote["close"])
    dates = pd.to_datetime(result["timestamp"], unit="s", utc=True).tz_convert(NEW_YORK)
    return pd.DataFrame(
        {
            "date": dates.tz_localize(None).normalize(),
            "open": np.array(quote["open"]) * ratio,
            "high": np.array(quote["high"]) * ratio,
            "low": np.array(quote["low"]) * ratio,
            "close": adjclose,
            "volume": np.array(quote["volume"], dtype="float64"),
        }
    )


def assert_matches_recording(frame: pd.DataFrame, symbol: str, first: str, last: str) -> None:
    expected = recorded_bars(symbol)
    expected = expected[(expected["date"] >= first) & (expected["date"] <= last)].reset_index(drop=True)
    got = frame[frame["ticker"] == symbol].reset_index(drop=True)
    assert list(got["date"]) == list(expected["date"])
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), rtol=1e-9, err_msg=column)


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected backoff sleep of {seconds}s")


NEVER_WAITS = RetryPolicy(sleep=no_sleep)  # any retry fails the test


def test_fetch_two_tickers_returns_recorded_adjusted_bars(yahoo: FakeYahoo) -> None:
    frame = fetch_yahoo(["AAPL", "MSFT"], start="2013-01-02", end="2013-02-13", retry=NEVER_WAITS)

    assert list(frame.columns) == ["date", "ticker", "open", "high", "low", "close", "volume"]
    assert frame.groupby("ticker").size().to_dict() == {"AAPL": 30, "MSFT": 30}
    assert (frame["date"] == frame["date"].dt.normalize()).all()
    assert frame["date"].iloc[0] == pd.Timestamp("2013-01-02")
    assert pd.Timestamp("2013-01-21") not in set(frame["date"])  # MLK day: no bar recorded
    assert_matches_recording(frame, "AAPL", "2013-01-02", "2013-02-13")
    assert_matches_recording(frame, "MSFT", "2013-01-02", "2013-02-13")
    # the dividend makes the adjustment vary, so close really is adjclose, not the raw close
    aapl = frame[frame["ticker"] == "AAPL"]
    assert aapl["close"].iloc[0] == pytest.approx(recorded_bars("AAPL")["close"].iloc[0])
    assert aapl["close"].iloc[0] != pytest.approx(71.1957, rel=1e-3)


def test_fetch_handles_multiindex_columns_for_one_and_two_tickers(yahoo: FakeYahoo) -> None:
    raw = yf.download(["AAPL"], start="2013-01-02", end="2013-01-10", auto_adjust=True, progress=False, threads=False)
    assert isinstance(raw.columns, pd.MultiIndex)  # the shape fetch_yahoo must unpack, even for one ticker
    assert list(raw.columns.names) == ["Price", "Ticker"]

    one = fetch_yahoo(["aapl"], start="2013-01-02", end="2013-01-31", retry=NEVER_WAITS)
    two = fetch_yahoo(["MSFT", "AAPL"], start="2013-01-02", end="2013-01-31", retry=NEVER_WAITS)

    assert set(one["ticker"]) == {"AAPL"}
    assert_matches_recording(one, "AAPL", "2013-01-02", "2013-01-31")
    pd.testing.assert_frame_equal(two[two["ticker"] == "AAPL"].reset_index(drop=True), one)
    assert_matches_recording(two, "MSFT", "2013-01-02", "2013-01-31")


@pytest.fixture
def user_sees() -> Iterator[list[str]]:
    """Messages from yfinance's loggers that reach a handler on the root logger, as an app's would
    (pytest's caplog also listens to loggers that do not propagate; an app's handler does not)."""
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name.split(".")[0] in ("yfinance", "peewee"):
                seen.append(record.getMessage())

    handler = Handler(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    yield seen
    logging.getLogger().removeHandler(handler)


def test_fetch_names_unknown_ticker_after_retries_with_backoff_in_one_line_per_attempt(
    yahoo: FakeYahoo, tmp_path: Path, caplog: pytest.LogCaptureFixture, user_sees: list[str]
) -> None:
    sleeps: list[float] = []

    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as failure:
        fetch_yahoo(
            ["AAPL", "NOSUCH"],
            start="2013-01-02",
            end="2013-02-13",
            cache_dir=tmp_path,
            retry=RetryPolicy(attempts=4, backoff_s=0.5, sleep=sleeps.append),
        )

    message = str(failure.value)
    assert "NOSUCH" in message and "AAPL" not in message and "after 4 attempt(s)" in message
    assert sleeps == [0.5, 1.0, 2.0]
    not_found = [r for r in yahoo.requests if r.endpoint == "chart" and r.symbol == "NOSUCH" and r.status == 404]
    assert len(not_found) >= 4  # every attempt reached Yahoo, none was answered from yfinance's memo
    assert len(yahoo.chart_requests("AAPL")) == 1  # only the failed ticker is asked again
    assert not (tmp_path / "NOSUCH.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL.parquet"]  # no temp files left
    cached = pd.read_parquet(tmp_path / "AAPL.parquet")
    assert_matches_recording(cached, "AAPL", "2013-01-02", "2013-02-13")
    # yfinance's own multi-line failure report never reaches the user's handlers: one warning per
    # retry, ours, saying why (pytest's caplog also listens to non-propagating loggers, a user's handler does not)
    assert user_sees == []
    warned = [
        r.getMessage() for r in caplog.records if r.name.startswith("forecaster") and r.levelno >= logging.WARNING
    ]
    assert len(warned) == 3 and all("\n" not in w and "NOSUCH" in w and "delisted" in w for w in warned)
    assert [f"attempt {n}/4" in w for n, w in zip((1, 2, 3), warned, strict=True)] == [True] * 3


def test_fetch_retries_once_after_rate_limit(yahoo: FakeYahoo) -> None:
    yahoo.rate_limited.add("MSFT")
    sleeps: list[float] = []

    def back_off(seconds: float) -> None:
        sleeps.append(seconds)
        yahoo.rate_limited.clear()  # Yahoo lifts the limit while we wait

    frame = fetch_yahoo(["AAPL", "MSFT"], start="2013-01-02", end="2013-02-13", retry=RetryPolicy(sleep=back_off))

    assert sleeps == [1.0]
    assert any(r.symbol == "MSFT" and r.status == 429 for r in yahoo.requests)
    assert len(yahoo.chart_requests("AAPL")) == 1
    assert_matches_recording(frame, "MSFT", "2013-01-02", "2013-02-13")
    assert_matches_recording(frame, "AAPL", "2013-01-02", "2013-02-13")


def test_fetch_failing_twice_then_answering_makes_exactly_three_attempts(
    yahoo: FakeYahoo, monkeypatch: pytest.MonkeyPatch
) -> None:
    yahoo.rate_limited.add("MSFT")
    sleeps: list[float] = []
    downloads: list[list[str]] = []
    real_download = yf.download

    def download(tickers: list[str], **kwargs: Any) -> pd.DataFrame | None:
        downloads.append(list(tickers))
        return real_download(tickers, **kwargs)

    monkeypatch.setattr(yf, "download", download)

    def back_off(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            yahoo.rate_limited.clear()  # lifted during the second wait

    frame = fetch_yahoo(
        ["MSFT"], start="2013-01-02", end="2013-02-13", retry=RetryPolicy(attempts=5, backoff_s=0.25, sleep=back_off)
    )

    assert sleeps == [0.25, 0.5]
    assert downloads == [["MSFT"]] * 3
    assert [r.status for r in yahoo.requests if "period1" in r.params] == [200]  # history asked once, when lifted
    assert_matches_recording(frame, "MSFT", "2013-01-02", "2013-02-13")


def asked_from(params: dict[str, Any]) -> date:
    return pd.Timestamp(int(params["period1"]), unit="s", tz="UTC").tz_convert(NEW_YORK).date()


def test_cache_asks_from_the_last_cached_day_then_for_nothing(yahoo: FakeYahoo, tmp_path: Path) -> None:
    first = fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-01-31", cache_dir=tmp_path, retry=NEVER_WAITS)
    assert len(first) == 21
    assert len(pd.read_parquet(tmp_path / "AAPL.parquet")) == 21

    yahoo.requests.clear()
    second = fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-02-13", cache_dir=tmp_path, retry=NEVER_WAITS)
    (params,) = yahoo.chart_requests("AAPL")
    # the last cached bar (2013-01-31) is asked again: the overlap that shows a re-adjustment
    assert asked_from(params) == date(2013, 1, 31)
    assert not second.duplicated(["ticker", "date"]).any()
    assert len(second) == 30
    assert_matches_recording(second, "AAPL", "2013-01-02", "2013-02-13")
    assert len(pd.read_parquet(tmp_path / "AAPL.parquet")) == 30

    yahoo.requests.clear()
    third = fetch_yahoo(["AAPL"], start="2013-01-10", end="2013-02-13", cache_dir=tmp_path, retry=NEVER_WAITS)
    assert yahoo.requests == []
    assert_matches_recording(third, "AAPL", "2013-01-10", "2013-02-13")


def test_cache_update_over_a_holiday_is_not_an_error(yahoo: FakeYahoo, tmp_path: Path) -> None:
    fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-01-18", cache_dir=tmp_path, retry=NEVER_WAITS)

    # nothing new on MLK day, but the overlapping cached bar comes back: Yahoo answered, no retry
    frame = fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-01-21", cache_dir=tmp_path, retry=NEVER_WAITS)

    assert frame["date"].max() == pd.Timestamp("2013-01-18")
    assert_matches_recording(frame, "AAPL", "2013-01-02", "2013-01-18")


def test_failed_fetch_leaves_cache_file_byte_identical(yahoo: FakeYahoo, tmp_path: Path) -> None:
    fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-01-31", cache_dir=tmp_path, retry=NEVER_WAITS)
    path = tmp_path / "AAPL.parquet"
    before, stat = path.read_bytes(), path.stat()
    yahoo.rate_limited.add("AAPL")

    with pytest.raises(SourceError, match="AAPL"):
        fetch_yahoo(
            ["AAPL"],
            start="2013-01-02",
            end="2013-02-13",
            cache_dir=tmp_path,
            retry=RetryPolicy(attempts=3, sleep=lambda seconds: None),
        )

    assert path.read_bytes() == before
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)  # not even rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL.parquet"]


def rewrite_cache(path: Path, change: Callable[[pd.DataFrame], None]) -> None:
    """Edit a cache file in place, keeping its metadata: the bars as an older download left them."""
    frame = pd.read_parquet(path)
    attrs = dict(frame.attrs)
    change(frame)
    frame.attrs = attrs
    frame.to_parquet(path, index=False)


def test_readjusted_history_is_downloaded_again_whole_not_mixed(
    yahoo: FakeYahoo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-01-31", cache_dir=tmp_path, retry=NEVER_WAITS)
    path = tmp_path / "AAPL.parquet"

    def before_a_dividend(frame: pd.DataFrame) -> None:  # cached before Yahoo rescaled all history by 0.98
        frame[["open", "high", "low", "close"]] /= 0.98

    rewrite_cache(path, before_a_dividend)
    yahoo.requests.clear()

    with caplog.at_level(logging.WARNING, logger="forecaster.data.yahoo"):
        frame = fetch_yahoo(["AAPL"], start="2013-01-10", end="2013-02-13", cache_dir=tmp_path, retry=NEVER_WAITS)

    incremental, whole = yahoo.chart_requests("AAPL")
    assert asked_from(incremental) == date(2013, 1, 31)
    assert asked_from(whole) == date(2013, 1, 2)  # everything the cache covered, on the new basis
    assert "ticker AAPL" in caplog.text and "re-adjusted" in caplog.text and "whole history" in caplog.text
    assert_matches_recording(frame, "AAPL", "2013-01-10", "2013-02-13")
    cached = pd.read_parquet(path)
    assert_matches_recording(cached, "AAPL", "2013-01-02", "2013-02-13")  # no bar left on the old basis
    assert cached.attrs[COVERED_FROM] == "2013-01-02"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL.parquet"]


def test_changed_cached_bar_is_refused_naming_ticker_and_date_unless_overwrite(
    yahoo: FakeYahoo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-01-31", cache_dir=tmp_path, retry=NEVER_WAITS)
    path = tmp_path / "AAPL.parquet"

    def partial_last_bar(frame: pd.DataFrame) -> None:  # only the close moved: an edit, not a re-adjustment
        frame.loc[frame.index[-1], ["close", "low"]] *= 0.99

    rewrite_cache(path, partial_last_bar)
    before = path.read_bytes()

    with pytest.raises(DataError, match="ticker AAPL: 1 bar\\(s\\) changed \\(2013-01-31\\)") as refused:
        fetch_yahoo(["AAPL"], start="2013-01-02", end="2013-02-13", cache_dir=tmp_path, retry=NEVER_WAITS)
    assert "overwrite" in str(refused.value) and "AAPL.parquet" in str(refused.value)
    assert path.read_bytes() == before  # nothing written

    with caplog.at_level(logging.WARNING, logger="forecaster.data.storage"):
        frame = fetch_yahoo(
            ["AAPL"], start="2013-01-02", end="2013-02-13", cache_dir=tmp_path, retry=NEVER_WAITS, overwrite=True
        )
    assert "overwriting" in caplog.text and "ticker AAPL" in caplog.text and "2013-01-31" in caplog.text
    assert_matches_recording(frame, "AAPL", "2013-01-02", "2013-02-13")
