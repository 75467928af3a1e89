"""forecaster.registry.tracking: train -> register (alias champion) -> load by alias predicts exactly
like the model trained in memory; the MLflow run records everything needed to audit it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from forecaster.config import ModelConfig
from forecaster.data.windows import Panel
from forecaster.errors import ModelNotFoundError
from forecaster.evaluation import backtest as evaluate
from forecaster.registry import tracking
from forecaster.registry.runs import TRAINING_VIEW, ui_route
from forecaster.run.metric_names import HEADLINE_GROUPS, MAX_HEADLINE_CHARTS, MAX_VERSION_TAGS

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel, MlflowStore


def all_windows(model: CliModel) -> np.ndarray:
    panel = Panel.from_frame(model.frame)
    return panel.gather(
        panel.origins(model.lookback, model.horizon, need_future=False), model.lookback, model.horizon
    ).X


def test_load_forecaster_by_alias_predicts_like_the_trained_forecaster(in_cli_store: CliModel) -> None:
    loaded, ref = tracking.load_forecaster(f"models:/{in_cli_store.name}@champion", device="cpu")
    trained = in_cli_store.run.outcome.forecaster
    X = all_windows(in_cli_store)

    assert ref.version == "1" and ref.alias == "champion" and ref.run_id == in_cli_store.run.run_id
    np.testing.assert_array_equal(loaded.predict_windows(X).quantiles, trained.predict_windows(X).quantiles)
    assert loaded.lookback == in_cli_store.lookback and loaded.horizon == in_cli_store.horizon
    # by version too
    by_version, _ = tracking.load_forecaster(f"models:/{in_cli_store.name}/1", device="cpu")
    np.testing.assert_array_equal(by_version.predict_windows(X).quantiles, trained.predict_windows(X).quantiles)


def test_pyfunc_model_by_alias_returns_the_trained_forecasters_medians(in_cli_store: CliModel) -> None:
    model = in_cli_store
    example = tracking.example_input(model.frame, model.lookback)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{model.name}@champion")

    output = pyfunc.predict(example)

    windows = np.stack(
        [
            model.frame.loc[model.frame["ticker"] == t, ["open", "high", "low", "close"]].to_numpy(np.float32)[
                -model.lookback :
            ]
            for t in ("AAA", "BBB")
        ]
    )
    forecast = model.run.outcome.forecaster.predict_windows(windows)
    assert output["ticker"].tolist() == ["AAA"] * model.horizon + ["BBB"] * model.horizon
    assert output["step"].tolist() == list(range(1, model.horizon + 1)) * 2
    np.testing.assert_allclose(output["close"].to_numpy(), forecast.median.ravel(), rtol=1e-6)
    np.testing.assert_allclose(output["lower"].to_numpy(), forecast.lower.ravel(), rtol=1e-6)
    np.testing.assert_allclose(output["upper"].to_numpy(), forecast.upper.ravel(), rtol=1e-6)


def test_logged_model_holds_no_pickle(in_cli_store: CliModel) -> None:
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{in_cli_store.name}/1"))
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    assert "artifacts/bundle/weights.safetensors" in files and "artifacts/bundle/config.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".cloudpickle"))], files


def test_run_records_params_curves_metrics_plots_backtest_and_dataset(in_cli_store: CliModel) -> None:
    model = in_cli_store
    client = MlflowClient()
    run = client.get_run(model.run.run_id)

    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data.lookback"] == str(model.lookback) and params["data.horizon"] == str(model.horizon)
    assert params["model.arch"] == ModelConfig().arch and params["model.hidden_size"] == "8"
    assert params["train.seed"] == "3" and params["source"] == str(model.data_path.resolve())

    history = model.run.outcome.fit.history
    for key, attribute in (("loss/train", "train_loss"), ("loss/val", "val_loss")):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == list(range(1, model.epochs + 1))
        assert [m.value for m in logged] == pytest.approx([getattr(s, attribute) for s in history])

    metrics = run.data.metrics
    for name in ("model", "naive", "drift"):
        for metric in ("mae", "rmse", "mape", "mase", "dir_acc"):
            assert metrics[f"test_all/{name}/{metric}"] == pytest.approx(np.mean(model.run.metrics[name][metric]))
    assert metrics["test/model/mase"] == metrics["test_all/model/mase"]
    assert metrics["test/vs_naive/mae_ratio"] == pytest.approx(
        metrics["test/model/mae"] / metrics["test_all/naive/mae"]
    )
    # every figure per forecast step is in a table (and the JSON), not on MLflow's training-step axis
    by_step = pd.read_csv(client.download_artifacts(run.info.run_id, "metrics/test_by_step.csv"))
    mae = by_step[(by_step["forecast"] == "model") & (by_step["metric"] == "mae")]
    steps = [f"h{h}" for h in range(1, model.horizon + 1)]
    assert mae[steps].to_numpy().ravel() == pytest.approx(model.run.metrics["model"]["mae"])
    assert len(by_step) == sum(len(block) for block in model.run.metrics.values()) + 2 * len(
        evaluate.significance(model.run.outcome.backtest)
    )

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    expected_plots = {
        "plots/loss.png",
        "plots/forecast_vs_actual_h1.png",
        f"plots/forecast_vs_actual_h{model.horizon}.png",
    }
    assert expected_plots <= plots
    assert "backtest.csv" in artifacts
    for png in plots:
        assert Path(client.download_artifacts(run.info.run_id, png)).read_bytes().startswith(b"\x89PNG")
    table = pd.read_csv(client.download_artifacts(run.info.run_id, "backtest.csv"))
    assert len(table) == len(model.run.outcome.windows.test_origins) * model.horizon
    assert {"ticker", "origin", "step", "date", "actual", "q0.1", "q0.5", "q0.9", "naive", "drift"} <= set(
        table.columns
    )

    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    assert inputs[0].dataset.digest == model.run.dataset_digest != ""
    assert run.data.tags["data_digest"] == model.run.dataset_digest


def test_run_metrics_are_grouped_with_the_headline_first_and_nothing_per_forecast_step(
    in_cli_store: CliModel,
) -> None:
    client = MlflowClient()
    run = client.get_run(in_cli_store.run.run_id)
    keys = set(run.data.metrics)
    # MLflow's run page groups charts by the key up to its last "/", the groups sorted by name, and
    # puts keys without "/" last as "Model metrics": every key is in a group, the headline ones first
    assert all("/" in key for key in keys), sorted(k for k in keys if "/" not in k)
    groups = sorted({key.rsplit("/", 1)[0] for key in keys})
    assert groups[: len(HEADLINE_GROUPS)] == sorted(HEADLINE_GROUPS)
    headline = [key for key in keys if key.rsplit("/", 1)[0] in HEADLINE_GROUPS]
    assert 10 <= len(headline) <= MAX_HEADLINE_CHARTS, sorted(headline)
    assert len(keys) > 4 * len(headline)  # the details are all there, after the headline
    # the per-epoch curves alone have steps; a test figure is one number, not a curve over h
    curves = {"loss/train", "loss/val", "train/lr", "train/windows_per_s"}
    assert curves <= keys
    for key in keys - curves:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0], key


def test_model_version_carries_the_champion_alias_the_digest_and_headline_ratios(in_cli_store: CliModel) -> None:
    client = MlflowClient()
    version = client.get_model_version_by_alias(in_cli_store.name, "champion")
    assert str(version.version) == "1" and version.run_id == in_cli_store.run.run_id
    assert "champion" in version.aliases
    assert version.tags["data_digest"] == in_cli_store.run.dataset_digest
    metrics = in_cli_store.run.metrics
    assert float(version.tags["mae_vs_naive"]) == pytest.approx(
        np.mean(metrics["model"]["mae"]) / np.mean(metrics["naive"]["mae"]), rel=1e-3
    )
    assert float(version.tags["spl_vs_ewma"]) == pytest.approx(
        np.mean(metrics["model"]["spl"]) / np.mean(metrics["ewma"]["spl"]), rel=1e-3
    )
    assert len(version.tags) <= MAX_VERSION_TAGS, version.tags  # the rest stays on the run


def test_unknown_model_or_alias_is_model_not_found(mlflow_store: MlflowStore) -> None:
    with pytest.raises(ModelNotFoundError, match="model 'ghost': alias 'champion' not found"):
        tracking.load_forecaster("models:/ghost@champion")
    assert tracking.alias_version("ghost", "champion") is None


def test_configure_without_uri_uses_a_sqlite_file_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking.resolve_tracking_uri()
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert tracking.resolve_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


def test_redact_hides_passwords_in_store_uris() -> None:
    from forecaster.errors import redact

    assert (
        redact("postgresql+psycopg2://mlflow:s3cret@db:5432/mlflow")
        == "postgresql+psycopg2://mlflow:***@db:5432/mlflow"
    )
    assert "s3cret" not in redact("http://user:s3cret@mlflow:5000")
    assert redact("sqlite:////tmp/x/mlflow.db") == "sqlite:////tmp/x/mlflow.db"


def test_runs_are_named_described_and_the_experiment_opens_in_the_training_view(in_cli_store: CliModel) -> None:
    client = MlflowClient()
    run = client.get_run(in_cli_store.run.run_id)
    assert run.info.run_name == "gru n-to-1, 2 tickers to " + f"{in_cli_store.frame['date'].max():%Y-%m-%d}"
    description = run.data.tags[tracking.NOTE_TAG]
    assert "2 tickers" in description and "Test SPL / ewma" in description
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    # the link train gives names the view (MLflow 3.17's UI opens the view its address names)
    link = ui_route(run.info.experiment_id, run.info.run_id)
    assert link == f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    assert link in in_cli_store.output
    version = client.get_model_version(in_cli_store.name, in_cli_store.run.version)
    assert version.description == description


def test_the_logged_pyfunc_carries_the_package_code_and_pinned_requirements(in_cli_store: CliModel) -> None:
    local = Path(mlflow.artifacts.download_artifacts(in_cli_store.run.model_uri))
    # the whole package travels with the model: it loads where forecaster is not installed
    assert (local / "code" / "forecaster" / "model" / "predictor.py").is_file()
    requirements = (local / "requirements.txt").read_text()
    for name in ("mlflow==", "torch==", "numpy==", "pandas==", "safetensors==", "pydantic=="):
        assert name in requirements, requirements


def test_the_installed_mlflow_ui_takes_its_view_from_the_workflow_type_in_the_address() -> None:
    """What `ui_route` relies on, read from the UI bundle MLflow ships: a `workflowType` query
    parameter whose values include machine_learning. Fails when an MLflow upgrade changes it."""
    bundles = list((Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js").glob("main.*.js"))
    assert bundles, "no MLflow UI bundle installed"
    code = bundles[0].read_text(encoding="utf-8", errors="replace")
    name, value = TRAINING_VIEW.split("=")
    assert f'get("{name}")' in code and f'MACHINE_LEARNING="{value}"' in code
