"""forecaster.data.calendar: the next trading sessions after a date, inside and outside the calendar's range."""

from __future__ import annotations

import datetime as dt

import pytest

from forecaster.data.calendar import CALENDAR_START, check_exchange, get_calendar, next_sessions
from forecaster.errors import DataError

D = dt.date


def test_next_sessions_skip_the_weekend_and_christmas() -> None:
    # Fri 2023-12-22 -> Mon 12-25 is Christmas
    assert next_sessions("XNYS", D(2023, 12, 22), 3) == [D(2023, 12, 26), D(2023, 12, 27), D(2023, 12, 28)]


def test_next_sessions_skip_independence_day() -> None:
    # Fri 2023-06-30 -> Mon 07-03, Tue 07-04 is a holiday
    assert next_sessions("XNYS", D(2023, 6, 30), 3) == [D(2023, 7, 3), D(2023, 7, 5), D(2023, 7, 6)]


def test_next_sessions_are_strictly_after_a_session_and_start_monday_after_a_weekend() -> None:
    assert next_sessions("XNYS", D(2024, 3, 5), 2) == [D(2024, 3, 6), D(2024, 3, 7)]
    assert next_sessions("XNYS", D(2024, 3, 9), 1) == [D(2024, 3, 11)]  # a Saturday


def test_next_sessions_follow_the_exchange() -> None:
    # 2024-05-06 is the Early May bank holiday in London, a session in New York
    assert next_sessions("XLON", D(2024, 5, 3), 1) == [D(2024, 5, 7)]
    assert next_sessions("XNYS", D(2024, 5, 3), 1) == [D(2024, 5, 6)]


def test_before_the_calendar_plain_weekdays_then_sessions() -> None:
    assert get_calendar("XNYS").first_session.date() == CALENDAR_START
    assert next_sessions("XNYS", D(1985, 3, 1), 3) == [D(1985, 3, 4), D(1985, 3, 5), D(1985, 3, 6)]
    # Mon 1990-01-01 is before the first known session: a weekday; then the calendar's sessions
    assert next_sessions("XNYS", D(1989, 12, 29), 3) == [D(1990, 1, 1), D(1990, 1, 2), D(1990, 1, 3)]


def test_past_the_calendar_plain_weekdays() -> None:
    last = get_calendar("XNYS").last_session.date()
    after = next_sessions("XNYS", last, 5)
    assert all(d.weekday() < 5 for d in after) and after[0] > last
    assert all((b - a).days in (1, 3) for a, b in zip([last, *after], after, strict=False))
    straddling = next_sessions("XNYS", last - dt.timedelta(days=7), 10)
    assert last in straddling and straddling == sorted(set(straddling))


def test_no_trading_day_after_the_last_date_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no trading day can follow"):
        next_sessions("XNYS", D(9999, 12, 31), 1)


def test_check_exchange_names_an_unknown_calendar() -> None:
    assert check_exchange("XNYS") == "XNYS"
    with pytest.raises(ValueError, match="exchange: 'NOPE' is not an exchange calendar"):
        check_exchange("NOPE")
