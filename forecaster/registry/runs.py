"""MLflow runs: the experiment, a tracked run (the `Tracker` training reports to) and what is
written on a run afterwards (tags, metrics, a description, a FAILED status with its reason)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from forecaster.errors import one_line, redact
from forecaster.registry.store import STORE_ERROR_CHARS, STORE_ERRORS, registry_call, registry_errors, sqlite_path

log = logging.getLogger(__name__)

EXPERIMENT = "forecaster"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow 3.17's UI opens every experiment in the view of its GenAI / Model training switch: the
# `workflowType` in the page's address, else the browser's last pick (localStorage), else GenAI. It
# reads no experiment tag for that (mlflow/mlflow#24498), so each link we give names the view.
TRAINING_VIEW = "workflowType=machine_learning"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store
NOTE_TAG = "mlflow.note.content"  # what the UI shows as a run's description
FAILURE_TAG = "failure_reason"  # why a run ended FAILED
MAX_TAG_CHARS = 5000  # a tag value is cut here: the store's tag values are bounded


def ensure_experiment(name: str = EXPERIMENT) -> str:
    """Create the experiment if needed; with the local SQLite store, artifacts go beside it. It is
    tagged as model training (`mlflow.experimentKind`, set on an older experiment too), the kind
    MLflow's own selector writes; the 3.17 UI still opens it in the view its address names, so
    links to it come from `ui_route`."""
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
            client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return existing.experiment_id
    db_path = sqlite_path(mlflow.get_tracking_uri())
    location = (db_path.parent / "artifacts").as_uri() if db_path is not None else None
    return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


def ui_route(experiment_id: str, run_id: str | None = None) -> str:
    """The UI page of the experiment (or one of its runs) in the Model training view, relative to
    the UI's root."""
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{page}?{TRAINING_VIEW}"


def ui_link(experiment_id: str, run_id: str | None = None) -> str:
    """`ui_route` on the tracking server (password hidden); for a local store, on `mlflow ui`'s
    default address, with the command that starts it."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"{redact(uri).rstrip('/')}/{ui_route(experiment_id, run_id)}"
    return f"{DEFAULT_UI}/{ui_route(experiment_id, run_id)} (after: mlflow ui --backend-store-uri {redact(uri)})"


class MlflowTracker:
    """The Tracker protocol of forecaster.model.fit, writing to the active MLflow run."""

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
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, index=False)
            folder = Path(name).parent.as_posix()  # "metrics/x.csv" goes in the run's metrics/ folder
            mlflow.log_artifact(str(path), artifact_path=None if folder == "." else folder)

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
                _tag_failure(run.info.run_id, one_line(exc, STORE_ERROR_CHARS))
                raise


@registry_call
def tag_run(run_id: str, tags: dict[str, Any]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value)[:MAX_TAG_CHARS])


@registry_call
def log_run_metrics(run_id: str, metrics: dict[str, float]) -> None:
    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


@registry_call
def describe_run(run_id: str, text: str) -> None:
    """The run's description (markdown) in the MLflow UI."""
    MlflowClient().set_tag(run_id, NOTE_TAG, text)


@registry_call
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


@registry_call
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
        log.warning("could not record the failure reason on run %s: %s", run_id, one_line(exc, STORE_ERROR_CHARS))
