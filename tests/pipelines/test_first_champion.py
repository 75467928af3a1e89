"""A registry never stays without a champion: the first retrain ends with one. The challenger if it
passes the gate, or if no step is significantly worse than naive or ewma (Diebold-Mariano);
otherwise the EWMA baseline model (the untrained network) registered and made champion, which
later challengers must beat. A challenger whose forecasts are not finite is never promoted."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from test_failures import MODEL, pipeline_runs, tiny_settings

from forecaster.registry import tracking
from pipelines import promote, retrain
from pipelines.promote import FIRST_BASELINE, FIRST_BY_DM, RULE_NAIVE, RULE_NONFINITE, GateRules, decide

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import MlflowStore

RULES = GateRules("mase", 0.0, 0.03, True)
CALIBRATED = {"coverage_80": [0.8, 0.8], "coverage": [0.8, 0.8]}


def metrics(model_mase: float, naive_mase: float = 1.0, spl: float = 0.5) -> dict[str, dict[str, list[float]]]:
    return {
        "model": {"mase": [model_mase] * 2, "spl": [spl] * 2, **CALIBRATED},
        "naive": {"mase": [naive_mase] * 2},
        "ewma": {"mase": [naive_mase] * 2, "spl": [0.6] * 2},
    }


def dm(naive: list[str], ewma: list[str]) -> dict[str, dict[str, Any]]:
    return {"model_vs_naive": {"verdict": naive}, "model_vs_ewma": {"verdict": ewma}}


# ---------------------------------------------------------------- the rules, on controlled figures


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_gate_refuses_a_challenger_whose_figures_are_not_finite_naming_them(bad: float) -> None:
    figures = metrics(0.5)
    figures["model"]["coverage_80"] = [0.8, bad]
    decision = decide(figures, None, RULES)
    assert not decision.promote and decision.rule == RULE_NONFINITE
    assert "model.coverage_80" in decision.reason


def test_first_champion_is_the_rejected_challenger_when_no_step_is_significantly_worse() -> None:
    rejected = decide(metrics(1.05), None, RULES)  # does not beat naive on MASE
    assert not rejected.promote and rejected.rule == RULE_NAIVE
    first = promote.first_champion(rejected, dm(["indistinguishable"] * 2, ["better", "indistinguishable"]))
    assert first.promote and first.rule == "" and first.first == FIRST_BY_DM
    assert "no step is significantly worse" in first.reason
    assert first.tags()["gate_first_champion"] == FIRST_BY_DM and first.tags()["gate_promoted"] == "true"


def test_first_champion_reads_only_naive_and_ewma_of_the_reported_dm_tests() -> None:
    # har, garch and rgarch are reported beside them; being worse than har does not make the EWMA
    # baseline (worse than har too) a better first champion
    rejected = decide(metrics(1.05), None, RULES)
    tests = {**dm(["indistinguishable"] * 2, ["better"] * 2), "model_vs_har": {"verdict": ["worse", "worse"]}}
    assert promote.first_champion(rejected, tests).first == FIRST_BY_DM


@pytest.mark.parametrize(
    "tests", [dm(["indistinguishable", "worse"], ["better"] * 2), dm(["better"] * 2, ["worse", "worse"]), {}]
)
def test_first_champion_stays_rejected_when_a_step_is_significantly_worse_or_untested(tests: Any) -> None:
    rejected = decide(metrics(1.05), None, RULES)
    decision = promote.first_champion(rejected, tests)
    assert not decision.promote and decision.rule == RULE_NAIVE and decision.first == ""
    assert "no champion yet and" in decision.reason


def test_first_champion_rule_applies_only_without_a_champion_and_never_to_non_finite_forecasts() -> None:
    with_champion = decide(metrics(1.05), metrics(0.9), RULES)
    assert promote.first_champion(with_champion, dm(["better"] * 2, ["better"] * 2)) == with_champion
    broken = metrics(0.5)
    broken["model"]["spl"] = [math.nan, 0.5]
    non_finite = decide(broken, None, RULES)
    assert promote.first_champion(non_finite, dm(["better"] * 2, ["better"] * 2)) == non_finite


# ---------------------------------------------------------------- a real retrain on an empty store


REAL_SIGNIFICANCE = retrain.evaluate.significance


def worse_everywhere(backtest: Any) -> dict[str, dict[str, Any]]:
    """The real Diebold-Mariano report with every verdict 'worse' (the controlled case)."""
    report = REAL_SIGNIFICANCE(backtest)
    for block in report.values():
        block["verdict"] = ["worse"] * backtest.horizon
    return report


def test_a_first_retrain_whose_challenger_cannot_serve_ends_with_the_ewma_baseline_as_champion(
    tmp_path: Path, mlflow_store: MlflowStore, clean_env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tiny_settings(tmp_path, mlflow_store)
    # the gate rejects this challenger and the DM tests call it worse: the controlled case
    monkeypatch.setattr(promote, "decide", lambda *a: promote.Decision(False, "rejected here", "mase", 2.0, None, 1.0))
    monkeypatch.setattr(retrain.evaluate, "significance", worse_everywhere)

    report = retrain.run_locked(settings)

    assert report is not None and not report.decision.promote
    assert report.baseline_version is not None and report.champion_after == report.baseline_version
    client = MlflowClient()
    baseline = client.get_model_version(MODEL, report.baseline_version)
    aliases = {alias: str(version) for alias, version in client.get_registered_model(MODEL).aliases.items()}
    assert aliases == {"champion": report.baseline_version, "challenger": "1"}
    assert baseline.tags["gate_first_champion"] == FIRST_BASELINE and baseline.tags["gate_promoted"] == "true"
    assert "rejected here" in baseline.tags["gate_reason"]
    runs = {run.info.run_name: run for run in pipeline_runs()}
    assert runs["retrain-ewma-baseline"].data.tags["baseline"] == "ewma"
    assert runs["retrain-ewma-baseline"].data.params["train.epochs"] == "0"
    # the champion is a real model: it loads, forecasts finite numbers, and is the random walk (median = last close)
    model, ref = tracking.load_forecaster(f"models:/{MODEL}@champion", device="cpu")
    windows = np.stack([np.linspace(10.0, 11.0, 4 * model.lookback).reshape(model.lookback, 4)] * 2)
    forecast = model.predict_windows(windows.astype(np.float32))
    assert ref.version == report.baseline_version and np.isfinite(forecast.quantiles).all()
    np.testing.assert_allclose(forecast.median, windows[:, -1:, 3].repeat(model.horizon, axis=1), rtol=1e-5)


def test_a_later_challenger_faces_the_baseline_champion_through_the_usual_gate(
    tmp_path: Path, mlflow_store: MlflowStore, clean_env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tiny_settings(tmp_path, mlflow_store)
    real_decide = promote.decide
    monkeypatch.setattr(promote, "decide", lambda *a: promote.Decision(False, "rejected here", "mase", 2.0, None, 1.0))
    monkeypatch.setattr(retrain.evaluate, "significance", worse_everywhere)
    first = retrain.run_locked(settings)
    assert first is not None and first.baseline_version is not None

    seen: list[Any] = []

    def recording_decide(challenger: Any, champion: Any, rules: GateRules) -> promote.Decision:
        seen.append(champion)
        return real_decide(challenger, champion, rules)

    monkeypatch.setattr(promote, "decide", recording_decide)
    second = retrain.run_locked(settings)

    assert second is not None and second.champion_before == first.baseline_version
    assert seen and seen[0] is not None and "model" in seen[0]  # the baseline's holdout figures were compared
    assert second.baseline_version is None  # a champion exists: no second baseline


def test_train_alias_champion_keeps_the_old_champion_as_previous_so_rollback_works(
    tmp_path: Path, mlflow_store: MlflowStore
) -> None:
    from factories import random_ohlc

    import forecaster

    tiny = {"data.lookback": 10, "data.horizon": 2, "train.epochs": 1, "model.hidden_size": 8, "train.device": "cpu"}
    bars = random_ohlc(days=120, seed=5)
    first = forecaster.train(bars, register_as="kept", alias="champion", **tiny)
    second = forecaster.train(bars, register_as="kept", alias="champion", **tiny)

    assert (tracking.alias_version("kept", "champion"), tracking.alias_version("kept", "previous")) == (
        second.version,
        first.version,
    )
    assert promote.rollback("kept") == (second.version, first.version)
    assert tracking.alias_version("kept", "champion") == first.version
