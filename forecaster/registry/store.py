"""The MLflow store: which URI (explicit, env or the embedded SQLite file), how its clients are
bounded (timeouts, retries) and how its failures become one error line.

Embedded default (no MLFLOW_TRACKING_URI): a SQLite file ``mlruns/mlflow.db`` under the
working directory with artifacts beside it in ``mlruns/artifacts``, so ``mlflow ui
--backend-store-uri sqlite:///mlruns/mlflow.db`` shows everything with no server.

Importing this module imports no MLflow (2-4 s, `import mlflow` always loads mlflow.genai): a
command that loads a model folder never pays for it. `configure` hands MLflow the store through
the environment variables MLflow itself sets (MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI) until
MLflow is imported; STORE_ERRORS is built on first use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from forecaster.errors import RegistryUnavailableError, one_line, redact

if TYPE_CHECKING:
    from mlflow.exceptions import MlflowException

STORE_ERROR_CHARS = 500  # a store error in one line at most this long: driver output, whole SQL statements
F = TypeVar("F", bound=Callable[..., Any])

LOCAL_STORE = Path("mlruns")

# SQLAlchemy 2 reads postgresql:// as the psycopg (3) driver and knows no postgres://; the
# PostgreSQL driver installed with forecaster (and in the MLflow image) is psycopg2.
POSTGRES_DRIVER_SCHEME = "postgresql+psycopg2://"
POSTGRES_SCHEMES = ("postgresql://", "postgres://", POSTGRES_DRIVER_SCHEME)

# MLflow's HTTP client defaults (120 s timeout, 7 retries with exponential backoff) keep a caller
# waiting minutes on a dead server. These bound every registry call of the CLI, the pipeline and
# the service to seconds; an environment variable of the same name still wins. PGCONNECT_TIMEOUT
# (libpq) bounds the connect to a PostgreSQL store the same way.
STORE_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "PGCONNECT_TIMEOUT": "10",
}
STORE_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")  # what mlflow.set_*_uri set, read by MLflow


@cache
def _store_errors() -> tuple[type[BaseException], ...]:
    """What a store client raises when the store is down or failing (not: "no such model")."""
    import requests
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    bound_db_retries()
    return (MlflowException, requests.RequestException, OSError, SQLAlchemyError)


def __getattr__(name: str) -> Any:
    """STORE_ERRORS, built on first use (it imports MLflow)."""
    if name == "STORE_ERRORS":
        return _store_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    STORE_ERRORS: tuple[type[BaseException], ...]


def store_uri(uri: str) -> str:
    """A store URI as SQLAlchemy needs it here: a PostgreSQL URI without a driver gets psycopg2's."""
    for scheme in POSTGRES_SCHEMES[:2]:
        if uri.startswith(scheme):
            return POSTGRES_DRIVER_SCHEME + uri.removeprefix(scheme)
    return uri


SQLITE_PREFIX = "sqlite:///"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, resolved as SQLAlchemy reads it (a relative path
    against the working directory, query options dropped); None for another store or in-memory.
    The one reading of such a URI: the artifact folder beside it, the ledger beside it, its lock."""
    if not uri.startswith(SQLITE_PREFIX):
        return None
    path = uri.removeprefix(SQLITE_PREFIX).split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI: explicit, else MLFLOW_TRACKING_URI, else the embedded SQLite store;
    a PostgreSQL one with the installed driver named (`store_uri`)."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return store_uri(uri)
    LOCAL_STORE.mkdir(parents=True, exist_ok=True)
    return f"{SQLITE_PREFIX}{(LOCAL_STORE / 'mlflow.db').resolve()}"


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at one store with bounded HTTP timeouts and retries;
    returns the URI used."""
    for name, value in STORE_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = resolve_tracking_uri(tracking_uri)
    if "mlflow" in sys.modules:  # MLflow keeps the URIs it was given in globals; else it reads these variables
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    for variable in STORE_URI_VARIABLES:
        os.environ[variable] = uri
    if "mlflow.store.db.utils" in sys.modules:
        bound_db_retries()
    return uri


def bound_db_retries() -> None:
    """MLflow retries creating a SQL store's engine 10 times with doubling sleeps (about 100 s on
    a dead database) and has no setting for it: the same retry count as its HTTP client. Applied
    by `configure` and when STORE_ERRORS is first built (every MLflow caller here reads it)."""
    from mlflow.store.db import utils as mlflow_db_utils

    name = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
    retries = int(os.environ.get(name, STORE_CLIENT_DEFAULTS[name]))
    mlflow_db_utils.MAX_RETRY_COUNT = min(mlflow_db_utils.MAX_RETRY_COUNT, retries + 1)


@contextmanager
def registry_errors(action: str) -> Iterator[None]:
    """MLflow client failures (server down or answering errors) -> RegistryUnavailableError
    naming the action and the store, so callers print one line instead of a client traceback."""
    import mlflow

    try:
        yield
    except _store_errors() as exc:
        raise RegistryUnavailableError(
            redact(f"tracking: {action} failed at {mlflow.get_tracking_uri()}: {one_line(exc, STORE_ERROR_CHARS)}")
        ) from exc


def registry_call(func: F) -> F:
    """`func` with its store failures as RegistryUnavailableError naming it (`registry_errors`)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with registry_errors(func.__name__):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def is_not_found(exc: MlflowException) -> bool:
    """Whether the store's error says the thing asked for does not exist (not: the store failed)."""
    code = getattr(exc, "error_code", "")
    text = str(exc).lower()
    return (
        code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
        or "not found" in text
        or "does not exist" in text
    )


def unavailable(what: str, exc: BaseException) -> RegistryUnavailableError:
    """The store failed while doing `what`: one redacted line (a SQL store puts its statement in the text)."""
    return RegistryUnavailableError(redact(f"registry: {what}: {one_line(exc, STORE_ERROR_CHARS)}"))
