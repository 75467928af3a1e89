"""Where bars come from: a file, yfinance, or the bundled sample. One entry for every caller.

The one retry policy of a failing source lives here too: every caller (CLI, service, retraining
pipeline) hands its retry settings down to it instead of looping around a source on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from forecaster.data import load_sample, parse_day, read_ohlc_path, validate_ohlc
from forecaster.errors import DataError, SourceError

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("sample", "file", "yfinance")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How a source that failed (a SourceError) is asked again: ``attempts`` tries in all, the
    n-th failure followed by a wait of ``backoff_s * 2 ** (n - 1)`` seconds through ``sleep``."""

    attempts: int = 4
    backoff_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"attempts: expected an integer >= 1, got {self.attempts!r}")
        if not self.backoff_s >= 0:
            raise ValueError(f"backoff_s: expected 0 or more seconds, got {self.backoff_s!r}")

    def call(self, attempt: Callable[[], T], what: str) -> T:
        """attempt() until it returns or the attempts are spent (then its last SourceError is raised).

        Only SourceError is retried: a DataError will not go away by asking again. Each retry logs
        one warning naming ``what``, the attempt, the wait and the error.
        """

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.1fs: %s",
                what,
                state.attempt_number,
                self.attempts,
                state.upcoming_sleep,
                error,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, exp_base=2, min=0),
            retry=retry_if_exception_type(SourceError),
            sleep=self.sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        return retrying(attempt)


DEFAULT_RETRY = RetryPolicy()


def load_source(
    source: str = "sample",
    path: str | Path | None = None,
    tickers: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    cache_dir: Path | None = None,
    bad_rows: str = "fail",
    *,
    date_format: str | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    overwrite: bool = False,
    splits: str = "warn",
) -> tuple[pd.DataFrame, str]:
    """Load and validate bars; returns (frame, a description of the source for tracking).

    path: a CSV/Parquet file, or a folder of them (source ``file``).
    date_format: layout of the file's text dates (strptime codes, e.g. ``%d/%m/%Y``); None = ISO only.
    retry: how yfinance is asked again after a failure (files and the sample are not retried).
    overwrite: yfinance only: let new bars replace cached ones that differ (otherwise a DataError).
    bad_rows, splits: files only, see `data.validate_ohlc` (the sample and yfinance bars are clean).
    """
    first = parse_day(start, "start") if start else None  # checked before anything is read or fetched
    last = parse_day(end, "end") if end else None
    if first is not None and last is not None and first > last:
        raise ValueError(f"start: {first:%Y-%m-%d} is after end {last:%Y-%m-%d} (--start, --end)")
    if path is not None:
        if source not in ("file", "sample"):  # sample: the command line's default, not a choice
            raise ValueError(f"source: a path (--data {path}) and source '{source}' (--source) both given; give one")
        source = "file"
    if source == "file":
        if path is None:
            raise DataError("data: source 'file' needs a path (--data PATH; data_path in the retrain settings)")
        frame = validate_ohlc(read_ohlc_path(path), bad_rows=bad_rows, splits=splits, date_format=date_format)
        origin = str(Path(path).resolve())
    elif source == "sample":
        frame, origin = load_sample(), "forecaster/sample_data/ohlcv.csv.gz"
    elif source == "yfinance":
        from forecaster.yahoo import fetch_yahoo

        if not tickers:
            raise DataError("data: source 'yfinance' needs tickers (--tickers A,B)")
        frame = fetch_yahoo(
            tickers, start=start or "2010-01-01", end=end, cache_dir=cache_dir, retry=retry, overwrite=overwrite
        )
        origin = f"yfinance:{','.join(tickers)}"
    else:
        raise DataError(f"data: source must be one of {SOURCES}, got '{source}'")
    if tickers and source != "yfinance":
        unknown = sorted(set(tickers) - set(frame["ticker"]))
        if unknown:
            raise DataError(f"data: ticker(s) {unknown} not in {origin}")
        frame = frame[frame["ticker"].isin(tickers)]
    if first is not None:
        frame = frame[frame["date"] >= first]
    if last is not None:
        frame = frame[frame["date"] <= last]
    if frame.empty:
        raise DataError(f"data: no rows in {origin} for the requested tickers and dates")
    return frame.reset_index(drop=True), origin


def cached_bars(cache_dir: Path, ticker: str) -> pd.DataFrame | None:
    """What the yfinance cache holds for a ticker, without a request, or None: the offline fallback."""
    from forecaster.yahoo import cached_bars as read_cache  # yfinance is imported only when used

    return read_cache(cache_dir, ticker)
