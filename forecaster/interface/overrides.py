"""Entry-point glue: settings from flags and YAML files, through pydantic-settings' own sources.

`forecaster train` and `forecaster retrain` address every setting by its dotted name
(``--data.lookback 30``, ``--training.train.lr 1e-3``), parsed by pydantic-settings' CLI source
against the config models themselves, so a new field of `forecaster.config` is a flag at once.
The flat shortcuts (``--epochs 5``) are rewritten to their dotted names from one table
(`config.SHORTCUTS`).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings, CliSettingsSource, SettingsConfigDict, SettingsError

from forecaster.config import SHORTCUTS, TrainingConfig, describe
from forecaster.errors import ForecasterError

CLI_OPTIONS = SettingsConfigDict(cli_kebab_case=True, cli_exit_on_error=False, cli_implicit_flags=True)


def cli_values(model: type[BaseModel], args: list[str], prog: str) -> dict[str, Any]:
    """Nested values of the flags in `args` (``--data.lookback 30`` or ``--data.lookback=30``)
    for a config model; an unknown or malformed flag is one error naming it."""
    if not args:
        return {}
    settings_cls = model if issubclass(model, BaseSettings) else _as_settings(model)
    try:
        return dict(CliSettingsSource(settings_cls, cli_parse_args=args, cli_prog_name=prog)())
    except SettingsError as exc:
        raise ForecasterError(f"{prog}: {str(exc).removeprefix('error parsing CLI: ')}") from None


def _as_settings(model: type[BaseModel]) -> type[BaseSettings]:
    config = SettingsConfigDict(**{**model.model_config, **CLI_OPTIONS})
    return type(f"{model.__name__}Flags", (BaseSettings, model), {"model_config": config})


def expand_shortcuts(args: list[str], prefix: str = "") -> list[str]:
    """``--epochs 5`` / ``--hidden=8`` -> ``--{prefix}train.epochs 5`` / ``--{prefix}model.hidden-size=8``."""
    expanded = []
    for arg in args:
        name, eq, value = arg.partition("=")
        key = name.removeprefix("--").replace("-", "_")
        if name.startswith("--") and key in SHORTCUTS:
            arg = "--" + (prefix + SHORTCUTS[key]).replace("_", "-") + eq + value
        expanded.append(arg)
    return expanded


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of settings, or one clear error naming the file."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ForecasterError(f"config: cannot read '{path}': {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ForecasterError(f"config: '{path}' is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ForecasterError(f"config: '{path}' must hold a mapping of settings")
    return loaded


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every leaf of a nested mapping."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def settings_help(model: type[BaseModel], prefix: str = "") -> str:
    """One line per setting: ``--dotted-name  [choices: ]description (default: X)``, for --help texts."""
    lines = []
    for name, description, default in describe(model):
        flag = "--" + (prefix + name).replace("_", "-")
        lines.append(f"{flag}  {_listed(setting_choices(name, model))}{description} (default: {default})".strip())
    return "\n".join(lines)


def setting_choices(dotted: str, model: type[BaseModel] = TrainingConfig) -> tuple[str, ...]:
    """The values a Literal setting takes (``model.arch`` -> ('lstm', 'gru', 'rnn')); () for any other."""
    head, _, rest = dotted.partition(".")
    field = model.model_fields.get(head)
    annotation: Any = None if field is None else field.annotation
    if rest:
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        return setting_choices(rest, annotation) if nested else ()
    return _literal_values(annotation)


def _literal_values(annotation: Any) -> tuple[str, ...]:
    origin = get_origin(annotation)
    if origin is Literal:
        return tuple(str(value) for value in get_args(annotation))
    if origin in (Union, types.UnionType):  # Literal[...] | None
        return tuple(value for arg in get_args(annotation) for value in _literal_values(arg))
    return ()


def _listed(choices: tuple[str, ...]) -> str:
    return f"{' | '.join(choices)}: " if choices else ""


def to_yaml(values: Mapping[str, Any]) -> str:
    """The resolved configuration as YAML, in declaration order."""
    return yaml.safe_dump(dict(values), sort_keys=False, default_flow_style=False)


def shortcut_help(short: str) -> str:
    """Help text of a flat flag: the choices, description and default of the setting it stands for."""
    dotted = SHORTCUTS[short]
    for name, description, default in describe(TrainingConfig):
        if name == dotted:
            return f"{_listed(setting_choices(dotted))}{description} (default: {default})"
    raise KeyError(short)


def resolve_training(
    config_file: str | Path | None, args: list[str], shortcuts: Mapping[str, Any], prog: str = "forecaster train"
) -> TrainingConfig:
    """Defaults < YAML file < dotted flags (``--data.lookback 30``) < shortcut flags (``--lookback 30``)."""
    base = TrainingConfig.model_validate(read_yaml(config_file)) if config_file else TrainingConfig()
    flags = dict(flatten(cli_values(TrainingConfig, args, prog)))
    flags.update({SHORTCUTS[name]: value for name, value in shortcuts.items()})
    return base.with_overrides(flags)
