"""Served forecasts and the bars that followed them, for the ledger's tests: AAA and BBB over 80
business days (AAA's bar of day 70 missing) and a ledger of every kind of row scoring meets."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from factories import random_ohlc

from forecaster.monitor.schema import ForecastRecord

LEVELS = [0.1, 0.25, 0.5, 0.75, 0.9]
OTHER_LEVELS = [0.05, 0.5, 0.95]


def bars() -> pd.DataFrame:
    """80 business days of AAA and BBB (cents), AAA's bar of day 70 missing."""
    frame = random_ohlc(("AAA", "BBB"), days=80, seed=3, start="2024-01-01", decimals=2)
    missing = (frame["ticker"] == "AAA") & (frame["date"] == frame["date"].unique()[70])
    return frame[~missing].reset_index(drop=True)


def days() -> list[dt.date]:
    """The bars' 80 business days and 10 after them (target dates with no bar yet)."""
    return [d.date() for d in pd.bdate_range("2024-01-01", periods=90)]


def record(key: str, as_of: int, horizon: int, frame: pd.DataFrame, **changes: Any) -> ForecastRecord:
    """A forecast from day `as_of` of series `key` (a ticker; changes may say it came with the request)."""
    day = days()
    closes = frame[frame["ticker"] == key].set_index("date")["close"] if key in ("AAA", "BBB") else None
    last = float(np.float32(closes[pd.Timestamp(day[as_of])])) if closes is not None else 50.0
    levels = changes.pop("levels", LEVELS)
    rng = np.random.default_rng(as_of)
    values = {
        "served_at": dt.datetime(2024, 6, 1, tzinfo=dt.UTC),
        "origin": "service",
        "role": "served",
        "model": "m",
        "version": "1",
        "alias": "champion",
        "run_id": None,
        "request_id": f"r{as_of}",
        "series_id": key,
        "ticker": key,
        "source": "file",
        "fingerprint": "0" * 32,
        "as_of": day[as_of],
        "last_close": last,
        "levels": levels,
        "target_dates": day[as_of + 1 : as_of + 1 + horizon],
        "quantiles": [sorted((last * np.exp(rng.normal(0, 0.02, len(levels)))).tolist()) for _ in range(horizon)],
    }
    return ForecastRecord(**{**values, **changes})


def ledger(frame: pd.DataFrame) -> list[ForecastRecord]:
    records = [record(t, i, 3, frame) for t in ("AAA", "BBB") for i in (0, 1, 21, 40, 66, 68, 75)]
    records += [
        record("BBB", 50, 2, frame, levels=OTHER_LEVELS),  # another version's levels
        record("BBB", 45, 3, frame, ticker=None, source="request"),  # sent history, id BBB, BBB's bars
        record("mine", 30, 2, frame, ticker=None, source="request"),  # sent history of no series here
        record("BBB", 33, 2, frame, last_close=record("BBB", 33, 1, frame).last_close * 1.01),  # other bars
    ]
    return records
