"""What the command line imports: help imports neither torch nor MLflow (seconds each), nor (but
retrain's, which lists its settings) pandas or SQLAlchemy; a model folder is forecast without MLflow.
Each case runs in a fresh interpreter (this one has them all loaded)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
import pytest

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel

HEAVY = ("torch", "mlflow", "mlflow.genai", "pandas", "sqlalchemy")
ROOT = Path(__file__).parents[3]

# runs the command line in-process, then prints which heavy modules it imported
PROBE = f"""
import json, sys
from forecaster.interface.cli import app
try:
    app(sys.argv[1:], prog_name="forecaster")
except SystemExit as exc:
    code = exc.code
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def run_cli(*args: str, cwd: Path = ROOT) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    result: dict[str, object] = json.loads(lines[-1])
    return result


@pytest.mark.parametrize(
    ("args", "loaded"),
    [
        (["--help"], []),
        (["predict", "--help"], []),
        (["evaluate", "--help"], []),
        (["monitor", "--help"], []),
        (["serve", "--help"], []),
        (["retrain", "--help"], ["pandas"]),  # its help lists every setting, read from the settings class
    ],
)
def test_help_imports_neither_torch_nor_mlflow(args: list[str], loaded: list[str]) -> None:
    assert run_cli(*args) == {"code": 0, "loaded": loaded}


def test_a_model_folder_is_forecast_without_importing_mlflow(in_cli_store: CliModel, tmp_path: Path) -> None:
    folder = Path(mlflow.artifacts.download_artifacts(in_cli_store.run.model_uri, dst_path=str(tmp_path / "dl")))
    bundle = shutil.copytree(folder / "artifacts" / "bundle", tmp_path / "bundle")
    out = tmp_path / "forecasts.csv"
    for model in (folder, bundle):
        flags = ["--model", str(model), "--data", str(in_cli_store.data_path), "--out", str(out), "--device", "cpu"]
        result = run_cli("predict", *flags, cwd=tmp_path)
        assert result == {"code": 0, "loaded": ["torch", "pandas"]}  # torch forecasts; MLflow is never imported
        table = pd.read_csv(out)
        assert sorted(table["ticker"].unique()) == ["AAA", "BBB"]
        assert len(table) == 2 * in_cli_store.horizon


def test_batch_scoring_loads_no_torch_so_predict_can_import_it_while_reading_the_data() -> None:
    """forecaster predict imports torch in a background thread while it reads the bars; that only
    helps while batch scoring's own module (imported up front) needs no torch."""
    import subprocess
    import sys

    code = "import sys, forecaster.model.batch; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
