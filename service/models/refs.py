"""How the service names a model reference: its key (model, alias or version, or one fixed
reference), its label in answers and logs (NAME@ALIAS, NAME/VERSION, the reference) and its `ref`
label in metrics; and `StaticRef`, what a fixed reference that names no registered version loaded."""

from __future__ import annotations

from dataclasses import dataclass

from forecaster.errors import redact
from forecaster.registry.names import CHAMPION
from forecaster.registry.tracking import parse_reference

Key = tuple[str, str, str]  # (name, "alias" | "version" | "uri", value)


@dataclass(frozen=True)
class StaticRef:
    """A fixed reference (settings' model_uri) that is no registered version: a logged model, a run's
    model or a folder. Named by the reference itself; no version (null in every answer)."""

    name: str
    uri: str
    run_id: str | None = None
    version: str | None = None
    alias: str | None = None


def key_of(name: str, alias: str | None, version: int | str | None) -> Key:
    """NAME/VERSION when a version is given, else NAME@ALIAS (champion when no alias is)."""
    return (name, "version", str(version)) if version is not None else (name, "alias", alias or CHAMPION)


def static_key(uri: str) -> Key:
    """The key of a fixed reference, never followed: named by its registered model's name where it
    names one (models:/NAME/VERSION, models:/NAME@ALIAS), else by the reference (a password in it hidden)."""
    reference = parse_reference(uri)
    registered = reference.kind in ("alias", "version") and reference.name is not None
    return (reference.name if registered and reference.name else redact(uri), "uri", uri)


def label(key: Key) -> str:
    name, kind, value = key
    if kind == "uri":
        return redact(value)
    return f"{name}@{value}" if kind == "alias" else f"{name}/{value}"


def metric_ref(key: Key) -> str:
    """The `ref` label of a reference's metrics: its alias, "version" for a pinned version, "uri"
    for a fixed reference."""
    _, kind, value = key
    return value if kind == "alias" else kind


def is_alias(key: Key) -> bool:
    return key[1] == "alias"
