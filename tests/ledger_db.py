"""Forecast-ledger databases for tests: a SQLite file, or a schema of its own in the local
PostgreSQL (127.0.0.1:5432, trust auth, database `test`), dropped afterwards; skipped with the
reason when that server cannot be reached."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
KINDS = ("sqlite", "postgresql")


def postgres_or_skip() -> None:
    import psycopg2

    try:
        psycopg2.connect(POSTGRES, connect_timeout=3).close()
    except psycopg2.Error as exc:
        pytest.skip(f"local PostgreSQL not reachable at 127.0.0.1:5432/test: {str(exc).strip()}")


@contextmanager
def ledger_database(kind: str, folder: Path) -> Iterator[str]:
    """The URI of an empty ledger database of `kind` (see KINDS)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'ledger.db'}"
        return
    postgres_or_skip()
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    _execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        _execute(f"DROP SCHEMA {schema} CASCADE")


def _execute(statement: str) -> None:
    import psycopg2

    connection = psycopg2.connect(POSTGRES, connect_timeout=3)
    try:
        with connection, connection.cursor() as cursor:  # commits
            cursor.execute(statement)
    finally:
        connection.close()
