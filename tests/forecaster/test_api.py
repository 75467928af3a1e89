"""The package-root API: forecaster.load / forecast / evaluate / train, the same results as the
command line, and a root that stays light to import (lazy names, train and evaluate still modules)."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from factories import random_ohlc
from pydantic import ValidationError
from typer.testing import CliRunner

import forecaster
from forecaster.data.validate import validate_ohlc
from forecaster.errors import ModelNotFoundError
from forecaster.interface.cli import app
from forecaster.model.predictor import Forecaster
from forecaster.registry import tracking

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel, MlflowStore

URI = "models:/tiny@champion"


def cli_evaluate_json(model: CliModel, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["evaluate", "--model", URI, "--data", str(model.data_path), "--json", "--device", "cpu", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def same_json(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal as JSON text (NaN is not equal to itself in a dict comparison)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_load_returns_the_registered_forecaster(in_cli_store: CliModel) -> None:
    model = forecaster.load(URI, device="cpu")

    assert isinstance(model, Forecaster)
    assert (model.lookback, model.horizon) == (in_cli_store.lookback, in_cli_store.horizon)


def test_load_tracking_uri_holds_for_that_call_only(
    in_cli_store: CliModel, tmp_path: Path, _empty_mlflow_db: Path
) -> None:
    other = tmp_path / "other.db"  # an empty store: no model 'tiny' there
    shutil.copyfile(_empty_mlflow_db, other)

    with pytest.raises(ModelNotFoundError):
        forecaster.load(URI, device="cpu", tracking_uri=f"sqlite:///{other}")

    assert os.environ["MLFLOW_TRACKING_URI"] == in_cli_store.store.uri
    assert isinstance(forecaster.load(URI, device="cpu"), Forecaster)  # the default store again


def test_entry_points_refuse_arguments_of_the_wrong_type_naming_them(in_cli_store: CliModel) -> None:
    model = forecaster.load(URI, device="cpu")
    bars = in_cli_store.frame

    with pytest.raises(TypeError, match="model_uri: expected text models:/NAME@ALIAS"):
        forecaster.load(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model: expected a Forecaster"):
        forecaster.api.evaluate(3, bars)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model: expected a Forecaster"):
        forecaster.forecast(3, bars)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bars: expected a pandas DataFrame .* got list"):
        model.forecast([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bars: .* got str .*read_ohlc_file"):
        model.forecast("file.csv")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bars: expected a pandas DataFrame"):
        forecaster.api.evaluate(model, [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bars: expected a pandas DataFrame"):
        forecaster.api.train([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config: expected a TrainingConfig or a mapping"):
        forecaster.api.train(bars, config=5)  # type: ignore[arg-type]


def test_forecast_is_one_row_per_ticker_and_step_equal_to_window_and_predict(in_cli_store: CliModel) -> None:
    model = forecaster.load(URI, device="cpu")
    bars = pd.read_csv(in_cli_store.data_path)  # raw: text dates, validated by the API

    table = forecaster.forecast(model, bars)

    assert list(table.columns) == ["ticker", "as_of", "step", "date", "close", "q0.1", "q0.5", "q0.9"]
    assert len(table) == 2 * in_cli_store.horizon
    pd.testing.assert_frame_equal(model.forecast(bars), table)
    pd.testing.assert_frame_equal(forecaster.forecast(URI, bars), table)  # by URI: loaded on the way
    for ticker, history in validate_ohlc(bars).groupby("ticker"):
        rows = table[table["ticker"] == ticker]
        window = model.window(history).values[None]
        expected = model.predict_windows(window).quantiles[0]
        np.testing.assert_allclose(rows[["q0.1", "q0.5", "q0.9"]], expected, rtol=1e-6)


def test_forecast_as_of_cuts_the_history(in_cli_store: CliModel) -> None:
    cut = in_cli_store.frame["date"].sort_values().unique()[-10]
    table = forecaster.forecast(forecaster.load(URI, device="cpu"), in_cli_store.frame, as_of=cut)
    assert (table["as_of"] == cut).all() and (table["date"] > cut).all()


def test_load_takes_a_logged_model_a_run_and_a_folder_as_mlflow_does(in_cli_store: CliModel, tmp_path: Path) -> None:
    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(in_cli_store.run.model_uri, dst_path=str(tmp_path)))
    want = forecaster.forecast(URI, in_cli_store.frame)
    for reference in (in_cli_store.run.model_uri, f"runs:/{in_cli_store.run.run_id}/model", str(folder), folder):
        pd.testing.assert_frame_equal(forecaster.load(reference, device="cpu").forecast(in_cli_store.frame), want)
    report = forecaster.evaluate(folder, in_cli_store.frame, device="cpu")
    assert report["model_uri"] == str(folder) and report["model"]["version"] is None
    with pytest.raises(ModelNotFoundError, match=f"model '{tmp_path / 'none'}': .* does not exist"):
        forecaster.load(tmp_path / "none")


def test_forecast_as_of_past_the_data_is_an_error_unless_allowed_stale(in_cli_store: CliModel) -> None:
    from forecaster.errors import DataError

    last = in_cli_store.frame["date"].max()
    with pytest.raises(DataError, match=f"2099-06-26 is past the data: the data's last bar is {last:%Y-%m-%d}"):
        forecaster.forecast(URI, in_cli_store.frame, as_of="2099-06-26")
    table = forecaster.forecast(URI, in_cli_store.frame, as_of="2099-06-26", allow_stale=True)
    assert (table["as_of"] == last).all() and (table["stale_days"] == (pd.Timestamp("2099-06-26") - last).days).all()


def test_evaluate_returns_what_the_cli_prints_as_json(in_cli_store: CliModel) -> None:
    printed = cli_evaluate_json(in_cli_store)
    origin = str(in_cli_store.data_path.resolve())
    bars = pd.read_csv(in_cli_store.data_path)

    by_model = forecaster.evaluate(forecaster.load(URI, device="cpu"), bars, data=origin)
    by_uri = forecaster.evaluate(URI, bars, data=origin, device="cpu")

    assert same_json(by_model, printed)
    assert same_json(by_uri, printed)
    assert printed["model"]["version"] == "1" and printed["model_uri"] == URI


def test_evaluate_from_date_matches_the_cli_from(in_cli_store: CliModel) -> None:
    cut = f"{pd.Timestamp(in_cli_store.frame['date'].sort_values().unique()[80]):%Y-%m-%d}"
    printed = cli_evaluate_json(in_cli_store, "--from", cut)
    report = forecaster.evaluate(URI, in_cli_store.frame, from_date=cut, data=printed["data"], device="cpu")
    assert same_json(report, printed)


def test_evaluate_of_a_model_trained_in_memory_names_no_registry_version(in_cli_store: CliModel) -> None:
    report = forecaster.evaluate(in_cli_store.run.outcome.forecaster, in_cli_store.frame)
    assert report["model"] is None and report["model_uri"] is None and report["data"] == "DataFrame"
    assert report["n_series"] == 2 and {"model", "naive"} <= set(report["metrics"])


def test_train_registers_aliases_and_the_alias_loads_and_forecasts(mlflow_store: MlflowStore) -> None:
    bars = random_ohlc(tickers=("AAA", "BBB"), days=90, seed=11)
    settings = {"data.lookback": 10, "data.horizon": 2, "model.hidden_size": 4, "model.head_size": 8}
    config = {"train": {"epochs": 1, "batch_size": 64, "device": "cpu"}}  # a mapping is validated

    run = forecaster.train(bars, register_as="api", alias="champion", config=config, **settings)

    assert run.version == "1" and tracking.alias_version("api", "champion") == "1"
    assert tracking.resolve_version("api", alias="champion").run_id == run.run_id
    model = forecaster.load("models:/api@champion", device="cpu")
    assert (model.lookback, model.horizon) == (10, 2)
    pd.testing.assert_frame_equal(model.forecast(bars), run.outcome.forecaster.forecast(bars), rtol=1e-6)


def test_train_refuses_unknown_settings_and_an_alias_without_a_name(mlflow_store: MlflowStore) -> None:
    bars = random_ohlc(days=60)
    with pytest.raises(ValueError, match="unknown setting 'train.epoch'"):
        forecaster.train(bars, **{"train.epoch": 1})
    with pytest.raises(ValueError, match="alias: an alias needs register_as"):
        forecaster.train(bars, alias="champion")


def test_train_names_a_bad_setting_value_in_one_line_as_the_cli_does(mlflow_store: MlflowStore) -> None:
    bars = random_ohlc(days=60)
    for given in ({"train.lr": "abc"}, {"config": {"train": {"lr": "abc"}}}):
        with pytest.raises(ValueError, match=r"^train\.lr: Input should be a valid number.*\(got 'abc'\)$") as caught:
            forecaster.train(bars, **given)
        assert not isinstance(caught.value, ValidationError)  # not pydantic's multi-line report


def test_train_and_evaluate_are_the_api_functions_with_their_parameters() -> None:
    from forecaster import api

    assert forecaster.train is api.train and forecaster.evaluate is api.evaluate
    assert list(inspect.signature(forecaster.train).parameters)[:4] == ["bars", "register_as", "alias", "lookback"]
    assert "model" in inspect.signature(forecaster.evaluate).parameters
    assert {"load", "forecast", "train", "evaluate"} <= set(forecaster.__all__) <= set(dir(forecaster))
    with pytest.raises(AttributeError):
        forecaster.no_such_name  # noqa: B018


def run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2], timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_the_config_loads_neither_torch_nor_mlflow() -> None:
    code = "import sys, forecaster.config; print(sorted(m for m in ('torch', 'mlflow') if m in sys.modules))"
    assert run_python(code) == "[]"


def test_the_api_names_do_not_depend_on_what_was_imported_first() -> None:
    code = (
        "import forecaster.run.steps, forecaster\n"  # imports the fit and backtest modules first
        "print(forecaster.train.__module__, forecaster.evaluate.__module__, forecaster.load.__module__)"
    )
    assert run_python(code) == "forecaster.api forecaster.api forecaster.api"


def test_the_flat_layout_import_paths_still_work_with_a_warning() -> None:
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "import forecaster.model.predictor as new\n"
        "try:\n    import forecaster.predict\nexcept DeprecationWarning as w:\n    print(w)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        "from forecaster.tracking import load_forecaster\n"
        "from forecaster.predict import Forecaster\n"
        "print(Forecaster is new.Forecaster, load_forecaster.__module__, callable(__import__('forecaster').train))"
    )
    assert run_python(code).splitlines() == [
        "forecaster.predict moved to forecaster.model.predictor; the old path goes in 0.3",
        "True forecaster.registry.loading True",
    ]
