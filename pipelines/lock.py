"""One pipeline run at a time, across processes and machines.

PostgreSQL advisory lock when a database is configured (explicitly, or the MLflow backend
store when it is PostgreSQL); else a file lock. The lock dies with its session or process,
so a killed run never leaves it held.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable 31-bit key per model name for pg_advisory_lock."""
    return zlib.crc32(f"forecaster-retrain:{name}".encode()) & 0x7FFFFFFF


def database_url(explicit: str | None, tracking_uri: str | None) -> str | None:
    if explicit:
        return explicit
    if tracking_uri and tracking_uri.startswith(("postgresql://", "postgresql+psycopg2://", "postgres://")):
        return tracking_uri.replace("postgresql+psycopg2://", "postgresql://")
    return None


@contextmanager
def pipeline_lock(name: str, db_url: str | None, lock_file: str, wait: bool) -> Iterator[bool]:
    """Yields True when this process holds the lock, False when busy and not waiting."""
    if db_url:
        with _advisory_lock(name, db_url, wait) as held:
            yield held
        return
    path = Path(lock_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@contextmanager
def _advisory_lock(name: str, db_url: str, wait: bool) -> Iterator[bool]:
    import psycopg2

    connection = psycopg2.connect(db_url)
    connection.autocommit = True
    key = lock_key(name)
    try:
        with connection.cursor() as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
                held = True
            else:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                held = bool(cursor.fetchone()[0])
        yield held
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        connection.close()
