"""Contracts of the code layout (STYLE.md import rules) and lint, checked on every run."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(package: str) -> dict[str, set[str]]:
    """module path -> top-level names of everything it imports (at any depth in the file)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_forecaster_never_imports_service_or_pipelines() -> None:
    offenders = {
        module: sorted(n for n in names if n.split(".")[0] in ("service", "pipelines"))
        for module, names in imports_of("forecaster").items()
    }
    assert {m: n for m, n in offenders.items() if n} == {}


def test_service_and_pipelines_never_import_each_other() -> None:
    for package, other in (("service", "pipelines"), ("pipelines", "service")):
        bad = {m: n for m, n in imports_of(package).items() if any(x.split(".")[0] == other for x in n)}
        assert bad == {}, f"{package} imports {other}: {bad}"


def test_only_the_tracking_modules_import_mlflow() -> None:
    allowed = {"forecaster/tracking.py", "forecaster/pyfunc_model.py", "forecaster/pyfunc_entry.py"}
    users = {
        m
        for pkg in ("forecaster", "service", "pipelines")
        for m, n in imports_of(pkg).items()
        if any(x.split(".")[0] == "mlflow" for x in n)
    }
    assert users <= allowed, sorted(users - allowed)


def test_data_windows_and_scaling_need_no_torch() -> None:
    modules = imports_of("forecaster")
    for name in ("forecaster/data.py", "forecaster/windows.py", "forecaster/scaling.py", "forecaster/evaluate.py"):
        assert not any(x.split(".")[0] == "torch" for x in modules[name]), name


def test_networks_do_not_use_pandas() -> None:
    assert not any(x.split(".")[0] == "pandas" for x in imports_of("forecaster")["forecaster/models.py"])


@pytest.mark.skipif(shutil.which("ruff", path=str(Path(sys.executable).parent)) is None, reason="ruff not installed")
def test_code_is_lint_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    result = subprocess.run(
        [ruff, "check", "forecaster", "service", "pipelines", "tests"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.skipif(shutil.which("mypy", path=str(Path(sys.executable).parent)) is None, reason="mypy not installed")
def test_code_type_checks() -> None:
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    result = subprocess.run([mypy, "forecaster", "service", "pipelines"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


# What the service may use of the library: the predictor, the registry, server-side histories,
# forecast dates (the trading calendar), and their types (errors, config constants); the CLI
# helpers for its `serve` command.
SERVICE_MAY_IMPORT = {
    "forecaster",
    "forecaster.predict",
    "forecaster.tracking",
    "forecaster.sources",
    "forecaster.calendar",
    "forecaster.errors",
    "forecaster.config",
    "forecaster.rules",
    "forecaster.console",
}


def test_service_uses_only_the_predictor_registry_sources_and_their_types() -> None:
    used = {
        module: sorted(n for n in names if n.split(".")[0] == "forecaster" and n not in SERVICE_MAY_IMPORT)
        for module, names in imports_of("service").items()
    }
    assert {m: n for m, n in used.items() if n} == {}


def test_command_plugins_never_import_the_cli_that_loads_them() -> None:
    """forecaster.cli finds `serve` and `retrain` through entry points; the plugins import
    forecaster.console, so the dependency goes one way and there is no import loop."""
    for package in ("service", "pipelines"):
        bad = {m: n for m, n in imports_of(package).items() if "forecaster.cli" in n}
        assert bad == {}, bad


def test_inference_does_not_import_training() -> None:
    modules = imports_of("forecaster")
    for name in ("forecaster/predict.py", "forecaster/artifact.py", "forecaster/pyfunc_model.py"):
        assert {"forecaster.train", "forecaster.feed"}.isdisjoint(modules[name]), name
