"""The one loader: a model reference -> a ready Forecaster, and which model it is.

Downloads the bundle artifact and rebuilds the network from JSON + safetensors; no pickled
object is ever loaded.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from forecaster.errors import ForecasterError, ModelLoadError, ModelNotFoundError, one_line
from forecaster.model.artifact import load_bundle
from forecaster.model.predictor import Forecaster
from forecaster.registry.logged_model import BUNDLE_ARTIFACT
from forecaster.registry.store import STORE_ERROR_CHARS, STORE_ERRORS, is_not_found, unavailable
from forecaster.registry.versions import ModelRef, resolve_version


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    if not uri.startswith("models:/"):
        raise ModelNotFoundError(f"model_uri: expected models:/NAME@ALIAS or models:/NAME/VERSION, got '{uri}'")
    body = uri.removeprefix("models:/").strip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, alias, None
    if "/" in body:
        name, version = body.rsplit("/", 1)
        return name, None, version
    raise ModelNotFoundError(f"model_uri: '{uri}' names no alias or version (use models:/NAME@ALIAS)")


def load_forecaster(
    model_uri: str | None = None, device: str = "auto", ref: ModelRef | None = None
) -> tuple[Forecaster, ModelRef]:
    """The one loader: registry URI -> (ready Forecaster on `device`, which version it is).

    A store that cannot be reached is RegistryUnavailableError (try again later); an artifact
    that is missing or cannot be read is ModelLoadError (this version will not load, whoever
    asks again).
    """
    if ref is None:
        if model_uri is None:
            raise ValueError("load_forecaster: give a model_uri or a resolved ref")
        name, alias, version = parse_model_uri(model_uri)
        ref = resolve_version(name, alias, version)
    what = f"model '{ref.name}' version {ref.version}"
    try:
        local = mlflow.artifacts.download_artifacts(f"models:/{ref.name}/{ref.version}")
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{what} cannot be loaded: its artifact is missing ({exc.strerror})") from exc
    except STORE_ERRORS as exc:
        if isinstance(exc, MlflowException) and is_not_found(exc):
            raise ModelLoadError(f"{what} cannot be loaded: its artifact is missing") from exc
        raise unavailable(f"cannot download {what}", exc) from exc
    bundle_dir = Path(local) / "artifacts" / BUNDLE_ARTIFACT
    try:
        return Forecaster(load_bundle(bundle_dir), device=device), ref
    except Exception as exc:  # noqa: BLE001 - an artifact is outside input: any failure to read it means this version
        raise ModelLoadError(f"{what} cannot be loaded: {_load_cause(exc, Path(local))}") from exc


def _load_cause(exc: Exception, local: Path) -> str:
    """The cause of a failed load in one line, without the local download path."""
    text = one_line(exc, STORE_ERROR_CHARS).replace(f"{local}/", "").replace(str(local), "the artifact")
    return text if isinstance(exc, ForecasterError) else f"{type(exc).__name__}: {text}"
