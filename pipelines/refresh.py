"""Step 1: refresh the data. Fetch what is new, validate it, store it atomically.

Retries belong to the source (forecaster.data.retry.RetryPolicy, built here from the settings), the
merge and the atomic write to forecaster.data.storage: this step only wires them together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from forecaster.data.retry import RetryPolicy
from forecaster.data.sources import load_source
from forecaster.data.storage import BarsChangedError, merge_bars, write_table_atomically
from forecaster.data.validate import read_ohlc_file, validate_ohlc
from forecaster.errors import DataError
from pipelines.settings import RetrainSettings, setting_hint

log = logging.getLogger(__name__)
STORE_FILE = "bars.parquet"


def refresh_data(settings: RetrainSettings, sleep: Callable[[float], None] = time.sleep) -> tuple[pd.DataFrame, str]:
    """New bars merged into the stored ones and stored atomically; returns (all bars, source description).

    The source is asked ``settings.retries`` times at most, ``settings.retry_backoff_s`` doubling
    between attempts (SourceError after the last). Stored bars that the new ones would change
    beyond the merge's tolerance are a DataError naming ticker and dates, and nothing is written,
    unless ``settings.overwrite_bars`` is set (then the change is logged and the new bars win).
    """
    store = Path(settings.data_dir) / STORE_FILE
    retry = RetryPolicy(attempts=settings.retries, backoff_s=settings.retry_backoff_s, sleep=sleep)
    try:
        fresh, origin = fetch(settings, retry)  # the yfinance cache refuses changed bars too
        merged = merge_bars(stored(store), fresh, overwrite=settings.overwrite_bars, what=f"stored bars '{store}'")
    except BarsChangedError as exc:
        raise BarsChangedError(exc.changes, f"set {setting_hint('overwrite_bars', True)}") from None
    data = settings.training.data
    frame = validate_ohlc(merged, min_rows=data.min_rows)
    write_table_atomically(frame, store)
    log.info(
        "data: %d rows, %d tickers, %s..%s stored in %s",
        len(frame),
        frame["ticker"].nunique(),
        f"{frame['date'].min():%Y-%m-%d}",
        f"{frame['date'].max():%Y-%m-%d}",
        store,
    )
    return frame, origin


def fetch(settings: RetrainSettings, retry: RetryPolicy) -> tuple[pd.DataFrame, str]:
    """The bars the configured source holds now (a file, a folder of files, yfinance or the sample)."""
    return load_source(
        settings.source,
        settings.data_path if settings.source == "file" else None,
        settings.tickers or None,
        settings.start.isoformat() if settings.start else None,
        None,
        settings.yfinance_cache_dir,
        date_format=settings.date_format,
        retry=retry,
        overwrite=settings.overwrite_bars,
    )


def stored(store: Path) -> pd.DataFrame | None:
    """The bars a previous refresh stored, or None before the first one."""
    if not store.exists():
        return None
    try:
        return validate_ohlc(read_ohlc_file(store))
    except DataError as exc:
        raise DataError(f"data: stored bars at '{store}' are unusable: {exc}") from exc
