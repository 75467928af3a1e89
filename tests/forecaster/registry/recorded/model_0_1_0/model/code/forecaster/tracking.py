"""The only MLflow user: tracking URI, runs, the pyfunc model, the registry and aliases.

Embedded default (no MLFLOW_TRACKING_URI): a SQLite file ``mlruns/mlflow.db`` under the
working directory with artifacts beside it in ``mlruns/artifacts``, so ``mlflow ui
--backend-store-uri sqlite:///mlruns/mlflow.db`` shows everything with no server.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import pandas as pd
import requests
from mlflow.exceptions import MlflowException
from mlflow.store.db import utils as mlflow_db_utils
from mlflow.tracking import MlflowClient
from sqlalchemy.exc import SQLAlchemyError

from forecaster.artifact import load_bundle
from forecaster.errors import ForecasterError, ModelLoadError, ModelNotFoundError, RegistryUnavailableError
from forecaster.predict import Forecaster

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

LOCAL_STORE = Path("mlruns")
EXPERIMENT = "forecaster"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # what the UI shows as a run's description
FAILURE_TAG = "failure_reason"  # why a run ended FAILED
MAX_TAG_CHARS = 5000  # a tag value is cut here: the store's tag values are bounded
BUNDLE_ARTIFACT = "bundle"
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
PACKAGE_DIR = Path(__file__).parent
# what the pyfunc's code (forecaster.predict and what it imports) needs, at the versions running here
PYFUNC_REQUIREMENTS = [
    # the public release (torch's "+cpu" local label is not on PyPI)
    f"{name}=={metadata.version(name).split('+')[0]}"
    for name in ("mlflow", "torch", "numpy", "pandas", "safetensors", "pydantic")
]


# SQLAlchemy 2 reads postgresql:// as the psycopg (3) driver and knows no postgres://; the
# PostgreSQL driver installed with forecaster (and in the MLflow image) is psycopg2.
POSTGRES_DRIVER_SCHEME = "postgresql+psycopg2://"
POSTGRES_SCHEMES = ("postgresql://", "postgres://", POSTGRES_DRIVER_SCHEME)


def store_uri(uri: str) -> str:
    """A store URI as SQLAlchemy needs it here: a PostgreSQL URI without a driver gets psycopg2's."""
    for scheme in POSTGRES_SCHEMES[:2]:
        if uri.startswith(scheme):
            return POSTGRES_DRIVER_SCHEME + uri.removeprefix(scheme)
    return uri


def check_names(model_name: str | None, alias: str | None) -> None:
    """A model name and alias the registry takes (MLflow's own rules) and a ``models:/NAME@ALIAS``
    URI can address (no '@' in a name), else a ValueError naming the flag; None: not given."""
    from mlflow.utils.validation import (
        _validate_model_alias_name,
        _validate_model_alias_name_reserved,
        _validate_model_name,
    )

    checks: list[tuple[str, Callable[[str], None], str]] = []
    if model_name is not None:
        if not model_name.strip():
            raise ValueError("register_as (--register-as): a model name cannot be empty")
        if "@" in model_name:
            raise ValueError(
                f"register_as (--register-as): '{model_name}' contains '@', which models:/NAME@ALIAS URIs "
                "read as the start of an alias"
            )
        checks.append(("register_as (--register-as)", _validate_model_name, model_name))
    if alias is not None:
        rules = (_validate_model_alias_name, _validate_model_alias_name_reserved)
        checks += [("alias (--alias)", rule, alias) for rule in rules]
    for flag, rule, value in checks:
        try:
            rule(value)
        except MlflowException as exc:
            raise ValueError(f"{flag}: {exc.message}") from None


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI: explicit, else MLFLOW_TRACKING_URI, else the embedded SQLite store;
    a PostgreSQL one with the installed driver named (`store_uri`)."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return store_uri(uri)
    LOCAL_STORE.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(LOCAL_STORE / 'mlflow.db').resolve()}"


# Credentials inside any text: the userinfo password of a URI (scheme://user:PASSWORD@host),
# also inside exception messages that quote a URL (MLflow's "API request to http://user:pw@..."),
# and libpq-style "password=..." pairs.
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>[^\s@/]+)@")
_KEY_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<password>[^\s&;,'\"]+)", re.IGNORECASE)

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
# What a store client raises when the store is down or failing (not: "no such model").
STORE_ERRORS = (MlflowException, requests.RequestException, OSError, SQLAlchemyError)
# Registry versions are sequential integers; the backends store them in a 32-bit column (PostgreSQL
# INTEGER), so a larger number cannot exist and is answered as "not found", never sent as SQL.
MAX_VERSION = 2**31 - 1


def redact(text: str) -> str:
    """A URI or any message fit for logs and responses: every password in it replaced by ***."""
    text = _URI_PASSWORD.sub(r"\g<head>:***@", text)
    return _KEY_PASSWORD.sub(r"\g<head>***", text)


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at one store with bounded HTTP timeouts and retries;
    returns the URI used."""
    for name, value in STORE_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    # MLflow retries creating a SQL store's engine 10 times with doubling sleeps (about 100 s on
    # a dead database) and has no setting for it: the same retry count as its HTTP client.
    retries = int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    mlflow_db_utils.MAX_RETRY_COUNT = min(mlflow_db_utils.MAX_RETRY_COUNT, retries + 1)
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(name: str = EXPERIMENT) -> str:
    """Create the experiment if needed; with the local SQLite store, artifacts go beside it. It is
    marked as model training, so the MLflow UI opens it in the runs view, not the GenAI one."""
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return existing.experiment_id
    location = None
    if mlflow.get_tracking_uri().startswith("sqlite:"):
        db_path = Path(mlflow.get_tracking_uri().removeprefix("sqlite:///"))
        location = (db_path.parent / "artifacts").resolve().as_uri()
    return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


@contextmanager
def registry_errors(action: str) -> Iterator[None]:
    """MLflow client failures (server down or answering errors) -> RegistryUnavailableError
    naming the action and the store, so callers print one line instead of a client traceback."""
    try:
        yield
    except STORE_ERRORS as exc:
        raise RegistryUnavailableError(
            redact(f"tracking: {action} failed at {mlflow.get_tracking_uri()}: {one_line(exc)}")
        ) from exc


def _registry_call(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with registry_errors(func.__name__):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelRef:
    """Which registered model version a loaded forecaster is."""

    name: str
    version: str
    alias: str | None
    run_id: str | None


class MlflowTracker:
    """The Tracker protocol of forecaster.train, writing to the active MLflow run."""

    def __init__(self, run: mlflow.ActiveRun) -> None:
        self.run = run

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def set_tags(self, tags: dict[str, Any]) -> None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_figure(self, figure: Any, name: str) -> None:
        mlflow.log_figure(figure, name)

    def log_table(self, frame: pd.DataFrame, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            frame.to_csv(path, index=False)
            mlflow.log_artifact(str(path))

    def log_dict(self, data: dict[str, Any], name: str) -> None:
        mlflow.log_dict(data, name)

    def log_dataset(self, frame: pd.DataFrame, source: str, name: str, context: str = "training") -> str:
        """Log the data as an mlflow.data dataset input; returns its digest."""
        from mlflow.data.pandas_dataset import from_pandas

        dataset = from_pandas(frame, source=source, name=name, targets="close")
        mlflow.log_input(dataset, context=context)
        return dataset.digest


@contextmanager
def start_run(
    run_name: str | None = None, experiment: str = EXPERIMENT, tags: dict[str, str] | None = None
) -> Iterator[MlflowTracker]:
    """A tracked run; an exception inside marks it FAILED and propagates (MLflow's own
    failures, e.g. the server going away mid-run, as RegistryUnavailableError)."""
    with registry_errors(f"run '{run_name or experiment}'"):
        experiment_id = ensure_experiment(experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            try:
                yield MlflowTracker(run)
            except Exception as exc:
                _tag_failure(run.info.run_id, one_line(exc))
                raise


@_registry_call
def log_model(bundle_dir: Path, example: pd.DataFrame, registered_name: str | None = None) -> tuple[str, str | None]:
    """Log the bundle as a pyfunc model (models-from-code: nothing pickled) in the active run
    and optionally register it. Returns (model_uri, version)."""
    from mlflow.models import infer_signature

    from forecaster.pyfunc_model import ForecasterPyfunc

    output = ForecasterPyfunc.from_bundle_dir(bundle_dir).predict(None, example)
    with tempfile.TemporaryDirectory() as tmp:
        # the loader finds the bundle as artifacts/bundle, whatever the folder was called here
        stored = Path(tmp) / BUNDLE_ARTIFACT
        shutil.copytree(bundle_dir, stored)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_ENTRY),
            artifacts={BUNDLE_ARTIFACT: str(stored)},
            # the package travels with the model, so `mlflow models serve` works where only the
            # requirements below are installed (no `pip install forecaster`)
            code_paths=[str(PACKAGE_DIR)],
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=PYFUNC_REQUIREMENTS,
            registered_model_name=registered_name,
        )
    version = str(info.registered_model_version) if info.registered_model_version is not None else None
    return info.model_uri, version


@_registry_call
def set_alias(name: str, alias: str, version: str) -> None:
    """Point `alias` at `version`, then read it back: a store that accepted the move but answers
    another version (a concurrent writer won) is an error naming alias, expected and found."""
    client = MlflowClient()
    client.set_registered_model_alias(name, alias, version)
    found = str(client.get_model_version_by_alias(name, alias).version)
    if found != str(version):
        raise ForecasterError(
            f"registry: alias '{alias}' of model '{name}' points at version {found} after it was set to {version}"
        )


@_registry_call
def set_version_tags(name: str, version: str, tags: dict[str, Any]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    if not uri.startswith("models:/"):
        raise ModelNotFoundError(f"model_uri: expected models:/NAME@ALIAS or models:/NAME/VERSION, got '{uri}'")
    body = uri.removeprefix("models:/").strip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, alias, None
    if "/" in body:
        name, version = body.rsplit("/", 1)
        return name, None, version
    raise ModelNotFoundError(f"model_uri: '{uri}' names no alias or version (use models:/NAME@ALIAS)")


def resolve_version(name: str, alias: str | None = None, version: str | None = None) -> ModelRef:
    """The registry's answer for NAME@ALIAS or NAME/VERSION; clear errors when it has none.

    Errors name the model and never quote the store's answer beyond a redacted line: a failing
    SQL store puts its statement in the exception text."""
    what = f"alias '{alias}'" if alias is not None else f"version '{version}'"
    if alias is None and not (str(version).isdigit() and 1 <= int(str(version)) <= MAX_VERSION):
        raise ModelNotFoundError(f"model '{name}': {what} not found in the registry")
    try:
        client = MlflowClient()  # builds the store client: a SQL store connects here
        if alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(name, str(version))
    except STORE_ERRORS as exc:
        if isinstance(exc, MlflowException) and _is_not_found(exc):
            raise ModelNotFoundError(f"model '{name}': {what} not found in the registry") from exc
        raise RegistryUnavailableError(
            redact(f"registry: cannot resolve model '{name}' at {mlflow.get_registry_uri()}: {one_line(exc)}")
        ) from exc
    return ModelRef(name=name, version=str(mv.version), alias=alias, run_id=mv.run_id)


def _is_not_found(exc: MlflowException) -> bool:
    code = getattr(exc, "error_code", "")
    text = str(exc).lower()
    return (
        code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
        or "not found" in text
        or "does not exist" in text
    )


def load_forecaster(
    model_uri: str | None = None, device: str = "auto", ref: ModelRef | None = None
) -> tuple[Forecaster, ModelRef]:
    """The one loader: registry URI -> (ready Forecaster on `device`, which version it is).

    Downloads the bundle artifact and rebuilds the network from JSON + safetensors; no
    pickled object is ever loaded. A store that cannot be reached is RegistryUnavailableError
    (try again later); an artifact that is missing or cannot be read is ModelLoadError (this
    version will not load, whoever asks again).
    """
    if ref is None:
        if model_uri is None:
            raise ValueError("load_forecaster: give a model_uri or a resolved ref")
        name, alias, version = parse_model_uri(model_uri)
        ref = resolve_version(name, alias, version)
    what = f"model '{ref.name}' version {ref.version}"
    try:
        local = mlflow.artifacts.download_artifacts(f"models:/{ref.name}/{ref.version}")
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{what} cannot be loaded: its artifact is missing ({exc.strerror})") from exc
    except STORE_ERRORS as exc:
        if isinstance(exc, MlflowException) and _is_not_found(exc):
            raise ModelLoadError(f"{what} cannot be loaded: its artifact is missing") from exc
        raise RegistryUnavailableError(redact(f"registry: cannot download {what}: {one_line(exc)}")) from exc
    bundle_dir = Path(local) / "artifacts" / BUNDLE_ARTIFACT
    try:
        return Forecaster(load_bundle(bundle_dir), device=device), ref
    except Exception as exc:  # noqa: BLE001 - an artifact is outside input: any failure to read it means this version
        raise ModelLoadError(f"{what} cannot be loaded: {_load_cause(exc, Path(local))}") from exc


def _load_cause(exc: Exception, local: Path) -> str:
    """The cause of a failed load in one line, without the local download path."""
    text = one_line(exc).replace(f"{local}/", "").replace(str(local), "the artifact")
    return text if isinstance(exc, ForecasterError) else f"{type(exc).__name__}: {text}"


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception's text on one line, passwords redacted, cut at `limit` characters: store
    errors carry multi-line driver output and whole SQL statements."""
    text = " ".join(redact(str(exc)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def example_input(frame: pd.DataFrame, lookback: int, tickers: int = 2) -> pd.DataFrame:
    """The pyfunc input example: the last `lookback` bars of a few tickers, long format."""
    names = sorted(frame["ticker"].unique())[:tickers]
    parts = [frame[frame["ticker"] == t].tail(lookback) for t in names]
    example = pd.concat(parts)[["ticker", "date", "open", "high", "low", "close"]].reset_index(drop=True)
    example["date"] = example["date"].dt.strftime("%Y-%m-%d")
    for column in ("open", "high", "low", "close"):
        example[column] = example[column].astype(np.float64)
    return example


@_registry_call
def tag_run(run_id: str, tags: dict[str, Any]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value)[:MAX_TAG_CHARS])


@_registry_call
def log_run_metrics(run_id: str, metrics: dict[str, float]) -> None:
    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


@_registry_call
def fail_running_runs(tags: dict[str, str], reason: str, experiment: str = EXPERIMENT) -> list[str]:
    """Mark FAILED every run of `experiment` still RUNNING whose tags include `tags`, with a
    ``failure_reason`` tag; returns their ids. Only for a caller that knows no live process owns
    such runs (the retraining pipeline holding its lock): a killed process never ends its run."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    stale: list[str] = []
    page_token = None
    while True:
        # tags are compared here, not in the filter string: a value may hold any quote character
        page = client.search_runs(
            [found.experiment_id], "attributes.status = 'RUNNING'", max_results=1000, page_token=page_token
        )
        stale += [run.info.run_id for run in page if tags.items() <= run.data.tags.items()]
        page_token = page.token
        if not page_token:
            break
    for run_id in stale:
        fail_run(run_id, reason)
    return stale


@_registry_call
def fail_run(run_id: str, reason: str) -> None:
    """End the run as FAILED with a ``failure_reason`` tag, also one that had already ended (a
    pipeline step after training failed): its status then says it is not a usable result."""
    client = MlflowClient()
    client.set_tag(run_id, FAILURE_TAG, reason[:MAX_TAG_CHARS])
    client.set_terminated(run_id, status="FAILED")


def _tag_failure(run_id: str, reason: str) -> None:
    """The failure reason on a run that is failing; best effort: the error being raised matters more."""
    try:
        MlflowClient().set_tag(run_id, FAILURE_TAG, reason[:MAX_TAG_CHARS])
    except STORE_ERRORS as exc:
        log.warning("could not record the failure reason on run %s: %s", run_id, one_line(exc))


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    try:
        return resolve_version(name, alias).version
    except ModelNotFoundError:
        return None


@_registry_call
def model_registered(name: str) -> bool:
    """Whether the registry holds a model of this name."""
    try:
        MlflowClient().get_registered_model(name)
    except MlflowException as exc:
        if _is_not_found(exc):
            return False
        raise
    return True


@_registry_call
def delete_alias(name: str, alias: str) -> None:
    MlflowClient().delete_registered_model_alias(name, alias)


@_registry_call
def describe_run(run_id: str, text: str) -> None:
    """The run's description (markdown) in the MLflow UI."""
    MlflowClient().set_tag(run_id, NOTE_TAG, text)


@_registry_call
def describe_version(name: str, version: str, text: str) -> None:
    """A registered version's description in the MLflow UI."""
    MlflowClient().update_model_version(name, version, description=text)
