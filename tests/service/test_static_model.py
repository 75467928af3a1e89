"""One fixed model served as it is (`serve --model <reference>`, FORECASTER_MODEL_URI): a folder with
no registry at all, a run's model, a pinned version; /ready, /models and /forecast's `model` block
name it, its version null when it is not registered, and no alias is followed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import mlflow
import pytest
from test_serve_process import stop, wait_for

from forecaster.registry import tracking
from service.cli import model_setting
from service.main import create_app

if TYPE_CHECKING:  # fixtures' types (tests/service/conftest.py); not imported at run time
    from conftest import Registry


def model_folder(registry: Registry, tmp_path: Path) -> Path:
    """The registered model's files downloaded to a folder of its own (as `mlflow artifacts
    download` or a copy from a model store gives them)."""
    folder = Path(mlflow.artifacts.download_artifacts(registry.run.model_uri, dst_path=str(tmp_path / "dl")))
    return Path(shutil.copytree(folder, tmp_path / "served model"))


def check_answers(http: httpx.Client, registry: Registry, name: str, version: str | None, run_id: str | None) -> None:
    ready = http.get("/ready").json()
    assert (ready["status"], ready["model"], ready["alias"], ready["version"]) == ("ready", name, None, version)
    [listed] = http.get("/models").json()
    assert (listed["name"], listed["version"], listed["alias"], listed["run_id"]) == (name, version, None, run_id)
    assert (listed["lookback"], listed["horizon"]) == (registry.lookback, registry.horizon)
    response = http.post("/forecast", json={"history": registry.history()})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == {"name": name, "version": version, "alias": None, "run_id": run_id}
    assert len(response.json()["forecasts"][0]["points"]) == registry.horizon


@pytest.mark.slow
def test_serve_model_folder_runs_with_no_registry_at_all(registry: Registry, free_port, tmp_path: Path) -> None:
    folder = model_folder(registry, tmp_path)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))},
        "FORECASTER_TRACKING_URI": f"http://127.0.0.1:{free_port()}",  # nothing listens: any registry call fails
        "FORECASTER_LEDGER": "off",
        "FORECASTER_DATA_SOURCE": "file",
        "FORECASTER_DATA_PATH": str(registry.data_path),
        "FORECASTER_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    log_path = tmp_path / "serve.log"
    command = [str(Path(sys.executable).parent / "forecaster"), "serve", "--port", str(port), "--model", str(folder)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_for(http, process, log_path, "/ready", 200)
            check_answers(http, registry, str(folder), None, None)
            assert http.get("/ready").json()["registry"] == "unknown"  # never asked
        stop(process, log_path)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_runs_uri_is_served_as_it_is(registry: Registry, serve_built) -> None:
    uri = f"runs:/{registry.run.run_id}/model"
    with serve_built(create_app(registry.settings(model_uri=uri, model_name="unused", ledger="off"))) as http:
        check_answers(http, registry, uri, None, registry.run.run_id)


def test_a_pinned_version_is_served_with_its_name_and_number(registry: Registry, serve_built) -> None:
    uri = f"models:/{registry.model}/1"
    with serve_built(create_app(registry.settings(model_uri=uri, model_name="unused", ledger="off"))) as http:
        check_answers(http, registry, registry.model, "1", registry.run.run_id)


@pytest.mark.parametrize(
    ("value", "setting"),
    [
        ("prices", "model_name"),
        ("runs:/abc/model", "model_uri"),
        ("models:/prices/3", "model_uri"),
        ("./saved", "model_uri"),
        ("/srv/models/prices", "model_uri"),
        ("models:/bare", "model_uri"),
    ],
)
def test_serve_model_flag_takes_a_name_or_a_reference(value: str, setting: str) -> None:
    assert model_setting(value) == setting


def test_an_alias_given_as_the_fixed_model_is_resolved_once_and_never_followed(
    registry: Registry, serve_built, make_version
) -> None:
    first, _ = make_version("fixed")
    second, _ = make_version("fixed")
    tracking.set_alias("fixed", "champion", first)
    settings = registry.settings(model_uri="models:/fixed@champion", model_name="unused", ledger="off", api_key="k")
    with serve_built(create_app(settings)) as http:
        assert (http.get("/ready").json()["model"], http.get("/ready").json()["version"]) == ("fixed", first)
        tracking.set_alias("fixed", "champion", second)
        reload = http.post("/admin/reload", headers={"X-API-Key": "k"})
        assert reload.status_code == 200, reload.text
        assert reload.json()["changes"] == [] and reload.json()["models"] == {"models:/fixed@champion": first}
        assert http.get("/ready").json()["version"] == first
        response = http.post("/forecast", json={"history": registry.history()}, headers={"X-API-Key": "k"})
        assert response.status_code == 200, response.text
        assert response.json()["model"]["version"] == first


def test_a_malformed_model_reference_is_refused_naming_the_flag(tmp_path: Path) -> None:
    from test_serve_settings import serve as serve_command

    result = serve_command(tmp_path, "--port", "8000", "--model", "models:/bare")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error: --model: 'models:/bare' names no alias or version" in result.stderr
    assert "Traceback" not in result.stderr
