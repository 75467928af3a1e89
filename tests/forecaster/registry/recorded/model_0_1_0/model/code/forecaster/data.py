"""Load and validate daily OHLC(V) bars as one tidy long frame, and cut it by date.

The frame every other module receives: columns ``date, ticker, open, high, low, close
[, volume]``, ``date`` as datetime64 (no time part), sorted by ticker then date, one row per
(ticker, date), every price finite and positive, high/low consistent with open/close.
Dates given as text must be ISO (``YYYY-MM-DD``, optionally with a time) unless a format is
declared: a day-first file read as month-first would swap day and month without a sound.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from forecaster.config import BAD_ROWS, FEATURES, SPLITS, check_choice
from forecaster.errors import DataError
from forecaster.rules import OHLC_RULES, ohlc_breaks

log = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("date", "ticker", *FEATURES)
SAMPLE_FILE = "ohlcv.csv.gz"
DATA_SUFFIXES: tuple[str, ...] = (".csv", ".gz", ".parquet", ".pq")
ROW_SOURCES = "forecaster_row_sources"  # frame.attrs key: where each file of a folder starts
# An ISO date, optionally followed by an ISO time and offset; group 1 is the (local) date, which is
# all a daily bar keeps, so offsets need no conversion.
ISO_DATE = r"^(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
# Ratios of common stock splits (and their reverses); a close-to-open jump this close to one
# of them is far more likely an unadjusted split than a market move.
SPLIT_RATIOS: tuple[float, ...] = (2.0, 3.0, 1.5, 4.0, 5.0, 7.0, 10.0, 20.0)
SPLIT_TOLERANCE = 0.03
MAX_LISTED_ISSUES = 5


def read_ohlc_file(path: str | Path) -> pd.DataFrame:
    """Read a long-format CSV (optionally gzipped) or Parquet file; headers are case-insensitive.

    Anything that is not a readable table with the required columns (a truncated archive, binary
    garbage, text that is not UTF-8, an empty file) is a one-line DataError naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data: file '{path}' does not exist")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"data: cannot read '{path}': not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 CSV"
        ) from exc
    except (EOFError, zlib.error) as exc:
        raise DataError(f"data: cannot read '{path}': truncated or corrupt archive ({_one_line(exc)})") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data: cannot read '{path}': the file is empty") from exc
    except (OSError, ValueError, ImportError, pa.ArrowException) as exc:  # ParserError is a ValueError
        raise DataError(f"data: cannot read '{path}': {_one_line(exc)}") from exc
    frame.columns = _lowercase_columns(frame.columns, f"'{path}'")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        found = [str(c)[:30] for c in frame.columns[:10]]
        raise DataError(
            f"data: '{path}' is not an OHLC table: missing column(s) {missing}; found {found} "
            f"(expected a header {','.join(REQUIRED_COLUMNS)}[,volume])"
        )
    if frame.empty:
        raise DataError(f"data: '{path}' has a header but no rows")
    return frame


def read_ohlc_path(path: str | Path) -> pd.DataFrame:
    """One file, or every CSV/Parquet file of a folder (sorted by name) as one frame."""
    path = Path(path)
    if not path.is_dir():
        return read_ohlc_file(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
    if not files:
        raise DataError(f"data: folder '{path}' holds no CSV or Parquet file")
    frames = [read_ohlc_file(p) for p in files]
    frame = pd.concat(frames, ignore_index=True)
    # where each file's rows start, so that validation names a bad row by its file and row there
    starts = np.cumsum([0] + [len(f) for f in frames[:-1]]).tolist()
    frame.attrs[ROW_SOURCES] = list(zip(starts, [p.name for p in files], strict=True))
    return frame


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _lowercase_columns(columns: pd.Index, where: str) -> list[str]:
    """Stripped lower-case names; two that differ only in case (close, Close) would be ambiguous."""
    names = [str(c).strip().lower() for c in columns]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        variants = [str(c) for c in columns if str(c).strip().lower() in clashes]
        raise DataError(f"data: columns {variants} in {where} are the same name in another case; keep one of each")
    return names


def load_sample() -> pd.DataFrame:
    """The bundled real market sample (see forecaster/sample_data/README.md), validated."""
    with resources.as_file(resources.files("forecaster.sample_data") / SAMPLE_FILE) as path:
        return validate_ohlc(read_ohlc_file(path))


def parse_day(value: object, name: str) -> pd.Timestamp:
    """One date given as an option (``--from``, ``--as-of``, ``start``): ISO text ``YYYY-MM-DD``
    (optionally with a time, dropped) or a date/timestamp, as a midnight Timestamp; anything else
    (``01/02/2013``, which is ambiguous, ``yesterday``, ``2013-13-01``, empty) is a ValueError
    naming `name`."""
    if isinstance(value, (pd.Timestamp, dt.date, np.datetime64)):
        stamp = pd.Timestamp(value)
    else:
        match = re.match(ISO_DATE, str(value).strip())
        try:
            stamp = pd.Timestamp(match.group(1)) if match else pd.NaT
        except ValueError:  # 2013-13-01: the right layout, not a calendar date
            raise ValueError(f"{name}: {value!r} is not a calendar date") from None
    if pd.isna(stamp):
        raise ValueError(f"{name}: expected a date YYYY-MM-DD, got {value!r}")
    return stamp.tz_localize(None).normalize() if stamp.tz is not None else stamp.normalize()


def parse_dates(values: pd.Series, date_format: str | None = None) -> pd.Series:
    """Dates as datetime64 without time or time zone; NaT where a cell is not a date.

    datetime64 columns (Parquet) are taken as they are. Text must be ISO ``YYYY-MM-DD``
    (optionally with a time and offset; the local date is kept) unless ``date_format`` (strptime
    codes, e.g. ``%d/%m/%Y``) declares the layout; anything else is NaT, never a guess.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        text = values.astype("string").str.strip()
        try:
            if date_format is None:
                parsed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
                # plain dates take the fast path above; only cells with a time part need the regex
                rest = parsed.isna() & text.notna()
                if rest.any():
                    day = text[rest].str.extract(ISO_DATE, expand=False)
                    parsed[rest] = pd.to_datetime(day, format="%Y-%m-%d", errors="coerce")
            else:
                parsed = pd.to_datetime(text, format=date_format, errors="coerce")
        except (ValueError, TypeError) as exc:
            raise DataError(f"date_format: cannot read dates with {date_format!r}: {_one_line(exc)}") from exc
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # keep the wall-clock date the source gave
    return parsed.dt.normalize()


def _date_hint(date_format: str | None) -> str:
    if date_format is not None:
        return f" (dates must match date_format {date_format!r})"
    return (
        " (dates must be ISO YYYY-MM-DD, optionally with a time; for another layout pass a date format, "
        "e.g. date_format='%d/%m/%Y' or --date-format '%d/%m/%Y')"
    )


def validate_ohlc(
    frame: pd.DataFrame,
    bad_rows: str = "fail",
    min_rows: int = 1,
    splits: str = "warn",
    date_format: str | None = None,
) -> pd.DataFrame:
    """Check every rule of the tidy frame and return a clean, sorted copy.

    bad_rows: ``fail`` raises a DataError naming ticker and date of the first bad rows;
    ``drop`` removes them and logs a warning with the count. Nothing is changed silently.
    min_rows: tickers with fewer rows are an error (``fail``) or dropped with a warning.
    splits: what to do with jumps that look like unadjusted splits: ``warn``, ``fail`` or
    ``adjust`` (back-adjust earlier prices by the split ratio, logged per ticker and date).
    date_format: the layout of text dates (strptime codes, e.g. ``%d/%m/%Y``); None = ISO only.
    A column where no date parses is an error even with ``drop``: the layout is wrong, not the rows.
    """
    frame = frame.set_axis(_lowercase_columns(frame.columns, "the data"), axis=1)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"data: missing column(s) {missing}; found {list(frame.columns)}")
    check_choice("bad_rows", bad_rows, BAD_ROWS)
    check_choice("splits", splits, SPLITS)
    if frame.empty:
        raise DataError("data: no rows")
    keep = [*REQUIRED_COLUMNS] + (["volume"] if "volume" in frame.columns else [])
    frame = frame[keep]  # copy-on-write (pandas 3): the caller's frame is never changed below
    if not frame.index.is_unique:  # e.g. pd.concat of frames: messages name rows by their position then
        frame = frame.reset_index(drop=True)
    raw = frame.copy(deep=False)  # the cells as read, for messages; shares the data until frame's change
    frame["ticker"] = frame["ticker"].astype("string").str.strip()
    frame["date"] = parse_dates(frame["date"], date_format)
    for column in (*FEATURES, *(["volume"] if "volume" in frame.columns else [])):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")

    codes, names = pd.factorize(frame["ticker"], sort=True)  # once: sorted codes number the sorted names
    reasons, bad = _row_problems(frame, raw, codes)
    if bad.any():
        problems = _describe(frame, raw, reasons[bad])
        if reasons[bad].str.contains("date: unparseable", regex=False).any():
            problems += _date_hint(date_format)
        if bad_rows == "fail" or frame["date"].isna().all():
            raise DataError(f"data: {int(bad.sum())} bad row(s): {problems}")
        log.warning("dropped %d bad row(s): %s", int(bad.sum()), problems)
        frame, codes = frame[~bad], codes[~bad]

    frame, codes = _sort_rows(frame, codes)
    frame["ticker"] = frame["ticker"].astype(str)
    frame, codes = _check_min_rows(frame, codes, np.asarray(names, dtype=object), min_rows, bad_rows)
    frame = _handle_split_jumps(frame, splits, codes)
    if frame.empty:
        raise DataError("data: no valid rows left")
    # the rows are sorted and renumbered: where they came from no longer applies (a new dict: the
    # caller's frame keeps its own)
    frame.attrs = {k: v for k, v in frame.attrs.items() if k != ROW_SOURCES}
    return frame


def row_problems(frame: pd.DataFrame, raw: pd.DataFrame | None = None) -> pd.Series:
    """One string per row: '' when the row is good, else its problems joined by '; ' (vectorised).

    frame: typed columns (prices float64, ``date`` datetime64 with NaT for unparseable cells);
    ``ticker`` and ``date`` are checked only when present, so a single history without them
    can be checked too. raw: the cells as read, quoted in the reasons (default: frame).
    """
    return _row_problems(frame, raw)[0]


def _row_problems(
    frame: pd.DataFrame, raw: pd.DataFrame | None, codes: np.ndarray | None = None
) -> tuple[pd.Series, np.ndarray]:
    """`row_problems`, and the rows with a problem as a boolean array (comparing every reason of a
    large frame with '' cost a tenth of its validation). codes: each row's ticker as an integer
    (-1 for a missing one), when the caller has them."""
    raw = frame if raw is None else raw
    reasons = pd.Series("", index=frame.index, dtype=object)
    flagged = np.zeros(len(frame), dtype=bool)

    def flag(mask: pd.Series, text: str | Callable[[pd.Series], pd.Series]) -> None:
        """Add a reason to the flagged rows; a callable builds the text for those rows only (building
        it for every row of a clean frame cost most of the validation time of a large file)."""
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            add = text(mask) if callable(text) else text
            reasons[mask] = reasons[mask] + np.where(reasons[mask] == "", "", "; ") + add
            flagged[mask.to_numpy()] = True

    if "ticker" in frame.columns:
        flag(frame["ticker"].isna() | (frame["ticker"] == ""), "ticker is empty")
    if "date" in frame.columns:
        flag(frame["date"].isna(), lambda m: "date: unparseable " + _shown(raw.loc[m, "date"], 30))
    for column in FEATURES:
        values = frame[column]

        def not_finite(m: pd.Series, c: str = column) -> pd.Series:
            return f"{c}: not a finite number (" + _shown(raw.loc[m, c], 20) + ")"

        def not_positive(m: pd.Series, c: str = column, v: pd.Series = values) -> pd.Series:
            return f"{c}: not positive (" + v[m].astype(str) + ")"

        flag(~np.isfinite(values), not_finite)
        flag(np.isfinite(values) & (values <= 0), not_positive)
    if "volume" in frame.columns:
        flag(frame["volume"] < 0, "volume: negative")
        missing = frame["volume"].isna()
        if missing.any():  # an empty volume is allowed (sources without one); text that is no number is not
            cells = raw["volume"].where(missing)
            given = cells.notna() & (cells.astype("string").str.strip() != "")
            flag(given, lambda m: "volume: not a number (" + _shown(raw.loc[m, "volume"], 20) + ")")
    prices_ok = np.isfinite(frame[list(FEATURES)]).all(axis=1)
    breaks = ohlc_breaks(frame["open"], frame["high"], frame["low"], frame["close"])
    for rule in ("high_below_top", "low_above_bottom"):  # high below low breaks one of these too
        flag(prices_ok & breaks[rule], OHLC_RULES[rule])
    if "ticker" in frame.columns and "date" in frame.columns:
        if codes is None:
            codes = pd.factorize(frame["ticker"])[0]
        dup = pd.Series(_repeated_keys(codes, frame["date"]), index=frame.index) & frame["date"].notna()
        flag(dup, "duplicate (ticker, date)")
    return reasons, flagged


def _repeated_keys(codes: np.ndarray, dates: pd.Series) -> np.ndarray:
    """True for every row whose (ticker, date) an earlier row already has: ``DataFrame.duplicated``
    with keep='first', on integer ticker codes (faster than hashing string pairs; missing tickers
    share one code; no sort at all when the rows already come ticker by ticker in date order)."""
    days = dates.to_numpy(dtype="datetime64[ns]").view(np.int64)  # NaT is one value, as for duplicated
    # the usual file needs no sort; otherwise a stable one (equal keys keep their row order)
    order = None if in_ticker_date_order(codes, days) else np.lexsort((days, codes))
    if order is not None:
        codes, days = codes[order], days[order]
    repeated = np.concatenate([[False], (codes[1:] == codes[:-1]) & (days[1:] == days[:-1])])
    if order is None:
        return repeated
    out = np.empty_like(repeated)
    out[order] = repeated
    return out


def in_ticker_date_order(codes: np.ndarray, days: np.ndarray) -> bool:
    """Rows come ticker by ticker (ticker codes never decrease: with codes in order of first
    appearance, grouped; with sorted codes, also in ticker order), each ticker's dates never
    decreasing (days: int64 nanoseconds)."""
    step = np.diff(codes)
    return bool((step >= 0).all() and (np.diff(days)[step == 0] >= 0).all())


def _sort_rows(frame: pd.DataFrame, codes: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """By ticker then date (stable; no sort when the rows already are in that order), and the
    rows' ticker codes in the new order. codes: sorted codes (numbering the sorted ticker names), so
    rows in code order are in ticker order."""
    days = frame["date"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    if in_ticker_date_order(codes, days):
        return frame.reset_index(drop=True), codes
    order = np.lexsort((days, codes))  # stable: rows with equal keys keep their order
    return frame.take(order).reset_index(drop=True), codes[order]


def _shown(values: pd.Series, width: int) -> pd.Series:
    """Raw cells as text for messages; missing cells read 'missing' (pandas keeps them NaN,
    which would turn the whole reason into NaN)."""
    return values.astype(str).str.slice(0, width).fillna("missing")


def _describe(frame: pd.DataFrame, raw: pd.DataFrame, reasons: pd.Series) -> str:
    parts = []
    sources = raw.attrs.get(ROW_SOURCES)  # a folder's files: (first row, file name) each
    for index, reason in reasons.head(MAX_LISTED_ISSUES).items():
        ticker = raw.at[index, "ticker"]
        date = frame.at[index, "date"]
        when = date.strftime("%Y-%m-%d") if pd.notna(date) else str(raw.at[index, "date"])
        where = f"row {index}"
        if sources and isinstance(index, int | np.integer):
            first, name = sources[bisect.bisect_right([s for s, _ in sources], int(index)) - 1]
            where = f"file {name} row {int(index) - first}"
        parts.append(f"ticker {ticker} date {when} ({where}): {reason}")
    more = len(reasons) - MAX_LISTED_ISSUES
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _check_min_rows(
    frame: pd.DataFrame, codes: np.ndarray, names: np.ndarray, min_rows: int, bad_rows: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """Tickers with fewer than min_rows rows: an error, or (``drop``) left out with a warning.
    codes: each row's ticker code, numbering `names` (the tickers in sorted order)."""
    counts = np.bincount(codes, minlength=len(names))
    short = (counts > 0) & (counts < min_rows)  # a name with no row left (every row bad) is no ticker
    if not short.any():
        return frame, codes
    listing = ", ".join(f"{t} has {n}" for t, n in zip(names[short], counts[short], strict=True))
    message = f"data: too few rows for lookback + horizon ({min_rows} needed): {listing}"
    if bad_rows == "fail" or short.sum() == (counts > 0).sum():
        raise DataError(message)
    log.warning("dropped %d ticker(s): %s", int(short.sum()), message)
    keep = ~short[codes]
    return frame[keep].reset_index(drop=True), codes[keep]


def require_rows(frame: pd.DataFrame, min_rows: int, bad_rows: str = "fail") -> pd.DataFrame:
    """A validated frame's tickers with fewer than `min_rows` rows (after any cut by date or ticker):
    an error naming them, or (``drop``) left out with a warning naming them."""
    codes, names = pd.factorize(frame["ticker"], sort=True)
    return _check_min_rows(frame, codes, np.asarray(names, dtype=object), min_rows, bad_rows)[0]


def find_split_jumps(frame: pd.DataFrame, codes: np.ndarray | None = None) -> pd.DataFrame:
    """Rows whose open jumped from the previous close by about a stock-split ratio.

    frame: each ticker's rows in date order; codes: each row's ticker as an integer, -1 for none
    (computed when not given). Returns columns ticker, date, ratio (previous close / open, >1 for a
    forward split).
    """
    if codes is None:
        codes = pd.factorize(frame["ticker"])[0]
    close = frame["close"].to_numpy(dtype=np.float64)
    # each row's previous close of the same ticker (NaN on its first row): rows grouped by ticker,
    # in their order within each ticker, unless they already come ticker by ticker
    order = None if (np.diff(codes) >= 0).all() else np.argsort(codes, kind="stable")
    grouped, closes = (codes, close) if order is None else (codes[order], close[order])
    previous = np.full(len(frame), np.nan)
    same = (grouped[1:] == grouped[:-1]) & (grouped[1:] >= 0)
    previous[1:][same] = closes[:-1][same]
    if order is not None:
        previous[order] = previous.copy()
    ratio = previous / frame["open"].to_numpy(dtype=np.float64)
    # the few ratios inside a (slightly widened) band around a target, found in one sorted lookup,
    # then held to the rule itself: |ratio / target - 1| < SPLIT_TOLERANCE for some target
    targets = np.sort([t for r in SPLIT_RATIOS for t in (r, 1.0 / r)])
    edges = np.stack([targets * (1 - SPLIT_TOLERANCE) * (1 - 1e-9), targets * (1 + SPLIT_TOLERANCE) * (1 + 1e-9)])
    bounds = edges.T.ravel()  # lo, hi of each target in turn
    assert (np.diff(bounds) > 0).all(), "split bands must not overlap for the lookup below"
    candidates = np.flatnonzero(np.searchsorted(bounds, ratio) % 2 == 1)  # NaN sorts past every edge
    near = np.zeros(len(frame), dtype=bool)
    near[candidates] = (np.abs(ratio[candidates, None] / targets - 1.0) < SPLIT_TOLERANCE).any(axis=1)
    hits = frame.loc[near, ["ticker", "date"]].copy()
    hits["ratio"] = ratio[near]
    return hits.reset_index(drop=True)


def _handle_split_jumps(frame: pd.DataFrame, splits: str, codes: np.ndarray) -> pd.DataFrame:
    jumps = find_split_jumps(frame, codes)
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
            "%d jump(s) look like unadjusted splits (pass adjusted prices, or --splits adjust: data.splits in the "
            "training settings): %s",
            len(jumps),
            listing,
        )
        return frame
    frame = frame.copy()
    for row in jumps.itertuples():
        snapped = min((r for r in SPLIT_RATIOS for r in (r, 1.0 / r)), key=lambda r: abs(row.ratio / r - 1))
        earlier = (frame["ticker"] == row.ticker) & (frame["date"] < row.date)
        frame.loc[earlier, list(FEATURES)] /= snapped
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
