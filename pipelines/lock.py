"""One pipeline run (or rollback) at a time per model and tracking store, across processes, users and machines.

The lock is keyed to the store the runs write to, never to the working directory or the user: a
PostgreSQL advisory lock when a database is configured (explicitly, or the MLflow backend store
when it is PostgreSQL); else a file lock beside a SQLite store (``<db>.retrain-<model>.lock``), or,
for other stores (a tracking server, a file store), in a machine-wide folder (``lock_dir``,
default ``<temp dir>/forecaster-locks``, open to every user) named by a hash of the store's
normalised URI: scheme and host case, ``localhost`` / ``127.0.0.1`` / this host's own addresses,
a host name and the address it resolves to, default ports and a trailing slash all name one
store, and no password enters the key. ``lock_file`` overrides the file's path. Either lock dies
with its session or process, so a killed run never leaves it held.

A file lock only excludes processes on one machine (or containers sharing the folder); runs on
several hosts against one tracking server need ``lock_database_url`` (the advisory lock).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
import socket
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ResolveTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

from filelock import FileLock, Timeout

from forecaster.errors import ForecasterError, one_line, redact, uri_secrets
from forecaster.registry.store import sqlite_path
from forecaster.registry.tracking import POSTGRES_SCHEMES, STORE_CLIENT_DEFAULTS

log = logging.getLogger(__name__)
POLL_S = 0.2  # how often a bounded wait retries a PostgreSQL advisory lock
RESOLVE_TIMEOUT_S = 2.0  # a host name's lookup for the lock key; past it the name itself is the key
DEFAULT_PORTS = {"http": 80, "https": 443}
THIS_HOST = "127.0.0.1"  # the key's name for every address of this machine (loopback or its own)
LOCK_FILE_MODE = 0o666  # lock files any user of the machine can open (the folder is sticky, like /tmp)


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


def lock_target(
    name: str,
    tracking_uri: str,
    lock_database_url: str | None,
    lock_file: str | None,
    lock_dir: str | None = None,
) -> LockTarget:
    """The lock of model `name` on the store at `tracking_uri` (see the module docstring)."""
    db_url = database_url(lock_database_url, tracking_uri)
    if db_url:
        return LockTarget(database_url=db_url)
    if lock_file:
        return LockTarget(path=Path(lock_file).resolve())
    return LockTarget(path=derived_lock_file(name, tracking_uri, Path(lock_dir) if lock_dir else shared_lock_dir()))


def derived_lock_file(name: str, tracking_uri: str, folder: Path) -> Path:
    """The lock file of model `name` on a store that is not PostgreSQL."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    db = sqlite_path(tracking_uri)  # sqlite:///relative.db is relative to the working directory
    if db is not None:
        return db.with_name(f"{db.name}.retrain-{safe}.lock")
    digest = hashlib.sha256(store_key(tracking_uri).encode()).hexdigest()[:16]
    return folder / f"retrain-{safe}-{digest}.lock"


def shared_lock_dir() -> Path:
    """The machine-wide folder of lock files: the same for every user and working directory."""
    return Path(tempfile.gettempdir()) / "forecaster-locks"


def store_key(tracking_uri: str) -> str:
    """The store a tracking URI names, one text however it is spelled (see the module docstring)."""
    store = tracking_uri.strip()
    if "://" not in store:  # a bare path is a local file store: the same directory from any cwd
        store = Path(store).resolve().as_uri()
    parts = urlsplit(store)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return "file://" + str(Path(unquote(parts.path)).resolve())
    if scheme in DEFAULT_PORTS:
        host = resolve_host(parts.hostname or "localhost")
        return f"{scheme}://{host}:{parts.port or DEFAULT_PORTS[scheme]}{parts.path.rstrip('/')}"
    return redact(f"{scheme}:{store.split(':', 1)[1]}").rstrip("/")  # other stores: the text, scheme in lower case


def resolve_host(host: str) -> str:
    """The address a host name stands for, as the lock key writes it: THIS_HOST for loopback and this
    machine's own addresses, else the lowest address it resolves to; the name itself when it cannot
    be resolved within RESOLVE_TIMEOUT_S (the lock must not wait on a slow resolver)."""
    addresses = _lookup(host)
    if not addresses:
        return host.lower()
    loopback = any(ipaddress.ip_address(a).is_loopback for a in addresses)
    if loopback or set(addresses) & set(_lookup(socket.gethostname())):
        return THIS_HOST
    return min(addresses)


def _lookup(host: str) -> list[str]:
    """The addresses of `host` (an address is its own), or [] when it does not resolve in time."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lock-resolve")
    try:
        found = pool.submit(socket.getaddrinfo, host, None, proto=socket.IPPROTO_TCP)
        return sorted({str(info[4][0]).split("%")[0] for info in found.result(timeout=RESOLVE_TIMEOUT_S)})
    except (OSError, ResolveTimeout, UnicodeError):
        return []
    finally:
        pool.shutdown(wait=False)


@contextmanager
def pipeline_lock(name: str, target: LockTarget, timeout_s: float | None) -> Iterator[bool]:
    """Yields True when this process holds the lock, False when another holder kept it for
    `timeout_s` seconds (0: try once; None: wait as long as it takes)."""
    if target.database_url:
        with _advisory_lock(name, target.database_url, timeout_s) as held:
            yield held
        return
    assert target.path is not None, "a lock target is a database or a file"
    _make_lock_folder(target.path.parent)
    lock = FileLock(str(target.path), mode=LOCK_FILE_MODE)
    try:
        lock.acquire(timeout=-1 if timeout_s is None else timeout_s)
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def _make_lock_folder(folder: Path) -> None:
    """The folder of a lock file; the shared one open to every user (sticky: none removes another's)."""
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    if folder == shared_lock_dir():
        folder.chmod(0o1777)


@contextmanager
def _advisory_lock(name: str, db_url: str, timeout_s: float | None) -> Iterator[bool]:
    import psycopg2

    try:
        connection = psycopg2.connect(db_url, connect_timeout=connect_timeout_s())
    except psycopg2.Error as exc:  # refused, unknown host, timed out, bad credentials: one line, no trace
        # the driver may quote a piece of a password it misread as the host: hide every piece of it
        message = f"lock_database_url: cannot connect to {db_url} for the pipeline lock: {one_line(exc)}"
        raise ForecasterError(redact(message, uri_secrets(db_url))) from exc
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
