"""What a retrain writes on the registered version: the verdict (promoted, why, the rule), the data
digest and two headline ratios, at most MAX_VERSION_TAGS tags, so the registry's list of versions
stays readable; every figure the gate compared stays on the run. Also when a step after the gate fails."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mlflow.tracking import MlflowClient
from test_failures import MODEL, tiny_settings

from forecaster.errors import RegistryUnavailableError
from forecaster.registry import tracking
from forecaster.run.metric_names import MAX_VERSION_TAGS
from pipelines import promote, retrain

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import MlflowStore

VERDICT = {"gate_promoted", "gate_reason", "gate_rule"}
ON_THE_RUN = {"gate_metric", "gate_challenger", "gate_naive", "gate_coverage", "holdout_start", "data_range"}


def all_version_tags() -> dict[str, dict[str, str]]:
    return {str(mv.version): dict(mv.tags) for mv in MlflowClient().search_model_versions(f"name='{MODEL}'")}


def test_a_retrained_version_carries_the_verdict_digest_and_headline_and_its_run_every_figure(
    tmp_path: Path, mlflow_store: MlflowStore, clean_env: pytest.MonkeyPatch
) -> None:
    report = retrain.run_locked(tiny_settings(tmp_path, mlflow_store))

    assert report is not None
    versions = all_version_tags()
    tags = versions[report.version]
    assert VERDICT | {"data_digest", "mae_vs_naive", "spl_vs_ewma"} <= set(tags)
    assert tags["gate_reason"] == report.decision.reason
    run = MlflowClient().get_run(report.run_id)
    assert ON_THE_RUN | {"code_version", "gate_champion_version"} <= set(run.data.tags)
    assert not ON_THE_RUN & set(tags), "the gate's figures stay on the run"
    for version, held in versions.items():  # the EWMA baseline too, when it became the first champion
        assert len(held) <= MAX_VERSION_TAGS, (version, held)


def test_a_version_whose_promotion_failed_after_the_gate_still_carries_at_most_eight_tags(
    tmp_path: Path, mlflow_store: MlflowStore, clean_env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    def registry_down(*args: Any) -> None:
        raise RegistryUnavailableError("registry went away")

    monkeypatch.setattr(promote, "apply", registry_down)
    with pytest.raises(RegistryUnavailableError):
        retrain.run_locked(tiny_settings(tmp_path, mlflow_store))

    (tags,) = all_version_tags().values()
    assert "promote step failed: registry went away" in tags[tracking.FAILURE_TAG]
    assert VERDICT <= set(tags) and len(tags) <= MAX_VERSION_TAGS, tags
