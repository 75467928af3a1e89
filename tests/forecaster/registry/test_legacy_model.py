"""A model logged by 0.1.0 (the flat package layout, before forecaster/ was split by stage) still
loads and serves: through `mlflow.pyfunc` in a fresh process (its own copy of the code), through
`mlflow.pyfunc` in a process that already runs this package (the old import paths resolve to the
moved modules), and through the one loader the service and the CLI use (bundle config + weights)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

import forecaster
from forecaster.registry import tracking

RECORDED = Path(__file__).parent / "recorded" / "model_0_1_0"
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}  # float32 network on another CPU: same numbers, not same bits


@pytest.fixture()
def legacy(tmp_path: Path) -> Path:
    """A copy of the recorded model directory (loading must not need to write next to it)."""
    target = tmp_path / "model"
    shutil.copytree(RECORDED / "model", target)
    return target


def bars() -> pd.DataFrame:
    return pd.read_csv(RECORDED / "bars.csv")


def expected() -> pd.DataFrame:
    return pd.read_csv(RECORDED / "expected.csv")


def test_a_0_1_0_model_loads_in_a_fresh_process_with_its_own_code(legacy: Path, tmp_path: Path) -> None:
    out = tmp_path / "answer.csv"
    code = (
        "import mlflow.pyfunc, pandas as pd, sys\n"
        f"answer = mlflow.pyfunc.load_model({str(legacy)!r}).predict(pd.read_csv({str(RECORDED / 'bars.csv')!r}))\n"
        f"answer.to_csv({str(out)!r}, index=False)\n"
        "print(sys.modules['forecaster'].__file__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(str(legacy / "code")), "the model's own copy of the code ran"
    pd.testing.assert_frame_equal(pd.read_csv(out), expected(), **TOLERANCE)


def test_a_0_1_0_model_loads_in_a_process_running_this_package(
    legacy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # MLflow prepends the model's code folder
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlflow.pyfunc.load_model(str(legacy))
    # its entry file imported forecaster.pyfunc_model: the moved module, not the model's copy
    assert sys.modules["forecaster"] is forecaster
    assert sys.modules["forecaster.pyfunc_model"] is sys.modules["forecaster.registry.pyfunc_model"]
    assert any("forecaster.pyfunc_model moved to forecaster.registry.pyfunc_model" in str(w.message) for w in caught)
    answer, before = model.predict(bars()), expected()
    # this package's wrapper answers as it does now: 0.1.0's columns, plus as_of and date
    assert set(answer.columns) == set(before.columns) | {"as_of", "date"}
    pd.testing.assert_frame_equal(answer[list(before.columns)], before, **TOLERANCE)


def test_a_0_1_0_model_registered_serves_through_the_one_loader(legacy: Path, mlflow_store) -> None:
    client = MlflowClient()
    client.create_registered_model("legacy")
    version = client.create_model_version("legacy", source=str(legacy)).version
    client.set_registered_model_alias("legacy", "champion", version)

    model, ref = tracking.load_forecaster("models:/legacy@champion", device="cpu")
    table = model.forecast(bars())

    assert ref.version == str(version) and (model.lookback, model.horizon) == (10, 2)
    want = expected().sort_values(["ticker", "step"]).reset_index(drop=True)
    pd.testing.assert_series_equal(
        table.sort_values(["ticker", "step"])["close"].reset_index(drop=True), want["close"], **TOLERANCE
    )
