"""Fire the pipeline on a cron trigger (APScheduler), one run at a time."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)


def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """5 fields (minute hour day month weekday), or 6 with seconds first."""
    fields = expression.split()
    if len(fields) == 5:
        return CronTrigger.from_crontab(expression, timezone=timezone)
    if len(fields) == 6:
        second, minute, hour, day, month, day_of_week = fields
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week,
                           timezone=timezone)
    raise ValueError(f"schedule: expected a cron expression of 5 (or 6) fields, got '{expression}'")


def run_on_schedule(job: Callable[[], object], expression: str, timezone: str, max_runs: int | None = None) -> int:
    """Block and run `job` on the trigger; a failed run is logged and the next starts clean.
    Returns the number of runs when `max_runs` ends the loop."""
    scheduler = BlockingScheduler(timezone=timezone)
    runs = {"count": 0}

    def finished(event: JobExecutionEvent) -> None:
        runs["count"] += 1
        if event.exception is not None:
            log.error("scheduled run failed; nothing was promoted: %s", event.exception)
        if max_runs is not None and runs["count"] >= max_runs:
            scheduler.shutdown(wait=False)

    scheduler.add_listener(finished, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    trigger = cron_trigger(expression, timezone)
    scheduler.add_job(job, trigger, id="retrain", max_instances=1, coalesce=True, misfire_grace_time=300)
    log.info("retraining scheduled: '%s' (%s); next run at %s", expression, timezone,
             trigger.get_next_fire_time(None, dt.datetime.now(trigger.timezone)))
    scheduler.start()
    return runs["count"]
