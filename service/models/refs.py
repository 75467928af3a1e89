"""How the service names a model reference: its key (model, alias or version), its label in
answers and logs (NAME@ALIAS, NAME/VERSION) and its `ref` label in metrics."""

from __future__ import annotations

from forecaster.registry.names import CHAMPION

Key = tuple[str, str, str]  # (name, "alias" | "version", value)


def key_of(name: str, alias: str | None, version: int | str | None) -> Key:
    """NAME/VERSION when a version is given, else NAME@ALIAS (champion when no alias is)."""
    return (name, "version", str(version)) if version is not None else (name, "alias", alias or CHAMPION)


def label(key: Key) -> str:
    name, kind, value = key
    return f"{name}@{value}" if kind == "alias" else f"{name}/{value}"


def metric_ref(key: Key) -> str:
    """The `ref` label of a reference's metrics: its alias, or "version" for a pinned version."""
    _, kind, value = key
    return value if kind == "alias" else "version"


def is_alias(key: Key) -> bool:
    return key[1] == "alias"
