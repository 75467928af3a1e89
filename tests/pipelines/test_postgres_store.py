"""A PostgreSQL tracking store named the way libpq and the docs name it (postgresql://, or
postgres://) works: the tracking URI gets the installed driver (psycopg2) in the one place it is
resolved, the retrain takes its advisory lock on that database, and no log line shows the password."""

from __future__ import annotations

import logging

import pytest
from e2e_support import PG_HOST, PG_PORT, PgDatabase
from mlflow.tracking import MlflowClient

from forecaster.registry import tracking
from pipelines import retrain
from pipelines.lock import lock_target
from pipelines.settings import RetrainSettings

PASSWORD = "s3cret-pw"  # trust auth: the server never asks for it, so it must only never be shown


@pytest.fixture()
def restore_mlflow(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """MLflow's process-wide URIs back as they were after the test."""
    import mlflow.tracking._model_registry.utils as registry_state
    import mlflow.tracking._tracking_service.utils as tracking_state
    from mlflow.store.db import utils as db_state

    monkeypatch.setattr(db_state, "MAX_RETRY_COUNT", db_state.MAX_RETRY_COUNT)
    monkeypatch.setattr(tracking_state, "_tracking_uri", tracking_state._tracking_uri)
    monkeypatch.setattr(registry_state, "_registry_uri", registry_state._registry_uri)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return monkeypatch


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_plain_postgresql_tracking_uri_runs_a_retrain_against_the_database(
    scheme: str,
    database: PgDatabase,
    restore_mlflow: pytest.MonkeyPatch,
    clean_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri = f"{scheme}://{database.user}:{PASSWORD}@{PG_HOST}:{PG_PORT}/{database.name}"
    settings = RetrainSettings(model_name=f"pg-{scheme}", tracking_uri=uri)
    ran: list[str] = []

    def train_and_record(settings: RetrainSettings) -> None:
        with tracking.start_run(run_name="retrain", tags=retrain.pipeline_tags(settings.model_name)):
            ran.append(MlflowClient().search_experiments()[0].name)

    restore_mlflow.setattr(retrain, "run_once", train_and_record)
    with caplog.at_level(logging.DEBUG):
        retrain.run_locked(settings)  # configure, advisory lock, stale-run sweep, then the run
    assert ran, "the run did not start"
    assert tracking.resolve_tracking_uri(uri).startswith("postgresql+psycopg2://")
    statuses = database.query("SELECT status FROM runs WHERE name = 'retrain'")
    assert statuses and set(statuses) == {("FINISHED",)}
    lock = lock_target(settings.model_name, tracking.resolve_tracking_uri(uri), None, None)
    assert lock.database_url == f"postgresql://{database.user}:{PASSWORD}@{PG_HOST}:{PG_PORT}/{database.name}"
    assert PASSWORD not in caplog.text and PASSWORD not in lock.describe()
    assert tracking.redact(tracking.resolve_tracking_uri(uri)).count("***") == 1


def test_a_plain_postgresql_uri_that_cannot_connect_is_one_redacted_error(
    restore_mlflow: pytest.MonkeyPatch, postgres_user: str
) -> None:
    from forecaster.errors import RegistryUnavailableError

    restore_mlflow.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracking.configure(f"postgresql://{postgres_user}:{PASSWORD}@{PG_HOST}:{PG_PORT}/no_such_database_here")
    with pytest.raises(RegistryUnavailableError, match=r"postgresql\+psycopg2://.*:\*\*\*@") as caught:
        tracking.resolve_version("m", "champion")
    assert PASSWORD not in str(caught.value) and "psycopg'" not in str(caught.value)
