"""The rules of a daily bar, written once: consistent OHLC, plausible prices, a ticker symbol, a date.

`forecaster.data.validate` applies them to whole frames, the service's request schema to one bar (so its
error names the bar) and its fast path to whole requests at once; yfinance and the retrain settings
check their tickers here too; all of them call these functions, so the rules cannot drift apart.
The price rules are numpy only and work on scalars, rows or columns.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

# How many problems one message lists before it says "and N more".
MAX_LISTED_ISSUES = 5

# rule name -> how a broken bar reads; in the order a bar is checked
OHLC_RULES: dict[str, str] = {
    "high_below_low": "high below low",
    "high_below_top": "high below max(open, close)",
    "low_above_bottom": "low above min(open, close)",
}


def ohlc_breaks(open_: Any, high: Any, low: Any, close: Any) -> dict[str, np.ndarray]:
    """rule name -> True where a bar breaks it (elementwise over scalars, rows or columns)."""
    return {
        "high_below_low": np.less(high, low),
        "high_below_top": np.less(high, np.maximum(open_, close)),
        "low_above_bottom": np.greater(low, np.minimum(open_, close)),
    }


def ohlc_consistent(open_: Any, high: Any, low: Any, close: Any) -> bool:
    """True when every bar keeps every rule."""
    return not any(np.any(broken) for broken in ohlc_breaks(open_, high, low, close).values())


# Prices a window may hold. Windows are float32 and the transform takes log ratios between
# prices of one window: 1e-50 becomes 0 and 1e39 becomes inf in float32, and either turns the
# forecast into NaN. Inside these bounds every ratio is at most 1e15 (a log of about 35).
MIN_PRICE = 1e-6
MAX_PRICE = 1e9


def accepted_prices(values: np.ndarray) -> np.ndarray:
    """True where a price is one the model takes: a number in [MIN_PRICE, MAX_PRICE] (NaN compares
    False, so it is refused too). The rule of a model's windows (`Forecaster.window`, batch scoring)
    and of the service's bars."""
    return (values >= MIN_PRICE) & (values <= MAX_PRICE)


# ---------------------------------------------------------------- tickers
#
# One rule for every place a ticker enters: a file's rows, yfinance's symbols, the retrain settings
# and the service's requests. A ticker is 1 to TICKER_MAX_LENGTH printable ASCII characters:
# letters, digits and TICKER_PUNCTUATION (Yahoo's classes and suffixes: BRK-B, 7203.T, ^GSPC,
# EURUSD=X, M&M.NS; the underscore of a file's own series names), starting with a letter, a digit
# or ^. Refused, never repaired: spaces ("BRK B"), list separators ("A,B"), slashes and a leading
# dot (a cache file's name, ".X"), and any invisible or control character ("MSFT\u200b" prints
# like MSFT but is another key). Case is kept as given (a file may name its own series in any
# case); see `case_clashes` for two spellings of one ticker, and forecaster.data.yahoo, which
# asks Yahoo for the upper-case spelling (logged when it differs).
TICKER_MAX_LENGTH = 32
TICKER_PUNCTUATION = ".-^=_&"
_TICKER_CHARS = frozenset(string.ascii_letters + string.digits + TICKER_PUNCTUATION)
_INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs", "Mn", "Me")  # control, format, spaces, marks


def ticker_problem(text: object) -> str | None:
    """Why `text` is not a ticker symbol, in words, or None when it is one (the rule above)."""
    if not isinstance(text, str):
        return f"expected text, got {type(text).__name__}"
    if not text:
        return "empty"
    if len(text) > TICKER_MAX_LENGTH:
        return f"longer than {TICKER_MAX_LENGTH} characters"
    if text != text.strip():
        return "spaces around it"
    for char in text:
        if char in _TICKER_CHARS:
            continue
        code = f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed')}"
        if char == " ":
            return "a space (one ticker per cell or item)"
        if unicodedata.category(char) in _INVISIBLE:
            return f"an invisible or control character ({code})"
        if not char.isascii():
            return f"a character that is not ASCII ({code})"
        return f"the character {char!r} (allowed: letters, digits and {' '.join(TICKER_PUNCTUATION)})"
    if not (text[0].isalnum() or text[0] == "^"):
        return "it must start with a letter, a digit or ^"
    return None


def check_ticker(text: object, field: str = "") -> str:
    """`text` when it is a ticker symbol (unchanged: no case folding, no stripping); otherwise a
    ValueError naming `field` (when given), the text as Python writes it (so an invisible
    character shows) and the reason."""
    problem = ticker_problem(text)
    if problem is not None:
        prefix = f"{field}: " if field else ""
        raise ValueError(f"{prefix}{text!r} is not a ticker symbol: {problem}")
    assert isinstance(text, str)
    return text


def case_clashes(names: Iterable[str]) -> list[list[str]]:
    """Groups of tickers that differ only in case (AAPL, aapl): one symbol spelled two ways, which
    would silently become two series. Each group sorted; groups in order of their first name."""
    spellings: dict[str, set[str]] = {}
    for name in names:
        spellings.setdefault(name.upper(), set()).add(name)
    return [sorted(group) for group in spellings.values() if len(group) > 1]


# ---------------------------------------------------------------- dates
#
# An ISO date, optionally followed by an ISO time and offset; group 1 is the (local) date, which is
# all a daily bar keeps, so offsets need no conversion.
ISO_DATE = r"^(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
_ISO_DATE = re.compile(ISO_DATE)


def parse_day(value: object, name: str = "") -> pd.Timestamp:
    """The one parser of a single date, for options (``--from``, ``--as-of``, ``start``) and the
    service's wire: ISO text ``YYYY-MM-DD`` (optionally with a time, dropped) or a date/timestamp,
    as a midnight Timestamp. Anything else (``01/02/2013``, which is ambiguous, ``1577836800``
    epoch seconds, ``yesterday``, ``2013-13-01``, a number, empty) is a ValueError naming `name`
    (when given). A whole column of a file is read by `forecaster.data.validate.parse_dates`, with
    the same ISO_DATE pattern."""
    prefix = f"{name}: " if name else ""
    if isinstance(value, (pd.Timestamp, dt.date, np.datetime64)):
        stamp = pd.Timestamp(value)
    else:
        match = _ISO_DATE.match(value.strip()) if isinstance(value, str) else None
        try:
            stamp = pd.Timestamp(dt.date.fromisoformat(match.group(1))) if match else pd.NaT
        except ValueError:  # 2013-13-01: the right layout, not a calendar date
            raise ValueError(f"{prefix}{value!r} is not a calendar date") from None
        except OverflowError:  # pandas' range ends in 2262
            raise ValueError(f"{prefix}{value!r} is outside the dates this library handles") from None
    if pd.isna(stamp):
        raise ValueError(f"{prefix}expected a date YYYY-MM-DD, got {value!r}")
    return stamp.tz_localize(None).normalize() if stamp.tz is not None else stamp.normalize()


def utc_today() -> dt.date:
    """Today's date in UTC (tests replace it to move the clock)."""
    return dt.datetime.now(dt.UTC).date()


def latest_bar_day() -> dt.date:
    """The latest date a bar may carry: tomorrow, by the UTC date. Bars are observed prices, so a
    later one is a typo (2099 for 2009) or a forecast passed off as data. The day of slack is for
    exchanges east of UTC (Tokyo, Sydney), whose session is already dated tomorrow in UTC evenings,
    and for clients ahead of the server's clock. The rule of a file's rows and of a request's bars."""
    return utc_today() + dt.timedelta(days=1)
