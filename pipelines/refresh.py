"""Step 1: refresh the data. Fetch what is new, validate it, store it atomically."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from forecaster.data import read_ohlc_file, validate_ohlc
from forecaster.errors import DataError, SourceError
from forecaster.sources import load_source
from pipelines.settings import RetrainSettings

log = logging.getLogger(__name__)
STORE_FILE = "bars.parquet"


def refresh_data(settings: RetrainSettings, sleep: Callable[[float], None] = time.sleep) -> tuple[pd.DataFrame, str]:
    """New bars merged into the stored ones; retried with backoff, then a SourceError."""
    store = Path(settings.data_dir) / STORE_FILE
    last_error: Exception | None = None
    for attempt in range(1, settings.retries + 1):
        try:
            fresh, origin = fetch(settings)
            break
        except SourceError as exc:  # the source failed: worth another try
            last_error = exc
            if attempt < settings.retries:
                delay = settings.retry_backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "data source failed (attempt %d/%d), retrying in %.1fs: %s", attempt, settings.retries, delay, exc
                )
                sleep(delay)
    else:
        raise SourceError(f"data refresh: source '{settings.source}' failed {settings.retries} time(s): {last_error}")
    merged = merge(stored(store), fresh)
    frame = validate_ohlc(merged, min_rows=settings.lookback + settings.horizon)
    write_atomically(frame, store)
    log.info(
        "data: %d rows, %d tickers, %s..%s stored in %s",
        len(frame),
        frame["ticker"].nunique(),
        f"{frame['date'].min():%Y-%m-%d}",
        f"{frame['date'].max():%Y-%m-%d}",
        store,
    )
    return frame, origin


def fetch(settings: RetrainSettings) -> tuple[pd.DataFrame, str]:
    if settings.source == "file" and settings.data_path and Path(settings.data_path).is_dir():
        files = sorted(p for p in Path(settings.data_path).iterdir() if p.suffix in (".csv", ".gz", ".parquet", ".pq"))
        if not files:
            raise SourceError(f"data: folder '{settings.data_path}' holds no CSV or Parquet file")
        frame = validate_ohlc(pd.concat([read_ohlc_file(p) for p in files], ignore_index=True))
        return frame, str(Path(settings.data_path).resolve())
    try:
        return load_source(
            settings.source,
            settings.data_path if settings.source == "file" else None,
            settings.tickers or None,
            settings.start,
            None,
            Path(settings.data_dir) / "yfinance",
        )
    except OSError as exc:
        raise SourceError(f"data: source '{settings.source}' unreadable: {exc}") from exc


def stored(store: Path) -> pd.DataFrame | None:
    if not store.exists():
        return None
    try:
        return pd.read_parquet(store)
    except (OSError, ValueError) as exc:
        raise DataError(f"data: stored bars at {store} are unreadable: {exc}") from exc


def merge(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """Stored bars plus the fresh ones; on a (ticker, date) present in both, the fresh row wins."""
    if old is None or old.empty:
        return new
    combined = pd.concat([old, new], ignore_index=True)
    return combined.drop_duplicates(["ticker", "date"], keep="last").sort_values(["ticker", "date"])


def write_atomically(frame: pd.DataFrame, store: Path) -> None:
    store.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, store)
