"""The calendar cut of a bars frame: one train < validation < test split by date for every ticker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecaster.errors import DataError


@dataclass(frozen=True)
class DateSplit:
    """One calendar cut for every ticker: train < val_start <= validation < test_start <= test."""

    val_start: pd.Timestamp
    test_start: pd.Timestamp

    def label(self, dates: np.ndarray) -> np.ndarray:
        """0 train, 1 validation, 2 test for each date."""
        dates = pd.DatetimeIndex(dates).values
        return (dates >= self.val_start.to_datetime64()).astype(np.int8) + (
            dates >= self.test_start.to_datetime64()
        ).astype(np.int8)


def split_by_date(frame: pd.DataFrame, val_fraction: float, test_fraction: float) -> DateSplit:
    """Cut the union of all trading dates so the last fractions go to validation and test."""
    dates = np.sort(frame["date"].unique())
    if len(dates) < 3:
        raise DataError(f"data: need at least 3 distinct dates to split, got {len(dates)}")
    n = len(dates)
    test_at = min(n - 1, int(round(n * (1.0 - test_fraction)))) if test_fraction > 0 else n - 1
    val_at = min(test_at, int(round(n * (1.0 - test_fraction - val_fraction))))
    return DateSplit(pd.Timestamp(dates[val_at]), pd.Timestamp(dates[test_at]))
