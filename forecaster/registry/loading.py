"""The one loader: any model reference (`references`) -> a ready Forecaster, and which model it is.

A registered version is resolved through the registry (`versions`), a logged model, a run's model
or a folder is found directly; every one ends in the same place: the bundle (JSON + safetensors,
at ``artifacts/bundle`` of an MLflow model, or a bare bundle folder) rebuilt by `load_bundle`. No
pickled object is ever loaded, and a folder is loaded without importing MLflow. Errors name the
reference and what is wrong: not found (ModelNotFoundError), found but unreadable (ModelLoadError),
store down (RegistryUnavailableError).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, overload

from forecaster.errors import ForecasterError, ModelLoadError, ModelNotFoundError, one_line, redact
from forecaster.model.artifact import CONFIG_FILE, WEIGHTS_FILE, load_bundle
from forecaster.model.predictor import Forecaster
from forecaster.registry.logged_model import BUNDLE_ARTIFACT
from forecaster.registry.references import Reference, parse_reference
from forecaster.registry.store import STORE_ERROR_CHARS, is_not_found, unavailable

if TYPE_CHECKING:
    from forecaster.registry.versions import ModelRef


@dataclass(frozen=True)
class ModelSource:
    """Which model a reference loaded: name, version and alias for a registered version (else
    None), the run that logged it where known, the logged model's id, or the local folder."""

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    model_id: str | None = None
    path: str | None = None

    @property
    def label(self) -> str:
        """How messages name it: ``prices version 3`` or the reference itself."""
        return f"{self.name} version {self.version}" if self.version is not None else self.uri

    def describe(self) -> dict[str, str | None]:
        """The ``model`` block of a report: name, version, alias, run_id."""
        return {"name": self.name, "version": self.version, "alias": self.alias, "run_id": self.run_id}


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version); any other
    reference is a ModelNotFoundError (it names no registered version)."""
    ref = parse_reference(uri)
    if ref.kind not in ("alias", "version") or ref.name is None:
        raise ModelNotFoundError(f"model_uri: expected models:/NAME@ALIAS or models:/NAME/VERSION, got '{uri}'")
    return ref.name, ref.alias, ref.version


@overload
def load_forecaster(model_uri: str, device: str = "auto") -> tuple[Forecaster, ModelSource]: ...


@overload
def load_forecaster(model_uri: None = None, device: str = "auto", *, ref: ModelRef) -> tuple[Forecaster, ModelRef]: ...


def load_forecaster(
    model_uri: str | None = None, device: str = "auto", ref: ModelRef | None = None
) -> tuple[Forecaster, ModelSource] | tuple[Forecaster, ModelRef]:
    """The one loader: a reference (`references.FORMS`) -> (ready Forecaster on `device`, its ModelSource);
    a resolved registry version (`ref`, as the service holds it) -> (Forecaster, that ref).

    A store that cannot be reached is RegistryUnavailableError (try again later); a reference
    that names nothing is ModelNotFoundError; an artifact that is missing or cannot be read is
    ModelLoadError (this model will not load, whoever asks again).
    """
    if ref is not None:
        return _load_version(ref, device), ref
    if model_uri is None:
        raise ValueError("load_forecaster: give a model_uri or a resolved ref")
    reference = parse_reference(model_uri)
    if reference.kind in ("alias", "version"):
        from forecaster.registry.versions import resolve_version  # MLflow only for a reference in a store

        assert reference.name is not None  # set for these kinds
        version = resolve_version(reference.name, reference.alias, reference.version)
        source = ModelSource(model_uri, version.name, version.version, version.alias, version.run_id)
        return _load_version(version, device), source
    if reference.kind == "path":
        assert reference.path is not None
        return _build(_local_folder(reference), f"model '{model_uri}'", device), ModelSource(
            model_uri, path=str(reference.path)
        )
    source = _source_in_store(reference)
    local = _download(model_uri, f"model '{model_uri}'", reference)
    return _build(local, f"model '{model_uri}'", device), source


def _load_version(ref: ModelRef, device: str) -> Forecaster:
    what = f"model '{ref.name}' version {ref.version}"
    return _build(_download(f"models:/{ref.name}/{ref.version}", what), what, device)


def _download(uri: str, what: str, reference: Reference | None = None) -> Path:
    """The model's files on this machine (a local store's folder is used where it is)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from forecaster.registry.store import STORE_ERRORS

    try:
        return Path(mlflow.artifacts.download_artifacts(uri))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{what} cannot be loaded: its artifact is missing ({exc.strerror})") from exc
    except STORE_ERRORS as exc:
        if isinstance(exc, MlflowException) and is_not_found(exc):
            if reference is not None and reference.kind == "run":
                raise ModelNotFoundError(
                    f"{what}: run {reference.run_id} holds no '{reference.artifact_path}' artifact"
                ) from exc
            raise ModelLoadError(f"{what} cannot be loaded: its artifact is missing") from exc
        raise unavailable(f"cannot download {what}", exc) from exc


def _source_in_store(reference: Reference) -> ModelSource:
    """A logged model or a run's model, checked in the store (so 'no such run' is said as such)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from forecaster.registry.store import STORE_ERRORS

    client = MlflowClient()
    try:
        if reference.kind == "logged":
            assert reference.model_id is not None
            logged = client.get_logged_model(reference.model_id)
            return ModelSource(reference.uri, run_id=logged.source_run_id, model_id=logged.model_id)
        assert reference.run_id is not None
        run = client.get_run(reference.run_id)
        return ModelSource(reference.uri, run_id=run.info.run_id)
    except STORE_ERRORS as exc:
        if isinstance(exc, MlflowException) and is_not_found(exc):
            what = f"logged model '{reference.model_id}'" if reference.kind == "logged" else f"run '{reference.run_id}'"
            raise ModelNotFoundError(f"model '{reference.uri}': {what} not found at {_store()}") from exc
        raise unavailable(f"cannot look up model '{reference.uri}' at {_store()}", exc) from exc


def _store() -> str:
    import mlflow

    return redact(mlflow.get_tracking_uri())


def _local_folder(reference: Reference) -> Path:
    assert reference.path is not None
    if not reference.path.is_dir():
        there = "is not a folder" if reference.path.exists() else "does not exist"
        raise ModelNotFoundError(f"model '{reference.uri}': {reference.path} {there} (expected a model folder)")
    return reference.path


def bundle_folder(local: Path) -> Path | None:
    """The bundle inside an MLflow model folder (artifacts/bundle), or the folder itself when it is a
    bare bundle (config.json + weights.safetensors); None when it is neither."""
    for candidate in (local / "artifacts" / BUNDLE_ARTIFACT, local):
        if (candidate / CONFIG_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    if (local / "artifacts" / BUNDLE_ARTIFACT).is_dir():
        return local / "artifacts" / BUNDLE_ARTIFACT  # a damaged bundle: load_bundle names what is missing
    return None


def _build(local: Path, what: str, device: str) -> Forecaster:
    bundle_dir = bundle_folder(local)
    if bundle_dir is None:
        raise ModelLoadError(
            f"{what} cannot be loaded: the folder holds neither an MLflow model of this package "
            f"(artifacts/{BUNDLE_ARTIFACT}) nor a bundle ({CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    try:
        return Forecaster(load_bundle(bundle_dir), device=device)
    except Exception as exc:  # noqa: BLE001 - an artifact is outside input: any failure to read it means this model
        raise ModelLoadError(f"{what} cannot be loaded: {_load_cause(exc, local)}") from exc


def _load_cause(exc: Exception, local: Path) -> str:
    """The cause of a failed load in one line, without the local download path."""
    text = one_line(exc, STORE_ERROR_CHARS).replace(f"{local}/", "").replace(str(local), "the artifact")
    return text if isinstance(exc, ForecasterError) else f"{type(exc).__name__}: {text}"
