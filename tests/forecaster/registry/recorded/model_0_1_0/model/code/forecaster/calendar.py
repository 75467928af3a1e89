"""Forecast dates: the next trading sessions of an exchange (weekends and holidays skipped).

The one owner of "the H trading sessions after a date": the service's responses and the offline
batch forecasts (forecaster.batch) date their steps here, so both give the same dates.
exchange_calendars is imported when a calendar is first needed: the command line reads
DEFAULT_EXCHANGE from here without paying for it.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import TYPE_CHECKING

from forecaster.errors import DataError

if TYPE_CHECKING:
    import exchange_calendars as xcals

# The first day the calendars know; the service refuses request bars older than this.
CALENDAR_START = dt.date(1990, 1, 2)
DEFAULT_EXCHANGE = "XNYS"
ONE_DAY = dt.timedelta(days=1)


@lru_cache(maxsize=4)
def get_calendar(exchange: str) -> xcals.ExchangeCalendar:
    import exchange_calendars as xcals

    return xcals.get_calendar(exchange, start=CALENDAR_START.isoformat())


def check_exchange(exchange: str) -> str:
    """The name if exchange_calendars knows it (``XNYS``, ``XLON``, ...), else a ValueError naming it.

    For entry points that should fail before loading data; `next_sessions` itself lets the
    library's error through, as the service has always seen it.
    """
    from exchange_calendars.errors import InvalidCalendarName

    try:
        get_calendar(exchange)
    except InvalidCalendarName:
        raise ValueError(
            f"exchange: '{exchange}' is not an exchange calendar (e.g. XNYS, XNAS, XLON, XTKS; "
            "see exchange_calendars.get_calendar_names())"
        ) from None
    return exchange


def next_sessions(exchange: str, after: dt.date, count: int) -> list[dt.date]:
    """The `count` trading sessions strictly after `after`, for any date.

    Outside the calendar's known range (before its first session, or past its last one, about a
    year ahead) plain weekdays are used: a server-side history may be older than the calendar.
    """
    import pandas as pd

    calendar = get_calendar(exchange)
    first, last = calendar.first_session.date(), calendar.last_session.date()
    dates: list[dt.date] = []
    day = after
    while len(dates) < count:
        following = _next_weekday(day)
        if day < last and following >= first:
            start = max(day + ONE_DAY, first)  # holds `last`, so never empty
            known = calendar.sessions_in_range(pd.Timestamp(start), pd.Timestamp(last))
            dates.extend(s.date() for s in known[: count - len(dates)])
        else:
            dates.append(following)
        day = dates[-1]
    return dates


def _next_weekday(day: dt.date) -> dt.date:
    try:
        day += ONE_DAY
        while day.weekday() >= 5:
            day += ONE_DAY
    except OverflowError as exc:
        raise DataError(f"date: no trading day can follow {day}") from exc
    return day
