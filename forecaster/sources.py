"""Where bars come from: a file, yfinance, or the bundled sample. One entry for every caller."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecaster.data import load_sample, read_ohlc_file, validate_ohlc
from forecaster.errors import DataError

SOURCES: tuple[str, ...] = ("sample", "file", "yfinance")


def load_source(
    source: str = "sample",
    path: str | Path | None = None,
    tickers: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    cache_dir: Path | None = None,
    bad_rows: str = "fail",
) -> tuple[pd.DataFrame, str]:
    """Load and validate bars; returns (frame, a description of the source for tracking)."""
    if path is not None:
        source = "file"
    if source == "file":
        if path is None:
            raise DataError("data: source 'file' needs a path (--data PATH)")
        frame, origin = validate_ohlc(read_ohlc_file(path), bad_rows=bad_rows), str(Path(path).resolve())
    elif source == "sample":
        frame, origin = load_sample(), "forecaster/sample_data/ohlcv.csv.gz"
    elif source == "yfinance":
        from forecaster.yahoo import fetch_yahoo

        if not tickers:
            raise DataError("data: source 'yfinance' needs tickers (--tickers A,B)")
        frame = fetch_yahoo(tickers, start=start or "2010-01-01", end=end, cache_dir=cache_dir)
        origin = f"yfinance:{','.join(tickers)}"
    else:
        raise DataError(f"data: source must be one of {SOURCES}, got '{source}'")
    if tickers and source != "yfinance":
        unknown = sorted(set(tickers) - set(frame["ticker"]))
        if unknown:
            raise DataError(f"data: ticker(s) {unknown} not in {origin}")
        frame = frame[frame["ticker"].isin(tickers)]
    if start:
        frame = frame[frame["date"] >= pd.Timestamp(start)]
    if end:
        frame = frame[frame["date"] <= pd.Timestamp(end)]
    if frame.empty:
        raise DataError(f"data: no rows in {origin} for the requested tickers and dates")
    return frame.reset_index(drop=True), origin
