"""Ticker histories: where they come from (and say so), how old they may be, and whose fault a
failure is (the client's: 422-class DataError; the server's: SourceError, answered 503)."""

from __future__ import annotations

import datetime as dt
import gzip
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forecaster.errors import DataError, SourceError
from service import history
from service.history import HistoryProvider
from service.settings import Settings

TODAY = dt.date(2024, 3, 29)  # a Friday: the providers below run on this clock


def bars(ticker: str, days: int, start: str = "2024-01-02") -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=days)
    close = 100.0 + np.arange(days, dtype=float)
    return pd.DataFrame(
        {"date": dates, "ticker": ticker, "open": close, "high": close + 1, "low": close - 1, "close": close}
    )


@pytest.fixture(autouse=True)
def _service_store() -> None:
    """These tests need no model: no MLflow store (overrides the package's autouse fixture)."""


def provider(**settings: Any) -> HistoryProvider:
    return HistoryProvider(Settings(**settings), today=lambda: TODAY)


@pytest.fixture
def yahoo_down(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """yfinance fails at once for every ticker; returns the tickers it was asked for."""
    asked: list[str] = []
    real = history.load_source

    def fake(source: str, *args: Any, **kwargs: Any) -> Any:
        if source == "yfinance":
            asked.append(",".join(kwargs.get("tickers") or []))
            raise SourceError("yahoo: unreachable (test)")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(history, "load_source", fake)
    return asked


@pytest.fixture
def yahoo_hangs(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """yfinance does not answer until the returned event is set (set at teardown)."""
    release = threading.Event()

    def fake(source: str, *args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        raise SourceError("yahoo: timed out (test)")

    monkeypatch.setattr(history, "load_source", fake)
    yield release
    release.set()


def cache_with(tmp_path: Path, frame: pd.DataFrame) -> Path:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    frame.to_parquet(cache / f"{frame['ticker'].iloc[0]}.parquet", index=False)
    return cache


def test_yfinance_history_is_labelled_yfinance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "load_source", lambda *a, **k: (bars("ZZZ", 60, start="2024-01-01"), "yf"))
    found = provider(data_source="yfinance").history("ZZZ", 30)
    assert found.source == "yfinance" and not found.stale
    assert found.as_of == dt.date(2024, 3, 22)


def test_unreachable_yfinance_serves_its_cache_labelled_as_such(tmp_path: Path, yahoo_down: list[str]) -> None:
    cache = cache_with(tmp_path, bars("ZZZ", 60, start="2024-01-01"))  # last bar 2024-03-22: 7 days old
    found = provider(data_source="yfinance", cache_dir=str(cache)).history("ZZZ", 30)
    assert yahoo_down == ["ZZZ"]  # it did try the source first
    assert found.source == "yfinance-cache" and not found.stale
    assert found.as_of == dt.date(2024, 3, 22)
    assert found.bars["close"].iloc[-1] == pytest.approx(159.0)


def test_slow_yfinance_is_waited_for_a_bounded_time(tmp_path: Path, yahoo_hangs: threading.Event) -> None:
    cache = cache_with(tmp_path, bars("ZZZ", 60, start="2024-01-01"))
    source = provider(data_source="yfinance", cache_dir=str(cache), yfinance_timeout_s=0.2)
    started = time.monotonic()
    found = source.history("ZZZ", 30)
    assert time.monotonic() - started < 2.0
    assert found.source == "yfinance-cache"
    # a second request joins the download still running instead of starting another
    assert len(source._downloads) == 1
    source.history("ZZZ", 30)
    assert len(source._downloads) == 1


def test_old_cached_history_is_refused_by_default_for_yfinance(tmp_path: Path, yahoo_down: list[str]) -> None:
    cache = cache_with(tmp_path, bars("ZZZ", 40, start="2023-01-02"))  # ends 2023-02-24, a year old
    with pytest.raises(SourceError) as refused:
        provider(data_source="yfinance", cache_dir=str(cache)).history("ZZZ", 30, field="series[1].ticker")
    message = str(refused.value)
    assert message.startswith("series[1].ticker: ")
    assert "2023-02-24" in message and "limit of 10 days" in message and "MAX_HISTORY_AGE_DAYS" in message


def test_old_cached_history_is_served_marked_stale_when_the_policy_says_so(
    tmp_path: Path, yahoo_down: list[str]
) -> None:
    cache = cache_with(tmp_path, bars("ZZZ", 40, start="2023-01-02"))
    found = provider(data_source="yfinance", cache_dir=str(cache), stale_policy="serve").history("ZZZ", 30)
    assert found.stale and found.source == "yfinance-cache"
    assert found.as_of == dt.date(2023, 2, 24)


@pytest.mark.parametrize(("limit", "refused"), [(400, False), (30, True), (0, False)])
def test_max_history_age_is_configurable(tmp_path: Path, yahoo_down: list[str], limit: int, refused: bool) -> None:
    cache = cache_with(tmp_path, bars("ZZZ", 40, start="2023-01-02"))
    source = provider(data_source="yfinance", cache_dir=str(cache), max_history_age_days=limit)
    if refused:
        with pytest.raises(SourceError, match="limit of 30 days"):
            source.history("ZZZ", 30)
    else:
        assert source.history("ZZZ", 30).as_of == dt.date(2023, 2, 24)  # 0 = no limit


def test_unreachable_yfinance_never_falls_back_to_the_sample(tmp_path: Path, yahoo_down: list[str]) -> None:
    source = provider(data_source="yfinance", cache_dir=str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="yfinance has no bars for 'AAPL'"):
        source.history("AAPL", 30)  # AAPL is in the bundled sample: it must not answer


def test_without_cache_yfinance_falls_back_to_the_configured_file(tmp_path: Path, yahoo_down: list[str]) -> None:
    path = tmp_path / "bars.csv"
    bars("QQQ", 60, start="2024-01-01").to_csv(path, index=False)
    source = provider(data_source="yfinance", cache_dir=str(tmp_path / "empty"), data_path=str(path))
    found = source.history("QQQ", 20)
    assert found.source == "file"
    assert found.bars["close"].iloc[-1] == pytest.approx(159.0)
    with pytest.raises(SourceError, match="'NOPE'"):
        source.history("NOPE", 20)


def test_file_and_sample_histories_are_labelled_and_have_no_age_limit(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    bars("QQQ", 40, start="2015-01-01").to_csv(path, index=False)
    assert provider(data_source="file", data_path=str(path)).history("QQQ", 20).source == "file"
    sample = provider(data_source="sample").history("AAPL", 20)
    assert sample.source == "sample" and sample.as_of == dt.date(2013, 3, 1) and not sample.stale


def test_ticker_missing_from_the_file_is_the_clients_error(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    bars("QQQ", 40).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"^series\[2\].ticker: ticker 'NOPE' is not in the service's data source"):
        provider(data_source="file", data_path=str(path)).history("NOPE", 20, field="series[2].ticker")


def corrupt_gzip(path: Path) -> None:
    whole = gzip.compress(bars("QQQ", 40).to_csv(index=False).encode())
    path.write_bytes(whole[: len(whole) // 2])  # truncated: EOFError inside pandas


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (None, "does not exist"),
        (corrupt_gzip, "cannot be read"),
        (lambda p: p.write_bytes(b"\x00\x01garbage\xff" * 10), "cannot be read"),
        (lambda p: p.write_text("a,b\n1,2\n"), "cannot be read"),
    ],
    ids=["missing", "truncated-gzip", "binary", "wrong-columns"],
)
def test_bad_data_file_is_the_servers_error_naming_the_setting_not_the_path(
    tmp_path: Path, make: Any, expected: str
) -> None:
    path = tmp_path / "secret-place" / "bars.csv.gz"
    path.parent.mkdir()
    if make is not None:
        make(path)
    source = provider(data_source="file", data_path=str(path))
    with pytest.raises(SourceError) as failed:
        source.history("QQQ", 20)
    message = str(failed.value)
    assert expected in message and "FORECASTER_DATA_PATH" in message
    assert "secret-place" not in message and "Traceback" not in message
    # fixed on disk: the next request reads it (a failed read is not remembered)
    bars("QQQ", 40).to_csv(path, index=False)
    assert source.history("QQQ", 20).source == "file"


def test_file_source_without_a_path_is_the_servers_error() -> None:
    with pytest.raises(SourceError, match="FORECASTER_DATA_PATH"):
        provider(data_source="file").history("AAPL", 20)
