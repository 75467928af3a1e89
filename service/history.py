"""Recent bars for a ticker from the service's configured source (file, sample or yfinance)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.data import PRICE_COLUMNS
from forecaster.errors import DataError, SourceError
from forecaster.sources import load_source
from service.settings import Settings

log = logging.getLogger(__name__)


class HistoryProvider:
    """File and sample sources are read once; yfinance goes through its own cache each time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._frame: pd.DataFrame | None = None
        self._lock = threading.Lock()

    def _local_frame(self) -> pd.DataFrame:
        with self._lock:
            if self._frame is None:
                source = "file" if self.settings.data_path else "sample"
                self._frame, _ = load_source(source, self.settings.data_path if source == "file" else None)
            return self._frame

    def _offline(self, ticker: str, error: SourceError) -> pd.DataFrame:
        """yfinance failed: the bars already in its cache, else the configured file or sample."""
        from forecaster.yahoo import cached_bars

        cached = cached_bars(Path(self.settings.cache_dir), ticker)
        if cached is not None and len(cached):
            log.warning(
                "yfinance unavailable for %s (%s); serving from its cache up to %s",
                ticker,
                error,
                f"{cached['date'].max():%Y-%m-%d}",
            )
            return cached
        log.warning("yfinance unavailable for %s (%s); trying the local data", ticker, error)
        return self._local_frame()

    def bars(self, ticker: str, rows: int) -> tuple[np.ndarray, dt.date]:
        """The last `rows` bars [rows,4] of a ticker and the date of the last one."""
        if self.settings.data_source == "yfinance":
            start = (dt.date.today() - dt.timedelta(days=int(rows * 1.6) + 30)).isoformat()
            try:
                frame, _ = load_source(
                    "yfinance", tickers=[ticker], start=start, cache_dir=Path(self.settings.cache_dir)
                )
            except SourceError as exc:
                frame = self._offline(ticker, exc)
        else:
            frame = self._local_frame()
        bars = frame[frame["ticker"] == ticker]
        if bars.empty:
            raise DataError(f"ticker '{ticker}' is not in the service's data source ({self.settings.data_source})")
        if len(bars) < rows:
            raise DataError(f"ticker '{ticker}': {len(bars)} bars in the data source, the model needs {rows}")
        tail = bars.tail(rows)
        return tail[list(PRICE_COLUMNS)].to_numpy(dtype=np.float32), tail["date"].iloc[-1].date()
