"""A retrain that cannot finish leaves no result that looks usable: settings whose holdout holds
no forecast origin are refused before anything is trained or registered, and a step that fails
after the challenger was registered ends its run FAILED with the reason, on the run and the version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e_support import ar1_ohlc
from mlflow.tracking import MlflowClient

from forecaster.errors import DataError, ForecasterError
from forecaster.registry import tracking
from pipelines import promote, retrain
from pipelines.settings import RetrainSettings

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import MlflowStore

MODEL = "fails"


def tiny_settings(tmp_path: Path, store: MlflowStore, **training_data: Any) -> RetrainSettings:
    """A retrain of a tiny network on 300 days of two tickers from a file (holdout: the last ~45)."""
    csv = tmp_path / "bars.csv"
    ar1_ohlc(tickers=2, days=300).to_csv(csv, index=False)
    return RetrainSettings(
        model_name=MODEL,
        tracking_uri=store.uri,
        source="file",
        data_path=str(csv),
        data_dir=str(tmp_path / "data"),
        lock_file=str(tmp_path / "retrain.lock"),
        training={
            "data": {"lookback": 20, "horizon": 3, **training_data},
            "model": {"hidden_size": 8, "num_layers": 1},
            "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
        },
    )


def pipeline_runs() -> list[Any]:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
    return [] if experiment is None else list(client.search_runs([experiment.experiment_id]))


def test_a_holdout_too_short_for_one_origin_is_refused_naming_the_settings_before_training(
    tmp_path: Path, mlflow_store: MlflowStore, clean_env: pytest.MonkeyPatch
) -> None:
    settings = tiny_settings(tmp_path, mlflow_store, horizon=100)
    with pytest.raises(ForecasterError, match=r"holdout: .*training\.data\.horizon.*Nothing was trained") as caught:
        retrain.run_locked(settings)
    assert "training.data.test_fraction=0.15" in str(caught.value)
    assert pipeline_runs() == []
    assert MlflowClient().search_registered_models() == []


def test_a_step_failing_after_registration_marks_the_run_failed_and_the_version_not_promoted(
    tmp_path: Path, mlflow_store: MlflowStore, clean_env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_origins(*args: Any) -> Any:
        raise DataError("evaluate: no forecast origins")

    monkeypatch.setattr(retrain, "holdout_backtest", no_origins)
    with pytest.raises(DataError, match="no forecast origins"):
        retrain.run_locked(tiny_settings(tmp_path, mlflow_store))
    (run,) = pipeline_runs()
    assert run.info.status == "FAILED"
    reason = "evaluate step failed: evaluate: no forecast origins"
    expected = {tracking.FAILURE_TAG: reason, **promote.failure_tags(reason)}
    assert expected.items() <= run.data.tags.items()
    client = MlflowClient()
    (version,) = client.search_model_versions(f"name = '{MODEL}'")
    assert version.run_id == run.info.run_id
    assert expected.items() <= version.tags.items()
    assert client.get_registered_model(MODEL).aliases == {}  # neither champion nor challenger
