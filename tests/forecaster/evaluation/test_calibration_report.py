"""The calibration report reaches both places that show a model's quality: `evaluate`'s JSON
(forecaster.api.evaluation_report) and the training run (its metrics JSON artifact, flat metrics and
the calibration curve plots)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from mlflow.tracking import MlflowClient

from forecaster.api import evaluation_report
from forecaster.data.validate import validate_ohlc
from forecaster.evaluation.calibration_tests import calibration

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel


def test_evaluation_report_holds_the_calibration_of_the_model_and_baselines(in_cli_store: CliModel) -> None:
    model = in_cli_store
    forecaster = model.run.outcome.forecaster
    report = evaluation_report(validate_ohlc(model.frame), forecaster)

    block = report["calibration"]["model"]
    assert block["curve"]["nominal"] == report["levels"]
    assert np.shape(block["curve"]["empirical"]) == (model.horizon, len(report["levels"]))
    # the curve is the per-level hit rate the metrics report
    for i, level in enumerate(report["levels"]):
        np.testing.assert_allclose(
            np.asarray(block["curve"]["empirical"])[:, i], report["metrics"]["model"][f"hit_q{level:g}"]
        )
    assert {"low", "mid", "high", "sd_bounds"} <= set(block["coverage_by_tercile"])
    assert [tail["side"] for tail in block["tails"]] == ["lower", "upper"]
    assert "ewma" in report["calibration"] and "qlike" in report["metrics"]["model"]
    json.dumps(report["calibration"], allow_nan=False)  # strict JSON as `evaluate --json` prints it


def test_training_run_logs_the_calibration_json_metrics_and_curve(in_cli_store: CliModel) -> None:
    model = in_cli_store
    client = MlflowClient()
    run_id = model.run.run_id
    logged = json.loads(Path(client.download_artifacts(run_id, "metrics/test_metrics.json")).read_text())
    assert logged["calibration"] == json.loads(json.dumps(calibration(model.run.outcome.backtest)))
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"plots/calibration_h1.png", f"plots/calibration_h{model.horizon}.png"} <= plots
    metrics = set(client.get_run(run_id).data.metrics)
    # the flat figures (calibration_summary's and the qlike metric), whatever prefix the run gives them
    assert any("coverage_low_vol" in key for key in metrics) and any("qlike" in key for key in metrics)
