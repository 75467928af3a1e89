"""Store URIs as the installed driver needs them, and why a run failed recorded on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from mlflow.tracking import MlflowClient

from forecaster.registry import tracking

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import MlflowStore


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql+psycopg2://u:pw@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///m.db", "sqlite:///m.db"),
        ("http://mlflow:5000", "http://mlflow:5000"),
    ],
)
def test_postgresql_store_uris_get_the_installed_driver(given: str, used: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracking.resolve_tracking_uri(given) == used
    monkeypatch.setenv("MLFLOW_TRACKING_URI", given)
    assert tracking.resolve_tracking_uri() == used


def test_a_run_failing_inside_records_why_on_the_failed_run(mlflow_store: MlflowStore) -> None:
    with pytest.raises(ValueError, match="boom"), tracking.start_run(run_name="doomed") as tracker:
        run_id = tracker.run_id
        raise ValueError("boom\non two lines")
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.FAILURE_TAG] == "boom on two lines"


def test_fail_run_ends_a_finished_run_failed_with_the_reason(mlflow_store: MlflowStore) -> None:
    with tracking.start_run(run_name="finished") as tracker:
        run_id = tracker.run_id
    tracking.fail_run(run_id, "evaluate step failed: no origins")
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.FAILURE_TAG] == "evaluate step failed: no origins"
