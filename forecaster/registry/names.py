"""The registry's names: the aliases the project moves (written here once) and the rules a model
name and an alias must follow. No MLflow import at module level, so settings and option parsing
can read the names without loading it."""

from __future__ import annotations

from collections.abc import Callable

# The alias served by default, the one it replaced (where `rollback` goes) and the last challenger.
CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


def check_names(model_name: str | None, alias: str | None) -> None:
    """A model name and alias the registry takes (MLflow's own rules) and a ``models:/NAME@ALIAS``
    URI can address (no '@' in a name), else a ValueError naming the flag; None: not given."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import (
        _validate_model_alias_name,
        _validate_model_alias_name_reserved,
        _validate_model_name,
    )

    checks: list[tuple[str, Callable[[str], None], str]] = []
    if model_name is not None:
        if not model_name.strip():
            raise ValueError("register_as (--model): a model name cannot be empty")
        if "@" in model_name:
            raise ValueError(
                f"register_as (--model): '{model_name}' contains '@', which models:/NAME@ALIAS URIs "
                "read as the start of an alias"
            )
        checks.append(("register_as (--model)", _validate_model_name, model_name))
    if alias is not None:
        rules = (_validate_model_alias_name, _validate_model_alias_name_reserved)
        checks += [("alias (--alias)", rule, alias) for rule in rules]
    for flag, rule, value in checks:
        try:
            rule(value)
        except MlflowException as exc:
            raise ValueError(f"{flag}: {exc.message}") from None
