"""One pipeline run (or rollback) at a time per model and tracking store, across processes and machines.

The lock is keyed to the store the runs write to, never to the working directory: a PostgreSQL
advisory lock when a database is configured (explicitly, or the MLflow backend store when it is
PostgreSQL); else a file lock beside a SQLite store (``<db>.retrain-<model>.lock``), or, for
other stores (a tracking server, a file store), under a per-user state directory named by a
hash of the store's redacted URI. ``lock_file`` overrides the file's path. Either lock dies with
its session or process, so a killed run never leaves it held.

A file lock only excludes processes on one machine; runs on several hosts against one tracking
server need ``lock_database_url``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from filelock import FileLock, Timeout

from forecaster.errors import ForecasterError, one_line, redact
from forecaster.registry.tracking import POSTGRES_SCHEMES, STORE_CLIENT_DEFAULTS

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often a bounded wait retries a PostgreSQL advisory lock


def lock_key(name: str) -> int:
    """A stable 31-bit key per model name for pg_advisory_lock."""
    return zlib.crc32(f"forecaster-retrain:{name}".encode()) & 0x7FFFFFFF


def database_url(explicit: str | None, tracking_uri: str | None) -> str | None:
    """The PostgreSQL URL of the advisory lock: explicit, else a PostgreSQL tracking store, else None;
    in the form libpq reads (postgresql://), whichever PostgreSQL form it was given in."""
    url = explicit or (tracking_uri if tracking_uri and tracking_uri.startswith(POSTGRES_SCHEMES) else None)
    if url is None:
        return None
    scheme = next((s for s in POSTGRES_SCHEMES if url.startswith(s)), None)
    return url if scheme is None else "postgresql://" + url.removeprefix(scheme)


@dataclass(frozen=True)
class LockTarget:
    """Where the lock of one model on one store lives: a database (advisory lock) or a file."""

    database_url: str | None = None
    path: Path | None = None

    def describe(self) -> str:
        """For log lines and errors; never the database password."""
        if self.database_url:
            found = urlparse(self.database_url)
            return f"postgres advisory lock on {found.hostname}:{found.port or 5432}{found.path}"
        return str(self.path)


def lock_target(name: str, tracking_uri: str, lock_database_url: str | None, lock_file: str | None) -> LockTarget:
    """The lock of model `name` on the store at `tracking_uri` (see the module docstring)."""
    db_url = database_url(lock_database_url, tracking_uri)
    if db_url:
        return LockTarget(database_url=db_url)
    if lock_file:
        return LockTarget(path=Path(lock_file).resolve())
    return LockTarget(path=derived_lock_file(name, tracking_uri))


def derived_lock_file(name: str, tracking_uri: str) -> Path:
    """The lock file of model `name` on a store that is not PostgreSQL."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if tracking_uri.startswith("sqlite:///"):
        # sqlite:///relative.db is relative to the working directory, as SQLAlchemy reads it
        db = Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]).resolve()
        return db.with_name(f"{db.name}.retrain-{safe}.lock")
    store = tracking_uri.rstrip("/")
    if "://" not in store:  # a bare path is a local file store: the same directory from any cwd
        store = Path(store).resolve().as_uri()
    digest = hashlib.sha256(redact(store).encode()).hexdigest()[:16]
    return state_dir() / f"retrain-{safe}-{digest}.lock"


def state_dir() -> Path:
    """Per-user state directory for lock files: $XDG_STATE_HOME/forecaster/locks (~/.local/state)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "forecaster" / "locks"


@contextmanager
def pipeline_lock(name: str, target: LockTarget, timeout_s: float | None) -> Iterator[bool]:
    """Yields True when this process holds the lock, False when another holder kept it for
    `timeout_s` seconds (0: try once; None: wait as long as it takes)."""
    if target.database_url:
        with _advisory_lock(name, target.database_url, timeout_s) as held:
            yield held
        return
    assert target.path is not None, "a lock target is a database or a file"
    target.path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.path))
    try:
        lock.acquire(timeout=-1 if timeout_s is None else timeout_s)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


@contextmanager
def _advisory_lock(name: str, db_url: str, timeout_s: float | None) -> Iterator[bool]:
    import psycopg2

    try:
        connection = psycopg2.connect(db_url, connect_timeout=connect_timeout_s())
    except psycopg2.Error as exc:  # refused, unknown host, timed out, bad credentials: one line, no trace
        raise ForecasterError(
            f"lock_database_url: cannot connect to {redact(db_url)} for the pipeline lock: {one_line(exc)}"
        ) from exc
    connection.autocommit = True
    key = lock_key(name)
    try:
        with connection.cursor() as cursor:
            if timeout_s is None:
                cursor.execute("SELECT pg_advisory_lock(%s)", (key,))
                held = True
            else:
                held = _try_until(cursor, key, time.monotonic() + timeout_s)
        yield held
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", (key,))
    finally:
        connection.close()


def connect_timeout_s() -> int:
    """Seconds the lock's connection attempt may take: PGCONNECT_TIMEOUT, else the tracking store's
    default for it (a connect without one can hang for minutes on a host that drops packets)."""
    return int(os.environ.get("PGCONNECT_TIMEOUT") or STORE_CLIENT_DEFAULTS["PGCONNECT_TIMEOUT"])


def _try_until(cursor: Any, key: int, deadline: float) -> bool:
    """pg_try_advisory_lock until it succeeds or `deadline` (monotonic) passes; tried at least once."""
    while True:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        if bool(cursor.fetchone()[0]):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(POLL_S, left))
