"""The `forecaster` command line: train registers and aliases a model and says which;
evaluate --json reports the same rolling-origin numbers as forecaster.evaluation.backtest; bad input
is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from factories import random_ohlc, to_csv
from typer.testing import CliRunner

from forecaster.data.validate import validate_ohlc
from forecaster.data.windows import Panel
from forecaster.evaluation import backtest as ev
from forecaster.interface.cli import app
from forecaster.registry import tracking
from forecaster.run.steps import evaluate_frame

METRIC_NAMES = ["mae", "rmse", "mape", "mase", "dir_acc"]

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel, MlflowStore


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def evaluate_json(model: CliModel, *extra: str) -> dict[str, Any]:
    result = invoke(
        "evaluate",
        "--model",
        f"models:/{model.name}@champion",
        "--data",
        str(model.data_path),
        "--json",
        "--device",
        "cpu",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_train_prints_the_run_id_and_registered_version_and_sets_the_alias(in_cli_store: CliModel) -> None:
    printed = json.loads(in_cli_store.stdout.strip().splitlines()[-1])
    run = in_cli_store.run

    assert printed == {"run_id": run.run_id, "version": "1", "model_uri": run.model_uri}
    assert f"run id: {run.run_id}" in in_cli_store.output
    assert "registered: tiny version 1 (models:/tiny@champion)" in in_cli_store.output
    assert tracking.alias_version("tiny", "champion") == "1"
    assert tracking.resolve_version("tiny", alias="champion").run_id == run.run_id


def test_evaluate_json_reports_every_metric_per_step_for_model_and_baselines(in_cli_store: CliModel) -> None:
    model = in_cli_store
    payload = evaluate_json(model)

    assert payload["horizon"] == model.horizon
    assert payload["lookback"] == model.lookback
    assert payload["n_series"] == 2
    days = model.frame.groupby("ticker").size()
    assert payload["n_origins"] == sum(n - model.lookback - model.horizon + 1 for n in days) == 2 * 109
    assert payload["model"]["version"] == "1" and payload["model"]["alias"] == "champion"
    assert {"model", "naive", "drift", "ewma"} <= set(payload["metrics"])  # garch needs 250 returns per ticker
    for name in ("model", "naive", "drift", "ewma"):
        for metric in METRIC_NAMES:
            values = payload["metrics"][name][metric]
            assert len(values) == model.horizon and all(np.isfinite(values)), (name, metric)


def test_evaluate_json_equals_forecaster_evaluate_computed_directly(in_cli_store: CliModel) -> None:
    model = in_cli_store
    payload = evaluate_json(model)
    frame = validate_ohlc(pd.read_csv(model.data_path))
    panel = Panel.from_frame(frame)
    origins = ev.rolling_origins(panel, model.lookback, model.horizon)

    direct = ev.score(ev.backtest(None, panel, model.lookback, model.horizon, origins))

    assert payload["metrics"]["naive"] == direct["naive"]
    assert payload["metrics"]["drift"] == direct["drift"]
    # and the model's numbers are those of the trained forecaster held in memory
    in_memory = ev.score(evaluate_frame(model.run.outcome.forecaster, frame, model.lookback, model.horizon))
    for metric in METRIC_NAMES:
        assert payload["metrics"]["model"][metric] == pytest.approx(in_memory["model"][metric], rel=1e-9)


def test_evaluate_from_date_scores_only_later_origins(in_cli_store: CliModel) -> None:
    model = in_cli_store
    cut = model.frame["date"].sort_values().unique()[80]
    payload = evaluate_json(model, "--from", f"{pd.Timestamp(cut):%Y-%m-%d}")

    per_ticker_dates = model.frame.groupby("ticker")["date"]
    expected = 0
    for _, dates in per_ticker_dates:
        origin_dates = dates.iloc[model.lookback - 1 : len(dates) - model.horizon]
        expected += int((origin_dates >= cut).sum())
    assert payload["n_origins"] == expected
    assert 0 < expected < 2 * 109


def test_evaluate_unknown_model_is_one_line_and_exit_code_2(in_cli_store: CliModel) -> None:
    result = invoke("evaluate", "--model", "models:/nope@champion", "--data", str(in_cli_store.data_path))
    assert result.exit_code == 2
    assert "model 'nope': alias 'champion' not found" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("where", ["relative", "long absolute", "brackets"])
def test_train_with_a_missing_data_file_is_one_line_naming_it_and_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = {
        "relative": "missing.csv",
        "brackets": "prices[red].csv",  # not taken for rich markup
        "long absolute": str(tmp_path / "some" / "deeper" / "folder" / "with_a_long_name" / "missing.csv"),
    }[where]
    result = invoke("train", "--data", path)

    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert path in lines[0] and "does not exist" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "mlruns").exists()  # failed before touching any store


def test_train_with_bad_rows_names_ticker_and_date_and_exit_code_2(mlflow_store: MlflowStore) -> None:
    frame = random_ohlc(tickers=("AAA",), days=40)
    frame.loc[7, "high"] = frame.loc[7, "low"] * 0.5
    to_csv(frame, mlflow_store.root / "bars.csv")

    result = invoke("train", "--data", "bars.csv", "--lookback", "5", "--horizon", "2")

    assert result.exit_code == 2
    assert f"ticker AAA date {frame.loc[7, 'date']:%Y-%m-%d}" in result.output
    assert "high below max(open, close)" in result.output
    assert "Traceback" not in result.output


def test_train_rejects_an_alias_without_a_registered_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--data", "x.csv", "--alias", "champion")
    assert result.exit_code == 2
    assert "alias (--alias): an alias needs --model NAME" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "a:b"], "register_as (--model): Invalid model name 'a:b'"),
        (["--model", "a/b"], "register_as (--model): Invalid model name 'a/b'"),
        (["--model", " "], "register_as (--model): a model name cannot be empty"),
        (["--model", "x@y"], "register_as (--model): 'x@y' contains '@'"),
        (
            ["--register-as", "m", "--alias", "latest"],
            "alias (--alias): 'latest' alias name (case insensitive) is reserved",
        ),
        (["--model", "m", "--alias", "v3"], "alias (--alias): Version alias name 'v3' is reserved"),
        (["--model", "m", "--alias", "bad alias"], "alias (--alias): Invalid alias name: 'bad alias'"),
    ],
)
def test_train_refuses_a_name_the_registry_or_a_model_uri_cannot_take_before_reading_data(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the data file does not exist: the names are checked first
    result = invoke("train", "--data", "missing.csv", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "mlruns").exists()  # no run, no registry touched


def test_train_refuses_a_start_after_the_end_naming_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--start", "2012-01-01", "--end", "2011-01-01")
    assert result.exit_code == 2
    assert "start: 2012-01-01 is after end 2011-01-01 (--start, --end)" in result.output


def test_train_on_several_machines_needs_a_rendezvous_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--data", "missing.csv", "--nnodes", "2")
    assert result.exit_code == 2
    assert "--nnodes 2: needs --rdzv-endpoint HOST:PORT" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "x.csv", "--source", "yfinance", "--tickers", "A"], "source: a path (--data x.csv) and source"),
    ],
)
def test_train_refuses_flags_that_contradict_each_other(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_empty_train_levels_on_the_command_line_mean_only_the_served_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--model.train-levels", "", "--print-config")
    assert result.exit_code == 0, result.output
    assert "train_levels: []" in result.output
    result = invoke("train", "--model.train-levels", "0.2, 0.8", "--print-config")
    assert "train_levels:\n  - 0.2\n  - 0.8" in result.output


def test_the_uri_train_prints_without_registering_is_what_predict_and_evaluate_take(
    mlflow_store: MlflowStore, tmp_path: Path
) -> None:
    frame = random_ohlc(tickers=("AAA", "BBB"), days=80, seed=11)
    to_csv(frame, mlflow_store.root / "bars.csv")
    tiny = ["--lookback", "10", "--horizon", "2", "--epochs", "1", "--hidden", "4", "--batch-size", "64"]
    trained = invoke("train", "--data", "bars.csv", *tiny, "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    printed = json.loads(trained.stdout.strip().splitlines()[-1])
    assert printed["version"] is None and printed["model_uri"].startswith("models:/m-")

    out = tmp_path / "f.csv"
    data = ["--data", "bars.csv", "--device", "cpu"]
    predicted = invoke("predict", "--model", printed["model_uri"], *data, "--out", str(out))
    assert predicted.exit_code == 0, predicted.output
    table = pd.read_csv(out)
    assert sorted(table["ticker"].unique()) == ["AAA", "BBB"] and len(table) == 4
    by_run = invoke("predict", "--model", f"runs:/{printed['run_id']}/model", *data, "--out", str(tmp_path / "r.csv"))
    assert by_run.exit_code == 0, by_run.output
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r.csv"), table)

    evaluated = invoke("evaluate", "--model", printed["model_uri"], *data, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert report["model_uri"] == printed["model_uri"]
    assert report["model"] == {"name": None, "version": None, "alias": None, "run_id": printed["run_id"]}


def test_version_prints_the_package_version() -> None:
    import forecaster

    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"forecaster {forecaster.__version__}"


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_help_fits_80_columns_in_panels_and_names_the_model_option_model(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer.rich_utils

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", None)  # TERMINAL_WIDTH in the environment would win
    text = invoke(command, "--help").stdout
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in text  # nothing cut
    assert "--model " in text and "--model-uri" not in text and "--register-as" not in text  # old names hidden
    panels = {line.strip("╭─ ").split(" ")[0] for line in lines if line.startswith("╭─")}
    assert {"Data", "Registry"} <= panels
    if command == "train":
        assert {"Model", "Training", "Settings"} <= panels and len(lines) < 120
        joined = " ".join(text.split())
        assert "lstm | gru | rnn: recurrent cell" in joined and "n-to-1 | seq2seq" in joined  # choices listed
    else:
        assert "models:/m-<id>, runs:/<run_id>/model or a model folder" in " ".join(text.split())


def test_settings_lists_every_dotted_flag_with_its_choices() -> None:
    from forecaster.config import TrainingConfig, describe

    result = invoke("train", "--settings")
    assert result.exit_code == 0, result.output
    for name, _, _ in describe(TrainingConfig):
        assert "--" + name.replace("_", "-") in result.stdout


def test_the_old_option_names_still_work_and_a_model_given_twice_is_refused(in_cli_store: CliModel) -> None:
    data = ["--data", str(in_cli_store.data_path), "--json", "--device", "cpu"]
    old = invoke("evaluate", "--model-uri", "models:/tiny@champion", *data)
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout.strip().splitlines()[-1])["model"]["version"] == "1"

    twice = invoke("evaluate", "--model", "models:/tiny/1", "--model-uri", "models:/tiny@champion", *data)
    assert twice.exit_code == 2
    assert "--model: given twice, as --model models:/tiny/1 and --model-uri models:/tiny@champion" in twice.output
    missing = invoke("predict", "--out", "f.csv")
    assert missing.exit_code == 2 and "--model: missing" in missing.output
    registered_twice = invoke("train", "--model", "a", "--register-as", "b")
    assert registered_twice.exit_code == 2 and "given twice" in registered_twice.output
