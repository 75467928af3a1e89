"""Ticker histories from the service's configured source, and where each one came from.

yfinance is asked with a bounded wait; when it fails or is slow, its cache answers, then the data
file when one is configured, each labelled as such in the answer. The bundled sample answers
only when it is the configured source, never in place of another. A history older than the
configured age is refused or served marked stale. Failures of the server's own data are
SourceErrors (the service answers 503): the client cannot fix them. A ticker the source does not
hold is the client's DataError (422).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from forecaster.data.sources import cached_bars, load_source
from forecaster.errors import DataError, ForecasterError, SourceError
from service.schemas import HistorySource
from service.settings import Settings

log = logging.getLogger(__name__)


class HistoryUnavailable(SourceError):
    """The service's own history source cannot give a usable history (503). Its message is
    written for the caller: it names the field, the ticker and the setting to fix, never a path,
    a URI or a library's text (those go to the log)."""


# yfinance is asked for this many calendar days per trading day wanted (weekends, holidays), plus a margin.
CALENDAR_DAYS_PER_BAR = 1.6
EXTRA_DAYS = 30


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@dataclass(frozen=True)
class TickerHistory:
    """One ticker's bars (columns date, open, high, low, close; oldest first) and their origin."""

    bars: pd.DataFrame
    source: HistorySource
    stale: bool = False

    @property
    def as_of(self) -> dt.date:
        return pd.Timestamp(self.bars["date"].iloc[-1]).date()


class HistoryProvider:
    """File and sample sources are read once (a failed read is tried again on the next request);
    yfinance goes through its own cache each time."""

    def __init__(self, settings: Settings, today: Callable[[], dt.date] = utc_today) -> None:
        self.settings = settings
        self.today = today
        self._local: dict[str, TickerHistory] | None = None
        self._local_lock = threading.Lock()
        # One download per ticker at a time, in threads of its own: a request stops waiting after
        # yfinance_timeout_s, the download goes on and refreshes the cache for the next request.
        self._downloads: dict[tuple[str, str], Future[tuple[pd.DataFrame, str]]] = {}
        self._downloads_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="yfinance")

    def history(self, ticker: str, rows: int, field: str = "ticker") -> TickerHistory:
        """The bars of `ticker` (the last `rows` at least, when the source has that many).

        Raises DataError when the source does not hold the ticker; SourceError when the source
        cannot answer, or its history is older than the limit and stale_policy is refuse.
        """
        if self.settings.data_source == "yfinance":
            found = self._from_yfinance(ticker, rows, field)
        else:
            local = self._local_data().get(ticker)
            if local is None:
                source = self.settings.data_source
                raise DataError(f"{field}: ticker '{ticker}' is not in the service's data source ({source})")
            found = local
        return self._fresh_enough(ticker, found, field)

    async def histories(self, wanted: Sequence[tuple[str, str]], rows: int) -> list[TickerHistory | ForecasterError]:
        """`history` for many (ticker, field) pairs in one call: each answer, or the error it raised,
        in order (the caller raises the first, as if it had asked one by one).

        A local source already read answers on the event loop (a dict lookup); otherwise one thread
        hop for them all, with every yfinance download started before the first is waited for.
        """
        if not wanted:
            return []
        if self.settings.data_source != "yfinance" and self._local is not None:
            return self._histories(wanted, rows)
        return await asyncio.to_thread(self._histories, wanted, rows)

    def _histories(self, wanted: Sequence[tuple[str, str]], rows: int) -> list[TickerHistory | ForecasterError]:
        if self.settings.data_source == "yfinance":
            for ticker, _ in wanted:
                self._download(ticker, rows)  # all running at once; `history` waits on each in turn
        answers: list[TickerHistory | ForecasterError] = []
        for ticker, field in wanted:
            try:
                answers.append(self.history(ticker, rows, field))
            except ForecasterError as exc:
                answers.append(exc)
        return answers

    def close(self) -> None:
        """Stop waiting for downloads still running (they finish in the background)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _from_yfinance(self, ticker: str, rows: int, field: str) -> TickerHistory:
        symbol = ticker.upper()  # yfinance's spelling, and its cache file's name
        timeout = self.settings.yfinance_timeout_s
        try:
            frame, _ = self._download(ticker, rows).result(timeout=timeout)
        except TimeoutError:
            reason = f"no answer within {timeout:g} s (FORECASTER_YFINANCE_TIMEOUT_S)"
        except Exception as exc:  # noqa: BLE001 - any failure of the remote source means: try the fallbacks
            log.warning("yfinance: no bars for %s (%s: %s)", ticker, type(exc).__name__, exc)
            reason = "unknown symbol, or Yahoo unreachable"
        else:
            bars = frame[frame["ticker"] == symbol]
            if not bars.empty:
                return TickerHistory(bars.reset_index(drop=True), "yfinance")
            reason = "it returned no bars"
        cached = self._cached(symbol)
        if cached is not None:
            last = f"{cached['date'].max():%Y-%m-%d}"
            log.warning("yfinance: %s for %s; serving its cache up to %s", reason, ticker, last)
            return TickerHistory(cached.reset_index(drop=True), "yfinance-cache")
        if self.settings.data_path:
            found = self._local_data().get(ticker)
            if found is not None:
                log.warning("yfinance: %s for %s and nothing cached; serving the data file", reason, ticker)
                return found
        raise HistoryUnavailable(f"{field}: yfinance has no bars for '{ticker}' ({reason}) and none are cached")

    def _download(self, ticker: str, rows: int) -> Future[tuple[pd.DataFrame, str]]:
        """The running (or a new) download of a ticker's recent bars."""
        start = (self.today() - dt.timedelta(days=int(rows * CALENDAR_DAYS_PER_BAR) + EXTRA_DAYS)).isoformat()
        key = (ticker.upper(), start)
        with self._downloads_lock:
            future = self._downloads.get(key)
            if future is not None:
                return future
            future = self._pool.submit(
                load_source, "yfinance", tickers=[ticker], start=start, cache_dir=Path(self.settings.cache_dir)
            )
            self._downloads[key] = future
        # Outside the lock: a download already done runs the callback here, and it takes the lock.
        future.add_done_callback(lambda done: self._forget(key, done))
        return future

    def _forget(self, key: tuple[str, str], done: Future[tuple[pd.DataFrame, str]]) -> None:
        with self._downloads_lock:
            if self._downloads.get(key) is done:
                del self._downloads[key]

    def _cached(self, symbol: str) -> pd.DataFrame | None:
        try:
            cached = cached_bars(Path(self.settings.cache_dir), symbol)
        except Exception:  # noqa: BLE001 - a broken cache file is no cache; the log has the details
            log.exception("yfinance cache for %s cannot be read", symbol)
            return None
        return cached if cached is not None and not cached.empty else None

    def _local_data(self) -> dict[str, TickerHistory]:
        with self._local_lock:
            if self._local is None:
                self._local = self._read_local()
            return self._local

    def _read_local(self) -> dict[str, TickerHistory]:
        """Every ticker of the data file (or the sample, when that is the source), read once."""
        source: HistorySource = "sample" if self.settings.data_source == "sample" else "file"
        path = self.settings.data_path
        if source == "file":
            # The client cannot fix the server's file: HistoryUnavailable (503), naming the setting and
            # never the path or the parser's traceback (those go to the log).
            if not path:
                raise HistoryUnavailable("the service's data file is not configured (set FORECASTER_DATA_PATH)")
            if not Path(path).is_file():
                log.error("FORECASTER_DATA_PATH=%s: no such file", path)
                raise HistoryUnavailable("the service's data file (FORECASTER_DATA_PATH) does not exist")
        try:
            frame, _ = load_source(source, path if source == "file" else None)
        except Exception as exc:  # noqa: BLE001 - whatever breaks reading our own data is our failure
            log.exception("cannot read the service's %s data (%s)", source, path or "bundled")
            what = "data file (FORECASTER_DATA_PATH)" if source == "file" else "bundled sample"
            message = f"the service's {what} cannot be read ({type(exc).__name__}); see its log"
            raise HistoryUnavailable(message) from exc
        return {
            str(ticker): TickerHistory(bars.reset_index(drop=True), source)
            for ticker, bars in frame.groupby("ticker", sort=False)
        }

    def _fresh_enough(self, ticker: str, found: TickerHistory, field: str) -> TickerHistory:
        limit = self.settings.history_age_limit_days
        if limit is None:
            return found
        age = (self.today() - found.as_of).days
        if age <= limit:
            return found
        message = (
            f"{field}: the service's latest bar for '{ticker}' ({found.source}) is from {found.as_of}, "
            f"{age} days ago, older than the limit of {limit} days (FORECASTER_MAX_HISTORY_AGE_DAYS)"
        )
        if self.settings.stale_policy == "serve":
            log.warning("%s; served as stale (FORECASTER_STALE_POLICY=serve)", message)
            return replace(found, stale=True)
        raise HistoryUnavailable(message)
