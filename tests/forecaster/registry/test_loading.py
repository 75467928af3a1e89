"""forecaster.registry.loading: the one loader takes every reference MLflow's own loader takes
(registered alias and version, logged model, run, downloaded or saved folder, bare bundle) and
each gives the very model that was trained; a reference that names nothing is one error naming it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pytest

from forecaster.data.windows import Panel
from forecaster.errors import ModelLoadError, ModelNotFoundError
from forecaster.registry import tracking

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import CliModel


def windows(model: CliModel) -> np.ndarray:
    panel = Panel.from_frame(model.frame)
    return panel.gather(panel.origins(model.lookback, model.horizon, need_future=False), model.lookback, 0).X


def references(model: CliModel, tmp_path: Path) -> dict[str, str]:
    """One reference of each form to the fixture's model (registered as tiny version 1)."""
    downloaded = Path(mlflow.artifacts.download_artifacts(model.run.model_uri, dst_path=str(tmp_path / "dl")))
    bundle = shutil.copytree(downloaded / "artifacts" / "bundle", tmp_path / "saved bundle")
    return {
        "alias": "models:/tiny@champion",
        "version": "models:/tiny/1",
        "logged": model.run.model_uri,
        "run": f"runs:/{model.run.run_id}/model",
        "folder": str(downloaded),
        "bundle": str(bundle),
        "file uri": bundle.as_uri(),
    }


def test_every_reference_form_loads_the_trained_model(in_cli_store: CliModel, tmp_path: Path) -> None:
    assert in_cli_store.run.model_uri.startswith("models:/m-")  # what train prints
    X = windows(in_cli_store)
    want = in_cli_store.run.outcome.forecaster.predict_windows(X).quantiles

    for form, uri in references(in_cli_store, tmp_path).items():
        loaded, source = tracking.load_forecaster(uri, device="cpu")
        np.testing.assert_allclose(loaded.predict_windows(X).quantiles, want, rtol=1e-6, err_msg=form)
        assert source.uri == uri, form
        if form in ("alias", "version"):
            assert (source.name, source.version, source.run_id) == ("tiny", "1", in_cli_store.run.run_id)
        elif form in ("logged", "run"):
            assert (source.name, source.version, source.run_id) == (None, None, in_cli_store.run.run_id)
        else:
            assert (source.name, source.version, source.run_id) == (None, None, None)
            assert source.path is not None and Path(source.path).is_dir(), form
    assert tracking.load_forecaster(references(in_cli_store, tmp_path / "2")["logged"])[1].model_id == (
        in_cli_store.run.model_uri.removeprefix("models:/")
    )


def test_a_resolved_ref_loads_as_the_service_asks_for_it(in_cli_store: CliModel) -> None:
    ref = tracking.resolve_version("tiny", alias="champion")
    loaded, same = tracking.load_forecaster(device="cpu", ref=ref)
    assert same is ref and loaded.lookback == in_cli_store.lookback


@pytest.mark.parametrize(
    ("uri", "error", "message"),
    [
        ("models:/m-00000000000000000000000000000000", ModelNotFoundError, "logged model 'm-0000"),
        ("runs:/0123456789abcdef/model", ModelNotFoundError, "run '0123456789abcdef' not found at sqlite:"),
        ("models:/tiny@ghost", ModelNotFoundError, "model 'tiny': alias 'ghost' not found in the registry"),
        ("models:/tiny/99", ModelNotFoundError, "model 'tiny': version '99' not found in the registry"),
    ],
)
def test_a_reference_to_nothing_names_it(in_cli_store: CliModel, uri: str, error: type, message: str) -> None:
    with pytest.raises(error) as caught:
        tracking.load_forecaster(uri, device="cpu")
    assert message in str(caught.value)


def test_a_run_without_that_artifact_and_folders_that_hold_no_model_are_named(
    in_cli_store: CliModel, tmp_path: Path
) -> None:
    run_id = in_cli_store.run.run_id
    with pytest.raises(ModelNotFoundError, match=f"runs:/{run_id}/nope': run {run_id} holds no 'nope' artifact"):
        tracking.load_forecaster(f"runs:/{run_id}/nope")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        tracking.load_forecaster(str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelNotFoundError, match="is not a folder"):
        tracking.load_forecaster(str(tmp_path / "file.txt"))
    with pytest.raises(ModelLoadError, match="holds neither an MLflow model of this package .* nor a bundle"):
        tracking.load_forecaster(str(tmp_path))


def test_a_damaged_bundle_in_a_folder_names_the_cause_not_the_path(in_cli_store: CliModel, tmp_path: Path) -> None:
    bundle = Path(references(in_cli_store, tmp_path)["bundle"])
    (bundle / "weights.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelLoadError) as caught:
        tracking.load_forecaster(str(bundle))
    assert str(caught.value).startswith(f"model '{bundle}' cannot be loaded: ")
