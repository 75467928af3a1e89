"""Fire the pipeline on a cron trigger (APScheduler), one run at a time."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)


CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) = Sunday


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """5 fields (minute hour day month weekday), or 6 with seconds first; weekdays numbered
    as in crontab (0 or 7 = Sunday, 1-5 = Monday to Friday)."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(f"schedule: expected a cron expression of 5 (or 6) fields, got '{expression}'")
    second, minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        second=second,
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=crontab_weekdays(day_of_week),
        timezone=timezone,
    )


def crontab_weekdays(field: str) -> str:
    """A crontab weekday field as day names, because APScheduler 3 numbers weekdays from
    Monday = 0 (its issue #286): '1-5' -> 'mon,tue,wed,thu,fri', '0,6' -> 'sun,sat'."""
    if not any(ch.isdigit() for ch in field):
        return field  # '*', names and name ranges mean the same to both
    days: list[int] = []
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        else:
            low, _, high = span.partition("-")
            first = _weekday_number(low, field)
            last = _weekday_number(high, field) if high else (6 if step_text else first)
            if high and last == 0:
                last = 7  # '5-7' / '5-0': Friday to Sunday
        if step < 1 or last < first:
            raise ValueError(f"schedule: bad weekday field '{field}'")
        days += [d % 7 for d in range(first, last + 1, step)]
    return ",".join(CRON_WEEKDAYS[d] for d in dict.fromkeys(days))


def _weekday_number(text: str, field: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text[:3] in CRON_WEEKDAYS:
        return CRON_WEEKDAYS.index(text[:3])
    raise ValueError(f"schedule: bad weekday '{text}' in '{field}' (expected 0-7 or sun..sat)")


def run_on_schedule(
    job: Callable[[], object], expression: str, timezone: str, max_runs: int | None = None, run_on_start: bool = False
) -> int:
    """Block and run `job` on the trigger; a failed run is logged and the next starts clean.
    Returns the number of runs when `max_runs` ends the loop."""
    # APScheduler's own INFO lines ("Added job ...", "Running job ...") repeat what ours say, in its terms
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    scheduler = BackgroundScheduler(timezone=timezone)
    runs = {"count": 0}
    enough = threading.Event()

    def finished(event: JobExecutionEvent) -> None:
        runs["count"] += 1
        if event.exception is not None:
            log.error("scheduled run failed; nothing was promoted: %s", event.exception)
        if max_runs is not None and runs["count"] >= max_runs:
            enough.set()  # shut down from the main thread, not from inside the scheduler's own loop

    scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    trigger = cron_trigger(expression, timezone)
    first = {"next_run_time": dt.datetime.now(trigger.timezone)} if run_on_start else {}
    scheduler.add_job(
        job, trigger, id="retrain", name="retrain", max_instances=1, coalesce=True, misfire_grace_time=300, **first
    )
    log.info(
        "retraining scheduled: '%s' (%s); next run at %s",
        expression,
        timezone,
        "now" if run_on_start else trigger.get_next_fire_time(None, dt.datetime.now(trigger.timezone)),
    )
    scheduler.start()
    try:
        while not enough.wait(timeout=1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
    return runs["count"]
