"""Registered model versions: which version a name and alias (or number) is, moving and reading
aliases, and what is written on a version (tags, description)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from forecaster.errors import ForecasterError, ModelNotFoundError
from forecaster.registry.names import CHAMPION, PREVIOUS
from forecaster.registry.store import STORE_ERRORS, is_not_found, registry_call, unavailable

# Registry versions are sequential integers; the backends store them in a 32-bit column (PostgreSQL
# INTEGER), so a larger number cannot exist and is answered as "not found", never sent as SQL.
MAX_VERSION = 2**31 - 1


@dataclass(frozen=True)
class ModelRef:
    """Which registered model version a loaded forecaster is."""

    name: str
    version: str
    alias: str | None
    run_id: str | None


def is_version_number(version: object) -> bool:
    """Whether `version` can be a registry version: a whole number from 1 to MAX_VERSION."""
    return str(version).isdigit() and 1 <= int(str(version)) <= MAX_VERSION


def resolve_version(name: str, alias: str | None = None, version: str | None = None) -> ModelRef:
    """The registry's answer for NAME@ALIAS or NAME/VERSION; clear errors when it has none.

    Errors name the model and never quote the store's answer beyond a redacted line: a failing
    SQL store puts its statement in the exception text."""
    what = f"alias '{alias}'" if alias is not None else f"version '{version}'"
    if alias is None and not is_version_number(version):
        raise ModelNotFoundError(f"model '{name}': {what} not found in the registry")
    try:
        client = MlflowClient()  # builds the store client: a SQL store connects here
        if alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(name, str(version))
    except STORE_ERRORS as exc:
        if isinstance(exc, MlflowException) and is_not_found(exc):
            raise ModelNotFoundError(f"model '{name}': {what} not found in the registry") from exc
        raise unavailable(f"cannot resolve model '{name}' at {mlflow.get_registry_uri()}", exc) from exc
    return ModelRef(name=name, version=str(mv.version), alias=alias, run_id=mv.run_id)


def alias_version(name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or alias does not exist."""
    try:
        return resolve_version(name, alias).version
    except ModelNotFoundError:
        return None


@registry_call
def model_registered(name: str) -> bool:
    """Whether the registry holds a model of this name."""
    try:
        MlflowClient().get_registered_model(name)
    except MlflowException as exc:
        if is_not_found(exc):
            return False
        raise
    return True


@registry_call
def set_alias(name: str, alias: str, version: str) -> None:
    """Point `alias` at `version`, then read it back: a store that accepted the move but answers
    another version (a concurrent writer won) is an error naming alias, expected and found."""
    client = MlflowClient()
    client.set_registered_model_alias(name, alias, version)
    found = str(client.get_model_version_by_alias(name, alias).version)
    if found != str(version):
        raise ForecasterError(
            f"registry: alias '{alias}' of model '{name}' points at version {found} after it was set to {version}"
        )


def make_champion(name: str, version: str) -> str | None:
    """`champion` -> `version`, the version it held kept as `previous` (so a rollback has somewhere
    to go); the one way every caller (the gate, `train --alias champion`) moves the champion.
    Returns the version that was champion, or None."""
    before = alias_version(name, CHAMPION)
    if before is not None and before != str(version):
        set_alias(name, PREVIOUS, before)
    set_alias(name, CHAMPION, version)
    return before


@registry_call
def delete_alias(name: str, alias: str) -> None:
    MlflowClient().delete_registered_model_alias(name, alias)


@registry_call
def set_version_tags(name: str, version: str, tags: dict[str, Any]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


@registry_call
def describe_version(name: str, version: str, text: str) -> None:
    """A registered version's description in the MLflow UI."""
    MlflowClient().update_model_version(name, version, description=text)
