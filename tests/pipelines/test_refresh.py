"""pipelines.refresh: the source is retried by the one policy (never a loop around a loop), the
stored bars are never changed silently, and the store is written atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from factories import random_ohlc, to_csv

import forecaster.data.yahoo
from forecaster.data.yahoo import Span
from forecaster.errors import DataError, SourceError
from pipelines.refresh import STORE_FILE, refresh_data
from pipelines.settings import RetrainSettings, load_settings

DAYS = 400  # more than any lookback + horizon the settings default to


def yfinance_settings(tmp_path: Path, **overrides: Any) -> RetrainSettings:
    values: dict[str, Any] = {
        "source": "yfinance",
        "tickers": ["AAA"],
        "start": "2020-01-01",
        "data_dir": str(tmp_path / "data"),
        "retries": 3,
        "retry_backoff_s": 0.5,
    }
    return RetrainSettings(**{**values, **overrides})


class FlakyYahoo:
    """Stands in for one yfinance download: fails `failures` times (no bars, a 429), then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.bars = random_ohlc(tickers=("AAA",), days=DAYS, start="2020-01-01")

    def __call__(self, plan: dict[str, Span]) -> tuple[dict[str, pd.DataFrame], str]:
        self.calls += 1
        if self.calls <= self.failures:
            return {}, "['AAA']: YFRateLimitError('Too Many Requests')"
        return {t: self.bars.assign(ticker=t) for t in plan}, ""


def test_a_source_failing_twice_then_answering_is_asked_exactly_three_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    yahoo = FlakyYahoo(failures=2)
    monkeypatch.setattr(forecaster.data.yahoo, "_download", yahoo)
    sleeps: list[float] = []

    with caplog.at_level(logging.WARNING):
        frame, origin = refresh_data(yfinance_settings(tmp_path), sleep=sleeps.append)

    assert yahoo.calls == 3
    assert sleeps == [0.5, 1.0]  # retry_backoff_s, doubled
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "attempt 1/3" in retries[0] and "attempt 2/3" in retries[1]
    assert origin == "yfinance:AAA" and len(frame) == DAYS
    assert len(pd.read_parquet(tmp_path / "data" / STORE_FILE)) == DAYS


def test_retries_are_not_stacked_a_dead_source_is_asked_retries_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yahoo = FlakyYahoo(failures=100)
    monkeypatch.setattr(forecaster.data.yahoo, "_download", yahoo)
    sleeps: list[float] = []

    with pytest.raises(SourceError, match="AAA.*after 3 attempt\\(s\\).*Too Many Requests"):
        refresh_data(yfinance_settings(tmp_path), sleep=sleeps.append)

    assert yahoo.calls == 3  # not 3 x 4 (the pipeline's loop around yahoo's own)
    assert sleeps == [0.5, 1.0]
    assert not (tmp_path / "data" / STORE_FILE).exists()


def file_settings(tmp_path: Path, data: Path) -> RetrainSettings:
    return RetrainSettings(source="file", data_path=str(data), data_dir=str(tmp_path / "data"), retries=3)


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"a file source was retried (sleep {seconds}s)")


def test_same_bars_again_merge_silently_and_leave_only_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bars = random_ohlc(days=DAYS)
    to_csv(bars, tmp_path / "bars.csv")
    settings = file_settings(tmp_path, tmp_path / "bars.csv")
    first, _ = refresh_data(settings, sleep=no_sleep)

    with caplog.at_level(logging.WARNING):
        second, _ = refresh_data(settings, sleep=no_sleep)

    assert caplog.records == []
    pd.testing.assert_frame_equal(second, first)
    assert [p.name for p in (tmp_path / "data").iterdir()] == [STORE_FILE]  # no temp file beside it


def test_changed_stored_bars_are_refused_naming_ticker_and_dates_unless_overwrite(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bars = random_ohlc(days=DAYS)
    to_csv(bars, tmp_path / "bars.csv")
    settings = file_settings(tmp_path, tmp_path / "bars.csv")
    refresh_data(settings, sleep=no_sleep)
    store = tmp_path / "data" / STORE_FILE
    before = store.read_bytes()
    revised = bars.copy()
    i = revised.index[revised["ticker"] == "BBB"][100]
    revised.loc[i, ["open", "high", "low", "close"]] *= 1.01  # the vendor revised one stored bar
    to_csv(revised, tmp_path / "bars.csv")

    with pytest.raises(DataError) as refused:
        refresh_data(settings, sleep=no_sleep)

    message = str(refused.value)
    assert f"ticker BBB: 1 bar(s) changed ({bars.at[i, 'date']:%Y-%m-%d})" in message
    assert str(store) in message and "overwrite=True" not in message
    # the remedy names the setting as each entry point spells it, and those spellings work
    hint = "set overwrite_bars: true (flag --overwrite-bars, or FORECASTER_RETRAIN_OVERWRITE_BARS=true)"
    assert message.endswith(hint)
    assert load_settings(None, ["--overwrite-bars"]).overwrite_bars is True
    assert store.read_bytes() == before

    with caplog.at_level(logging.WARNING, logger="forecaster.data.storage"):
        frame, _ = refresh_data(settings.model_copy(update={"overwrite_bars": True}), sleep=no_sleep)
    assert "overwriting" in caplog.text and "ticker BBB" in caplog.text
    assert frame.loc[(frame["ticker"] == "BBB") & (frame["date"] == bars.at[i, "date"]), "close"].item() == (
        pytest.approx(revised.at[i, "close"])
    )


def test_a_readjusted_source_is_refused_for_stored_bars(tmp_path: Path) -> None:
    bars = random_ohlc(days=DAYS)
    to_csv(bars, tmp_path / "bars.csv")
    settings = file_settings(tmp_path, tmp_path / "bars.csv")
    refresh_data(settings, sleep=no_sleep)
    halved = bars.copy()
    halved.loc[halved["ticker"] == "AAA", ["open", "high", "low", "close"]] /= 2  # split-adjusted since
    to_csv(halved, tmp_path / "bars.csv")

    with pytest.raises(DataError, match=f"ticker AAA: {DAYS} bar\\(s\\) changed .*every price times 0.5"):
        refresh_data(settings, sleep=no_sleep)


def test_a_folder_of_files_is_one_source(tmp_path: Path) -> None:
    bars = random_ohlc(days=DAYS)
    folder = tmp_path / "incoming"
    folder.mkdir()
    for ticker in ("AAA", "BBB"):
        to_csv(bars[bars["ticker"] == ticker], folder / f"{ticker}.csv")

    frame, origin = refresh_data(file_settings(tmp_path, folder), sleep=no_sleep)

    assert origin == str(folder.resolve())
    pd.testing.assert_frame_equal(frame, bars, check_dtype=False)


def test_the_yfinance_cache_is_the_folder_the_service_reads_when_cache_dir_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose gives the scheduler the api's FORECASTER_CACHE_DIR: bars the retrain fetched are
    the api's offline fallback, read the way the service reads them."""
    from forecaster.data.sources import cached_bars

    monkeypatch.setattr(forecaster.data.yahoo, "_download", FlakyYahoo(failures=0))
    shared = tmp_path / "cache"
    refresh_data(yfinance_settings(tmp_path, cache_dir=str(shared)), sleep=no_sleep)
    cached = cached_bars(shared, "AAA")
    assert cached is not None and len(cached) == DAYS
    assert not (tmp_path / "data" / "yfinance").exists()


def test_without_cache_dir_the_yfinance_cache_stays_under_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from forecaster.data.sources import cached_bars

    monkeypatch.setattr(forecaster.data.yahoo, "_download", FlakyYahoo(failures=0))
    refresh_data(yfinance_settings(tmp_path), sleep=no_sleep)
    cached = cached_bars(tmp_path / "data" / "yfinance", "AAA")
    assert cached is not None and len(cached) == DAYS
