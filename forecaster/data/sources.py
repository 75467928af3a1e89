"""Where bars come from: a file, yfinance, or the bundled sample. One entry for every caller.

A failing yfinance request is asked again by the one retry policy (forecaster.data.retry).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pandas as pd

from forecaster.data.files import DEFAULT_LIMITS, ReadLimits, read_ohlc_file, read_ohlc_path
from forecaster.data.retry import DEFAULT_RETRY, RetryPolicy
from forecaster.data.rules import parse_day
from forecaster.data.validate import validate_ohlc
from forecaster.errors import DataError

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("sample", "file", "yfinance")
SAMPLE_FILE = "ohlcv.csv.gz"


def load_sample() -> pd.DataFrame:
    """The bundled real market sample (see forecaster/data/sample_data/README.md), validated; its
    prices are split-adjusted, so no split check (AAPL's real fall of 2000-09-29 is near 2:1)."""
    with resources.as_file(resources.files("forecaster.data.sample_data") / SAMPLE_FILE) as path:
        return validate_ohlc(read_ohlc_file(path), splits=None)


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
    limits: ReadLimits = DEFAULT_LIMITS,
    columns: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Load and validate bars; returns (frame, a description of the source for tracking).

    path: a CSV/Parquet file, or a folder of them (source ``file``).
    date_format: layout of the file's text dates (strptime codes, e.g. ``%d/%m/%Y``); None = ISO only.
    retry: how yfinance is asked again after a failure (files and the sample are not retried).
    overwrite: yfinance only: let new bars replace cached ones that differ (otherwise a DataError).
    bad_rows, splits: files only, see `data.validate_ohlc` (the sample and yfinance bars are clean).
    limits: files only: the largest file read (rows, bytes, cell length; `data.files.ReadLimits`).
    columns: files only: the file's names of the standard columns (`data.columns.map_columns`).
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
        raw = read_ohlc_path(path, limits, columns)
        frame = validate_ohlc(raw, bad_rows=bad_rows, splits=splits, date_format=date_format)
        origin = str(Path(path).resolve())
    elif source == "sample":
        frame, origin = load_sample(), "forecaster/data/sample_data/ohlcv.csv.gz"
    elif source == "yfinance":
        from forecaster.data.yahoo import fetch_yahoo

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
    from forecaster.data.yahoo import cached_bars as read_cache  # yfinance is imported only when used

    return read_cache(cache_dir, ticker)
