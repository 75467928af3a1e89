"""Where the ledger lives: its URI (default a SQLite file beside the MLflow store), the engine with
bounded waits, the schema created (and later migrated) by the product, and appends.

SQLite runs in WAL mode, so readers (scoring, reports) never block the service's writer and
several service workers can append to one file; PostgreSQL connects and runs every statement
under a timeout. A store that cannot be reached or written raises LedgerError, one line, its
password redacted.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from forecaster.errors import ForecasterError, one_line, redact
from forecaster.monitor import LEDGER_URI_ENV
from forecaster.monitor.migrate import migrate
from forecaster.monitor.schema import SCHEMA_VERSION, forecasts, meta, metadata

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.db"
TIMEOUT_S = 5.0  # longest wait for a connection, a lock or a statement
ERROR_CHARS = 400  # driver errors quote whole statements: one line at most this long


class LedgerError(ForecasterError, ValueError):
    """The ledger store cannot be reached, created or written; names the store (password redacted)."""


def default_uri(tracking_uri: str | None = None) -> str:
    """The ledger beside the MLflow store: ``ledger.db`` in the folder of a SQLite tracking store,
    else in the embedded store's folder (``mlruns/``) under the working directory."""
    from forecaster.registry.store import LOCAL_STORE, SQLITE_PREFIX, resolve_tracking_uri, sqlite_path

    db = sqlite_path(resolve_tracking_uri(tracking_uri))
    folder = db.parent if db is not None else LOCAL_STORE
    return f"{SQLITE_PREFIX}{(folder / LEDGER_FILE).resolve()}"


def resolve_uri(explicit: str | None, tracking_uri: str | None = None) -> str:
    """The ledger URI: explicit (a PostgreSQL one with the installed driver named), else the default."""
    from forecaster.registry.tracking import store_uri

    return store_uri(explicit) if explicit else default_uri(tracking_uri)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _iso(value: dt.date) -> str:
    return value.isoformat()


def _sqlite_time(value: dt.datetime) -> str:
    """As SQLAlchemy's SQLite DATETIME stores it: naive text, here in UTC."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def check_uri(uri: str) -> sa.URL:
    """The parsed URI of a ledger this product can keep (SQLite or PostgreSQL), else a LedgerError
    (a ValueError too) naming it, password redacted."""
    try:
        url = sa.make_url(uri)
    except sa.exc.ArgumentError:
        raise LedgerError(f"ledger: '{redact(uri)}' is not a database URI ({LEDGER_URI_ENV})") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise LedgerError(f"ledger: '{redact(uri)}' is neither SQLite nor PostgreSQL ({LEDGER_URI_ENV})")
    return url


def make_engine(uri: str, timeout_s: float = TIMEOUT_S) -> Engine:
    """An engine for the ledger whose every wait is bounded by `timeout_s`."""
    url = check_uri(uri)
    options: dict[str, Any] = {"json_serializer": _json, "json_deserializer": orjson.loads}
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": timeout_s}, **options)

        @sa.event.listens_for(engine, "connect")
        def _sqlite(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers and writers of other processes do not block
            cursor.execute("PRAGMA synchronous=NORMAL")  # WAL's safe setting: no fsync per commit
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    engine = sa.create_engine(
        url, connect_args={"connect_timeout": max(1, round(timeout_s))}, pool_pre_ping=True, **options
    )

    @sa.event.listens_for(engine, "connect")
    def _postgres(connection: Any, _: Any) -> None:
        cursor = connection.cursor()
        cursor.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")
        cursor.close()
        connection.commit()

    return engine


def insert_ignoring_duplicates(connection: Connection, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in the connection's dialect (two writers of one row: the first wins)."""
    dialect = sqlite if connection.dialect.name == "sqlite" else postgresql
    return dialect.insert(table).on_conflict_do_nothing()


class LedgerStore:
    """One ledger database: schema on first use, appends, and connections for readers."""

    def __init__(self, uri: str, timeout_s: float = TIMEOUT_S) -> None:
        self.uri = resolve_uri(uri)
        self.engine = make_engine(self.uri, timeout_s)
        self._ready = False

    @property
    def name(self) -> str:
        """The URI fit for a log line (password redacted)."""
        return redact(self.uri)

    @contextmanager
    def connect(self, action: str) -> Iterator[Connection]:
        """A connection in a transaction, committed on success; a store failure (or a file that
        cannot be made) is a LedgerError saying what was being done."""
        try:
            database = self.engine.url.database
            if self.engine.dialect.name == "sqlite" and database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)  # as MLflow's embedded store does
            with self.engine.begin() as connection:
                yield connection
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise LedgerError(f"ledger {self.name}: {action} failed: {one_line(exc, ERROR_CHARS)}") from exc

    def ensure_schema(self) -> None:
        """Create the tables if they are missing, migrate an older ledger (forecaster.monitor.migrate)
        and check the schema version; a ledger written by a newer release is refused (its tables may
        mean more than this one knows)."""
        if self._ready:
            return
        for attempt in (1, 2):
            try:
                with self.connect("creating the schema") as connection:
                    found = self._version(connection)
                    if found is not None and found < SCHEMA_VERSION:
                        log.warning("ledger %s: migrating schema version %d to %d", self.name, found, SCHEMA_VERSION)
                        migrate(connection, found)
                    metadata.create_all(connection, checkfirst=True)
                    connection.execute(
                        insert_ignoring_duplicates(connection, meta),
                        {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    )
                    found = self._version(connection)
                break
            except LedgerError:
                if attempt == 2:  # another process created or migrated the same tables at the same moment
                    raise
        if found is None or found > SCHEMA_VERSION:
            raise LedgerError(
                f"ledger {self.name}: schema version {found}, this forecaster knows versions up to {SCHEMA_VERSION} "
                "(upgrade forecaster to use this ledger)"
            )
        self._ready = True

    @staticmethod
    def _version(connection: Connection) -> int | None:
        """The ledger's schema version (None: no ledger here yet)."""
        if not sa.inspect(connection).has_table(meta.name):
            return None
        found = connection.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        return None if found is None else int(found)

    def append(self, rows: list[dict[str, Any]]) -> int:
        """Insert ledger_forecasts rows (ForecastRecord.row) in one transaction; returns their count."""
        if not rows:
            return 0
        self.ensure_schema()
        insert, columns, conversions = self._insert
        values = []
        for row in rows:
            value = list(columns(row))
            for index, convert in conversions:
                value[index] = convert(value[index])
            values.append(tuple(value))
        with self.connect(f"writing {len(rows)} forecast rows") as connection:
            connection.exec_driver_sql(insert, values)
        return len(rows)

    @cached_property
    def _insert(
        self,
    ) -> tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]], list[tuple[int, Callable[[Any], Any]]]]:
        """The INSERT of ledger_forecasts in the driver's own terms, and how each value is bound.

        The service appends on a thread beside its event loop: SQLAlchemy's per-row binding costs
        about 50 us a row there, the driver's executemany with these plain values a fifth of that.
        Values are stored as SQLAlchemy stores them (SQLite: ISO text dates, naive UTC times;
        PostgreSQL: the driver's own date and time types), so reading through the tables is unchanged.
        """
        sqlite_ = self.engine.dialect.name == "sqlite"
        names = [column.name for column in forecasts.columns if not column.primary_key]
        conversions: list[tuple[int, Callable[[Any], Any]]] = []
        for index, name in enumerate(names):
            kind = forecasts.c[name].type
            if isinstance(kind, sa.JSON):
                conversions.append((index, _json))
            elif isinstance(kind, sa.DateTime) and sqlite_:
                conversions.append((index, _sqlite_time))
            elif isinstance(kind, sa.Date) and sqlite_:
                conversions.append((index, _iso))
        marks = ", ".join(["?" if sqlite_ else "%s"] * len(names))
        insert = f"INSERT INTO {forecasts.name} ({', '.join(names)}) VALUES ({marks})"
        return insert, operator.itemgetter(*names), conversions

    def close(self) -> None:
        self.engine.dispose()
