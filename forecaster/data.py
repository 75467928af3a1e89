"""Load and validate daily OHLC(V) bars as one tidy long frame, and cut it by date.

The frame every other module receives: columns ``date, ticker, open, high, low, close
[, volume]``, ``date`` as datetime64 (no time part), sorted by ticker then date, one row per
(ticker, date), every price finite and positive, high/low consistent with open/close.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.errors import DataError

log = logging.getLogger(__name__)

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
REQUIRED_COLUMNS: tuple[str, ...] = ("date", "ticker", *PRICE_COLUMNS)
SAMPLE_FILE = "ohlcv.csv.gz"
# Ratios of common stock splits (and their reverses); a close-to-open jump this close to one
# of them is far more likely an unadjusted split than a market move.
SPLIT_RATIOS: tuple[float, ...] = (2.0, 3.0, 1.5, 4.0, 5.0, 7.0, 10.0, 20.0)
SPLIT_TOLERANCE = 0.03
MAX_LISTED_ISSUES = 5


def read_ohlc_file(path: str | Path) -> pd.DataFrame:
    """Read a long-format CSV (optionally gzipped) or Parquet file; headers are case-insensitive."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data: file '{path}' does not exist")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except (OSError, ValueError, ImportError) as exc:
        raise DataError(f"data: cannot read '{path}': {exc}") from exc
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def load_sample() -> pd.DataFrame:
    """The bundled real market sample (see forecaster/sample_data/README.md), validated."""
    with resources.as_file(resources.files("forecaster.sample_data") / SAMPLE_FILE) as path:
        return validate_ohlc(read_ohlc_file(path))


def validate_ohlc(
    frame: pd.DataFrame,
    bad_rows: str = "fail",
    min_rows: int = 1,
    splits: str = "warn",
) -> pd.DataFrame:
    """Check every rule of the tidy frame and return a clean, sorted copy.

    bad_rows: ``fail`` raises a DataError naming ticker and date of the first bad rows;
    ``drop`` removes them and logs a warning with the count. Nothing is changed silently.
    min_rows: tickers with fewer rows are an error (``fail``) or dropped with a warning.
    splits: what to do with jumps that look like unadjusted splits: ``warn``, ``fail`` or
    ``adjust`` (back-adjust earlier prices by the split ratio, logged per ticker and date).
    """
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"data: missing column(s) {missing}; found {list(frame.columns)}")
    keep = [*REQUIRED_COLUMNS] + (["volume"] if "volume" in frame.columns else [])
    frame = frame[keep].copy()
    raw = frame.copy()
    frame["ticker"] = frame["ticker"].astype("string").str.strip()
    frame["date"] = pd.to_datetime(frame["date"], errors="coerce", format="mixed")
    if getattr(frame["date"].dt, "tz", None) is not None:
        frame["date"] = frame["date"].dt.tz_localize(None)
    frame["date"] = frame["date"].dt.normalize()
    for column in (*PRICE_COLUMNS, *(["volume"] if "volume" in frame.columns else [])):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")

    reasons = _row_problems(frame, raw)
    bad = reasons != ""
    if bad.any():
        problems = _describe(frame, raw, reasons[bad])
        if bad_rows == "fail":
            raise DataError(f"data: {int(bad.sum())} bad row(s): {problems}")
        log.warning("dropped %d bad row(s): %s", int(bad.sum()), problems)
        frame = frame[~bad]

    frame = frame.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    frame["ticker"] = frame["ticker"].astype(str)
    frame = _check_min_rows(frame, min_rows, bad_rows)
    frame = _handle_split_jumps(frame, splits)
    if frame.empty:
        raise DataError("data: no valid rows left")
    return frame


def _row_problems(frame: pd.DataFrame, raw: pd.DataFrame) -> pd.Series:
    """One string per row: '' when the row is good, else its problems joined by '; '."""
    reasons = pd.Series("", index=frame.index, dtype=object)

    def flag(mask: pd.Series, text: object) -> None:
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            add = text if isinstance(text, pd.Series) else pd.Series(text, index=frame.index)
            reasons[mask] = reasons[mask] + np.where(reasons[mask] == "", "", "; ") + add[mask]

    flag(frame["ticker"].isna() | (frame["ticker"] == ""), "ticker is empty")
    flag(frame["date"].isna(), "date: unparseable " + _shown(raw["date"], 30))
    for column in PRICE_COLUMNS:
        values = frame[column]
        flag(~np.isfinite(values), f"{column}: not a finite number (" + _shown(raw[column], 20) + ")")
        flag(np.isfinite(values) & (values <= 0), f"{column}: not positive ({values.astype(str)})")
    if "volume" in frame.columns:
        flag(frame["volume"] < 0, "volume: negative")
    prices_ok = np.isfinite(frame[list(PRICE_COLUMNS)]).all(axis=1)
    top = frame[["open", "close"]].max(axis=1)
    bottom = frame[["open", "close"]].min(axis=1)
    flag(prices_ok & (frame["high"] < top), "high below max(open, close)")
    flag(prices_ok & (frame["low"] > bottom), "low above min(open, close)")
    dup = frame.duplicated(["ticker", "date"], keep="first") & frame["date"].notna()
    flag(dup, "duplicate (ticker, date)")
    return reasons


def _shown(values: pd.Series, width: int) -> pd.Series:
    """Raw cells as text for messages; missing cells read 'missing' (pandas keeps them NaN,
    which would turn the whole reason into NaN)."""
    return values.astype(str).str.slice(0, width).fillna("missing")


def _describe(frame: pd.DataFrame, raw: pd.DataFrame, reasons: pd.Series) -> str:
    parts = []
    for index, reason in reasons.head(MAX_LISTED_ISSUES).items():
        ticker = raw.at[index, "ticker"]
        date = frame.at[index, "date"]
        when = date.strftime("%Y-%m-%d") if pd.notna(date) else str(raw.at[index, "date"])
        parts.append(f"ticker {ticker} date {when} (row {index}): {reason}")
    more = len(reasons) - MAX_LISTED_ISSUES
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _check_min_rows(frame: pd.DataFrame, min_rows: int, bad_rows: str) -> pd.DataFrame:
    counts = frame.groupby("ticker").size()
    short = counts[counts < min_rows]
    if short.empty:
        return frame
    listing = ", ".join(f"{t} has {n}" for t, n in short.items())
    message = f"data: too few rows for lookback + horizon ({min_rows} needed): {listing}"
    if bad_rows == "fail" or len(short) == len(counts):
        raise DataError(message)
    log.warning("dropped %d ticker(s): %s", len(short), message)
    return frame[~frame["ticker"].isin(short.index)].reset_index(drop=True)


def find_split_jumps(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose open jumped from the previous close by about a stock-split ratio.

    Returns columns ticker, date, ratio (previous close / open, >1 for a forward split).
    """
    prev_close = frame.groupby("ticker")["close"].shift(1)
    ratio = prev_close / frame["open"]
    near = pd.Series(False, index=frame.index)
    for r in SPLIT_RATIOS:
        for target in (r, 1.0 / r):
            near |= (ratio / target - 1.0).abs() < SPLIT_TOLERANCE
    hits = frame.loc[near, ["ticker", "date"]].copy()
    hits["ratio"] = ratio[near]
    return hits.reset_index(drop=True)


def _handle_split_jumps(frame: pd.DataFrame, splits: str) -> pd.DataFrame:
    if splits not in ("warn", "fail", "adjust"):
        raise ValueError(f"splits: expected 'warn', 'fail' or 'adjust', got '{splits}'")
    jumps = find_split_jumps(frame)
    if jumps.empty:
        return frame
    listing = "; ".join(
        f"ticker {row.ticker} date {row.date:%Y-%m-%d} ratio {row.ratio:.3f}"
        for row in jumps.head(MAX_LISTED_ISSUES).itertuples()
    )
    if splits == "fail":
        raise DataError(f"data: {len(jumps)} jump(s) look like unadjusted stock splits: {listing}")
    if splits == "warn":
        log.warning(
            "%d jump(s) look like unadjusted splits (pass adjusted prices or splits='adjust'): %s", len(jumps), listing
        )
        return frame
    frame = frame.copy()
    for row in jumps.itertuples():
        snapped = min((r for r in SPLIT_RATIOS for r in (r, 1.0 / r)), key=lambda r: abs(row.ratio / r - 1))
        earlier = (frame["ticker"] == row.ticker) & (frame["date"] < row.date)
        frame.loc[earlier, list(PRICE_COLUMNS)] /= snapped
        if "volume" in frame.columns:
            frame.loc[earlier, "volume"] *= snapped
    log.warning("back-adjusted %d split(s): %s", len(jumps), listing)
    return frame


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
