"""What a model reference names, read from its text alone (no store is asked, no MLflow import).

The forms every command and the Python API take, as MLflow itself reads them:

    models:/NAME@ALIAS        a registered model's alias (models:/prices@champion)
    models:/NAME/VERSION      a registered model's version number (models:/prices/3)
    models:/m-<id>            an MLflow 3 logged model (what `forecaster train` prints unregistered)
    runs:/<run_id>/<path>     a model logged in a run (runs:/<id>/model)
    a folder (or file:// URI) a downloaded or saved MLflow model (holding artifacts/bundle) or a
                              bare bundle (config.json + weights.safetensors)
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from forecaster.errors import ModelNotFoundError

FORMS = "models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<id>, runs:/<run_id>/model or a model folder"
LOGGED_MODEL_PREFIX = "m-"  # MLflow 3 names every logged model m-<32 hex digits>
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: not a Windows drive
Kind = Literal["alias", "version", "logged", "run", "path"]


@dataclass(frozen=True)
class Reference:
    """A model reference taken apart: `kind` says which of the other fields are set."""

    uri: str
    kind: Kind
    name: str | None = None  # alias, version
    alias: str | None = None  # alias
    version: str | None = None  # version
    model_id: str | None = None  # logged
    run_id: str | None = None  # run
    artifact_path: str | None = None  # run: the model's folder in the run, e.g. "model"
    path: Path | None = None  # path


def parse_reference(uri: str) -> Reference:
    """The reference `uri` names, or a ModelNotFoundError saying which forms are accepted."""
    if not isinstance(uri, str) or not uri.strip():
        raise ModelNotFoundError(f"model_uri: expected {FORMS}, got {uri!r}")
    scheme = SCHEME.match(uri)
    if scheme is None:
        return Reference(uri, "path", path=Path(uri).expanduser())
    kind = scheme.group(1).lower()
    if kind == "models":
        return _models_uri(uri)
    if kind == "runs":
        return _runs_uri(uri)
    if kind == "file":
        parsed = urllib.parse.urlparse(uri)
        return Reference(uri, "path", path=Path(urllib.parse.unquote(parsed.path)))
    raise ModelNotFoundError(f"model_uri: expected {FORMS}, got '{uri}'")


def _models_uri(uri: str) -> Reference:
    body = uri.split(":", 1)[1]
    if not body.startswith("/") or not body.strip("/"):
        raise ModelNotFoundError(f"model_uri: expected {FORMS}, got '{uri}'")
    body = body.strip("/")
    if "@" in body:
        name, alias = body.split("@", 1)
        if name and alias and "/" not in body:
            return Reference(uri, "alias", name=name, alias=alias)
    elif "/" in body:
        name, version = body.rsplit("/", 1)
        if name and "/" not in name:
            return Reference(uri, "version", name=name, version=version)
    elif body.startswith(LOGGED_MODEL_PREFIX):
        return Reference(uri, "logged", model_id=body)
    else:
        raise ModelNotFoundError(
            f"model_uri: '{uri}' names no alias or version (use models:/{body}@ALIAS or models:/{body}/VERSION; "
            f"models:/{LOGGED_MODEL_PREFIX}<id> names a logged model)"
        )
    raise ModelNotFoundError(f"model_uri: expected {FORMS}, got '{uri}'")


def _runs_uri(uri: str) -> Reference:
    parts = uri.split(":", 1)[1].strip("/").split("/", 1)
    if len(parts) != 2 or not parts[0] or not parts[1].strip("/"):
        raise ModelNotFoundError(f"model_uri: '{uri}' names no model folder of the run (use runs:/<run_id>/model)")
    return Reference(uri, "run", run_id=parts[0], artifact_path=parts[1].strip("/"))
