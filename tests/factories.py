"""Synthetic OHLC frames for tests: valid tidy long frames, small and deterministic."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def random_ohlc(
    tickers: Sequence[str] = ("AAA", "BBB"),
    days: int = 300,
    seed: int = 0,
    start: str = "2020-01-01",
    end: str | None = None,
    base: float = 20.0,
    decimals: int | None = None,
) -> pd.DataFrame:
    """Geometric random-walk daily bars on business days, one block per ticker.

    Always valid: prices positive, high >= max(open, close), low <= min(open, close),
    one row per (ticker, date), sorted by ticker then date. `end` (instead of `start`) pins the
    last date; `decimals` rounds prices (to cents, say) and keeps high/low consistent.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(end=end, periods=days) if end else pd.bdate_range(start=start, periods=days)
    parts = []
    for i, ticker in enumerate(tickers):
        close = base * (i + 1) * np.exp(np.cumsum(rng.normal(0.0, 0.01, days)))
        open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(rng.normal(0.0, 0.003, days))
        high = np.maximum(open_, close) * (1.0 + np.abs(rng.normal(0.0, 0.004, days)))
        low = np.minimum(open_, close) * (1.0 - np.abs(rng.normal(0.0, 0.004, days)))
        if decimals is not None:
            open_, high, low, close = (np.round(a, decimals) for a in (open_, high, low, close))
            high = np.maximum.reduce([high, open_, close])
            low = np.minimum.reduce([low, open_, close])
        parts.append(
            pd.DataFrame({"date": dates, "ticker": ticker, "open": open_, "high": high, "low": low, "close": close})
        )
    return pd.concat(parts, ignore_index=True)


def sine_ohlc(
    tickers: Sequence[str] = ("AAA", "BBB"),
    days: int = 260,
    period: int = 16,
    amplitude: float = 0.05,
    start: str = "2020-01-01",
) -> pd.DataFrame:
    """Deterministic bars whose log close is a sine: the next closes follow from the last ones,
    so a network can learn them (a learnable signal, unlike a random walk)."""
    dates = pd.bdate_range(start=start, periods=days)
    t = np.arange(days)
    parts = []
    for i, ticker in enumerate(tickers):
        close = 30.0 * (i + 1) * np.exp(amplitude * np.sin(2 * np.pi * t / period + i))
        open_ = np.concatenate([[close[0]], close[:-1]])
        high = np.maximum(open_, close) * 1.002
        low = np.minimum(open_, close) * 0.998
        parts.append(
            pd.DataFrame({"date": dates, "ticker": ticker, "open": open_, "high": high, "low": low, "close": close})
        )
    return pd.concat(parts, ignore_index=True)


def to_csv(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a frame as the long CSV the CLI reads (dates as YYYY-MM-DD)."""
    dates = {
        c: frame[c].dt.strftime("%Y-%m-%d") for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])
    }
    frame.assign(**dates).to_csv(path, index=False)


def flat_panel_frame(closes: dict[str, Sequence[float]], start: str = "2020-01-01") -> pd.DataFrame:
    """One ticker per entry, open = high = low = close, on business days from `start`: bars whose
    every price is the close, for tests that compute metrics by hand."""
    parts = [
        pd.DataFrame(
            {
                "date": pd.bdate_range(start, periods=len(c)),
                "ticker": t,
                "open": c,
                "high": c,
                "low": c,
                "close": c,
            }
        )
        for t, c in closes.items()
    ]
    return pd.concat(parts, ignore_index=True)
