"""What every command line entry shares: the console, logging set-up and one-line errors.

Command plugins (`service.cli`, `pipelines.cli`) import this module, never `forecaster.cli`,
which finds them through entry points: the dependency goes one way.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from forecaster.errors import ForecasterError

console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    logging.getLogger("forecaster").setLevel(logging.INFO)
    for noisy in ("mlflow", "alembic", "yfinance"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its "Retrying..." lines: our error says it in one
    # MLflow's schema and dataset-source hints are about inputs we build on purpose
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")


def one_line(exc: Exception) -> str:
    """An error as one line: pydantic's multi-line report becomes 'field: message (got X)'."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']} (got {e.get('input')!r})"
            for e in exc.errors()
        )
    return " ".join(str(exc).split())


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library errors (and files that cannot be read or written) become one red line naming the
    problem and exit code 2, not a trace."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ForecasterError, ValueError, OSError) as exc:  # OSError: a file or folder that cannot be used
            # one line whatever the terminal width; the message is text, never rich markup
            console.print(f"[bold red]error:[/] {escape(one_line(exc))}", soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def parse_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None
