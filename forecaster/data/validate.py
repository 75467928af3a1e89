"""Validate daily OHLC(V) bars as one tidy long frame: every rule of forecaster.data.rules, row by row.

The frame every other module receives: columns ``date, ticker, open, high, low, close
[, volume]``, ``date`` as datetime64 (no time part, not after tomorrow), sorted by ticker then date,
one row per (ticker, date), every ticker a symbol by `rules.check_ticker` and spelled one way,
every price a finite number in [MIN_PRICE, MAX_PRICE], high/low consistent with open/close.
Dates given as text must be ISO (``YYYY-MM-DD``, optionally with a time) unless a format is
declared: a day-first file read as month-first would swap day and month without a sound.
Reading files lives in forecaster.data.files, stock splits in forecaster.data.stock_splits, the
calendar cut in forecaster.data.date_split (their names are importable from here, as before).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from forecaster.config import BAD_ROWS, FEATURES, SPLITS, check_choice
from forecaster.data.date_split import DateSplit, split_by_date
from forecaster.data.files import REQUIRED_COLUMNS, ROW_SOURCES, lowercase_columns, read_ohlc_file, read_ohlc_path
from forecaster.data.rules import (
    ISO_DATE,
    MAX_LISTED_ISSUES,
    MAX_PRICE,
    MIN_PRICE,
    OHLC_RULES,
    accepted_prices,
    case_clashes,
    latest_bar_day,
    ohlc_breaks,
    parse_day,
    ticker_problem,
)
from forecaster.data.stock_splits import find_split_jumps, handle_split_jumps
from forecaster.errors import DataError, one_line

__all__ = [  # the frame's rules, and the names callers imported from here before the split
    "DateSplit",
    "find_split_jumps",
    "in_ticker_date_order",
    "parse_dates",
    "parse_day",
    "read_ohlc_file",
    "read_ohlc_path",
    "require_rows",
    "row_problems",
    "split_by_date",
    "validate_ohlc",
]

log = logging.getLogger(__name__)


def validate_ohlc(
    frame: pd.DataFrame,
    bad_rows: str = "fail",
    min_rows: int = 1,
    splits: str | None = "warn",
    date_format: str | None = None,
) -> pd.DataFrame:
    """Check every rule of the tidy frame and return a clean, sorted copy.

    bad_rows: ``fail`` raises a DataError naming ticker and date of the first bad rows;
    ``drop`` removes them and logs a warning with the count. Nothing is changed silently.
    A bad row: a price that is no finite number in [MIN_PRICE, MAX_PRICE], high/low inconsistent
    with open/close, a date that does not parse or is after tomorrow (UTC), a ticker that is not a
    symbol (`rules.check_ticker`), a repeated (ticker, date).
    Tickers: spaces around one are stripped with a warning counting them; one ticker spelled in
    two cases (AAPL, aapl) is an error even with ``drop`` (which spelling is meant is not known).
    min_rows: tickers with fewer rows are an error (``fail``) or dropped with a warning.
    splits: what to do with jumps that look like unadjusted splits: ``warn``, ``fail`` or
    ``adjust`` (back-adjust earlier prices by the split ratio, logged per ticker and date); None:
    no check, for bars adjusted at the source (the bundled sample, yfinance's), where a check can only
    take a real fall near a split factor for a split (AAPL 2000-09-29, -52%, a ratio of 1.898).
    date_format: the layout of text dates (strptime codes, e.g. ``%d/%m/%Y``); None = ISO only.
    A column where no date parses is an error even with ``drop``: the layout is wrong, not the rows.
    """
    frame = frame.set_axis(lowercase_columns(frame.columns, "the data"), axis=1)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"data: missing column(s) {missing}; found {list(frame.columns)}")
    check_choice("bad_rows", bad_rows, BAD_ROWS)
    if splits is not None:
        check_choice("splits", splits, SPLITS)
    if frame.empty:
        raise DataError("data: no rows")
    keep = [*REQUIRED_COLUMNS] + (["volume"] if "volume" in frame.columns else [])
    frame = frame[keep]  # copy-on-write (pandas 3): the caller's frame is never changed below
    if not frame.index.is_unique:  # e.g. pd.concat of frames: messages name rows by their position then
        frame = frame.reset_index(drop=True)
    raw = frame.copy(deep=False)  # the cells as read, for messages; shares the data until frame's change
    frame["ticker"] = _stripped_tickers(frame["ticker"])
    frame["date"] = parse_dates(frame["date"], date_format)
    for column in (*FEATURES, *(["volume"] if "volume" in frame.columns else [])):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")

    codes, names = pd.factorize(frame["ticker"], sort=True)  # once: sorted codes number the sorted names
    names = np.asarray(names, dtype=object)
    clashes = case_clashes(n for n in names if ticker_problem(n) is None)
    if clashes:
        listing = "; ".join(" and ".join(repr(n) for n in group) for group in clashes[:MAX_LISTED_ISSUES])
        raise DataError(
            f"data: one ticker spelled in two cases would be two series: {listing}; write each ticker one way"
        )
    reasons, bad = _row_problems(frame, raw, codes, names)
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
    frame, codes = _check_min_rows(frame, codes, names, min_rows, bad_rows)
    if splits is not None:
        frame = handle_split_jumps(frame, splits, codes)
    if frame.empty:
        raise DataError("data: no valid rows left")
    # the rows are sorted and renumbered: where they came from no longer applies (a new dict: the
    # caller's frame keeps its own)
    frame.attrs = {k: v for k, v in frame.attrs.items() if k != ROW_SOURCES}
    return frame


def _stripped_tickers(tickers: pd.Series) -> pd.Series:
    """Ticker cells as text without the spaces around them (a CSV written with ', ' between cells),
    with a warning counting the cells changed; what is left is held to `rules.check_ticker`."""
    text = tickers.astype("string")
    stripped = text.str.strip()
    padded = (text != stripped).fillna(False).to_numpy(dtype=bool)
    if padded.any():
        example = text[padded].iloc[0]
        log.warning(
            "stripped the spaces around %d ticker cell(s) (e.g. %r -> %r); a ticker is one symbol",
            int(padded.sum()),
            example,
            example.strip(),
        )
    return stripped


def row_problems(frame: pd.DataFrame, raw: pd.DataFrame | None = None) -> pd.Series:
    """One string per row: '' when the row is good, else its problems joined by '; ' (vectorised).

    frame: typed columns (prices float64, ``date`` datetime64 with NaT for unparseable cells);
    ``ticker`` and ``date`` are checked only when present, so a single history without them
    can be checked too. raw: the cells as read, quoted in the reasons (default: frame).
    """
    return _row_problems(frame, raw)[0]


def _row_problems(
    frame: pd.DataFrame, raw: pd.DataFrame | None, codes: np.ndarray | None = None, names: np.ndarray | None = None
) -> tuple[pd.Series, np.ndarray]:
    """`row_problems`, and the rows with a problem as a boolean array (comparing every reason of a
    large frame with '' cost a tenth of its validation). codes: each row's ticker as an integer
    (-1 for a missing one) numbering `names`, when the caller has them."""
    raw = frame if raw is None else raw
    reasons = pd.Series("", index=frame.index, dtype=object)
    flagged = np.zeros(len(frame), dtype=bool)

    def flag(mask: pd.Series | np.ndarray, text: str | Callable[[pd.Series], pd.Series]) -> None:
        """Add a reason to the flagged rows; a callable builds the text for those rows only (building
        it for every row of a clean frame cost most of the validation time of a large file)."""
        mask = (mask if isinstance(mask, pd.Series) else pd.Series(mask, index=frame.index)).fillna(False).astype(bool)
        if mask.any():
            add = text(mask) if callable(text) else text
            reasons[mask] = reasons[mask] + np.where(reasons[mask] == "", "", "; ") + add
            flagged[mask.to_numpy()] = True

    if "ticker" in frame.columns:
        if codes is None or names is None:
            codes, found = pd.factorize(frame["ticker"])
            names = np.asarray(found, dtype=object)
        flag(frame["ticker"].isna() | (frame["ticker"] == ""), "ticker is empty")
        # the symbol rule once per distinct ticker, not per row
        why = {code: problem for code, name in enumerate(names) if name != "" and (problem := ticker_problem(name))}
        if why:
            text = np.array([f"ticker: {n!r} is not a ticker symbol: {why.get(c, '')}" for c, n in enumerate(names)])
            rows = codes
            flag(np.isin(rows, list(why)), lambda m: pd.Series(text[rows[m.to_numpy()]], index=m.index[m]))
    if "date" in frame.columns:
        flag(frame["date"].isna(), lambda m: "date: unparseable " + _shown(raw.loc[m, "date"], 30))
        latest = latest_bar_day()
        flag(
            frame["date"] > pd.Timestamp(latest),
            f"date: after tomorrow (bars are observed prices; the latest accepted is {latest}, by the UTC date)",
        )
    for column in FEATURES:
        values = frame[column]

        def not_finite(m: pd.Series, c: str = column) -> pd.Series:
            return f"{c}: not a finite number (" + _shown(raw.loc[m, c], 20) + ")"

        def not_positive(m: pd.Series, c: str = column, v: pd.Series = values) -> pd.Series:
            return f"{c}: not positive (" + v[m].astype(str) + ")"

        def out_of_range(m: pd.Series, c: str = column, v: pd.Series = values) -> pd.Series:
            bounds = f"({MIN_PRICE:g} to {MAX_PRICE:g})"
            return f"{c}: " + v[m].map("{:g}".format) + f" is outside the accepted prices {bounds}"

        finite = np.isfinite(values)
        flag(~finite, not_finite)
        flag(finite & (values <= 0), not_positive)
        flag((values > 0) & finite & ~accepted_prices(values), out_of_range)
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
        assert codes is not None
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
            raise DataError(f"date_format: cannot read dates with {date_format!r}: {one_line(exc)}") from exc
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
