"""Forecast dates: the next trading sessions of an exchange (weekends and holidays skipped)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd


@lru_cache(maxsize=4)
def get_calendar(exchange: str) -> xcals.ExchangeCalendar:
    return xcals.get_calendar(exchange, start="1990-01-02")


def next_sessions(exchange: str, after: dt.date, count: int) -> list[dt.date]:
    """The `count` trading sessions strictly after `after`.

    Past the calendar's last known session (about a year ahead), plain weekdays are used.
    """
    calendar = get_calendar(exchange)
    day = pd.Timestamp(after)
    last_known = calendar.last_session
    if day < last_known:
        start = calendar.date_to_session(day, direction="next")
        if start == day:
            start = calendar.next_session(start)
        sessions = calendar.sessions_window(start, min(count, calendar.sessions_distance(start, last_known)))
        dates = [s.date() for s in sessions]
    else:
        dates = []
    cursor = pd.Timestamp(dates[-1]) if dates else day
    while len(dates) < count:
        cursor = cursor + pd.offsets.BDay(1)
        dates.append(cursor.date())
    return dates
