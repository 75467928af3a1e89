"""Pure-numpy windowing: X[N,T,4] inputs and Y[N,H] target closes, never across tickers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from forecaster.config import CLOSE, FEATURES
from forecaster.data import in_ticker_date_order


@dataclass(frozen=True)
class Windows:
    """N windows: ``X[N,T,4]`` OHLC inputs and ``Y[N,H]`` the closes of the next H days."""

    X: np.ndarray
    Y: np.ndarray

    @property
    def last_close(self) -> np.ndarray:
        return self.X[:, -1, CLOSE]


def make_windows(series: np.ndarray, input_len: int, horizon: int, stride: int = 1) -> Windows:
    """All windows of one series ``[L, 4]`` as zero-copy views (no loop over windows).

    Window i covers rows ``i*stride .. i*stride+T-1``; its targets are the closes of the
    H rows after it. Returns N = (L - T - H) // stride + 1 windows.
    """
    if series.ndim != 2 or series.shape[1] != len(FEATURES):
        raise ValueError(f"series: expected shape [L, 4], got {list(series.shape)}")
    length = series.shape[0]
    if length < input_len + horizon:
        raise ValueError(f"series: {length} rows, need at least lookback + horizon = {input_len + horizon}")
    # sliding_window_view over axis 0 -> (L-T+1, 4, T); swap to (N, T, 4), still a view
    X = sliding_window_view(series[: length - horizon], input_len, axis=0).swapaxes(1, 2)
    Y = sliding_window_view(series[input_len:, CLOSE], horizon)
    return Windows(X[::stride], Y[::stride])


@dataclass(frozen=True)
class Panel:
    """Many tickers back to back: ``values[L,4]`` with per-ticker offsets ``starts[S+1]``."""

    values: np.ndarray
    dates: np.ndarray
    series_id: np.ndarray
    tickers: tuple[str, ...]
    starts: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Panel:
        """From a validated tidy frame; rows are grouped by ticker in date order."""
        codes, tickers = pd.factorize(frame["ticker"], sort=True)  # 4x np.unique's speed on strings
        dates = frame["date"].to_numpy(dtype="datetime64[ns]")
        if not in_ticker_date_order(codes, dates.view(np.int64)):  # a validated frame is; others are sorted
            order = np.lexsort((dates, codes))  # stable, as sort_values(["ticker", "date"], kind="stable")
            frame, codes, dates = frame.iloc[order], codes[order], dates[order]
        counts = np.bincount(codes, minlength=len(tickers))
        starts = np.concatenate([[0], np.cumsum(counts)])
        return cls(
            values=frame[list(FEATURES)].to_numpy(dtype=np.float32),
            dates=dates,
            series_id=codes.astype(np.int32),
            tickers=tuple(str(t) for t in tickers),
            starts=starts,
        )

    def origins(self, lookback: int, horizon: int, need_future: bool = True, stride: int = 1) -> np.ndarray:
        """Global row index of the last input row of every window that stays in one ticker.

        need_future: keep only origins with H rows after them (targets known).
        """
        position = np.arange(len(self.values)) - self.starts[self.series_id]
        remaining = self.starts[self.series_id + 1] - 1 - np.arange(len(self.values))
        ok = position >= lookback - 1
        if need_future:
            ok &= remaining >= horizon
        ok &= (position - (lookback - 1)) % stride == 0
        return np.flatnonzero(ok)

    def gather(self, origins: np.ndarray, lookback: int, horizon: int) -> Windows:
        """Copy the windows ending at ``origins`` (a batch): X[N,T,4], Y[N,H] float32."""
        # every window of the panel as a view (window i = rows i .. i+T-1, one contiguous [T,4]
        # block); indexing copies the batch's blocks whole: 1.5-2x faster than row by row
        spans = sliding_window_view(self.values, (lookback, len(FEATURES)))[:, 0]  # -> (rows-T+1, T, 4)
        X = spans[np.asarray(origins) - (lookback - 1)]
        return Windows(X, self.future_closes(origins, horizon))

    def future_closes(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        """Y[N,H]: the closes of the H rows after each origin; NaN past the end of its ticker."""
        future = origins[:, None] + np.arange(1, horizon + 1)  # -> (N, H)
        end = self.starts[self.series_id[origins] + 1][:, None]  # first row of the next ticker
        Y = self.values[np.minimum(future, len(self.values) - 1), CLOSE]
        return np.where(future < end, Y, np.float32(np.nan))
