"""Contracts of the code layout (STYLE.md import rules, DESIGN.md's path) and lint, checked on every run."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# forecaster's sub-packages in the order of the data's path: a module imports only from its own
# sub-package or one before it. config and errors (rank 0) are read by all; the API and the
# command line sit on top.
RANK = {
    "forecaster.config": 0,
    "forecaster.errors": 0,
    "forecaster.data": 1,
    "forecaster.model": 2,
    "forecaster.evaluation": 3,
    "forecaster.registry": 4,
    "forecaster.run": 5,
    "forecaster.monitor": 5,  # the ledger, scoring, report: beside run, never importing it
    "forecaster.api": 6,
    "forecaster.interface": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Dotted names of everything a file imports, at any depth (``from a import b`` counts b when
    a.b is a module of ours)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if (ROOT / full.replace(".", "/")).with_suffix(".py").exists() or (
                    ROOT / full.replace(".", "/")
                ).is_dir():
                    names.add(full)
    return names


def sources(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "sample_data" not in p.parts]


def imports_of(package: str) -> dict[str, set[str]]:
    """file path (relative) -> dotted names of everything it imports."""
    return {str(p.relative_to(ROOT)): imported_modules(p) for p in sources(package)}


def rank_of(module: str) -> int | None:
    for prefix, rank in RANK.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def stage_of(module: str) -> str | None:
    return next((p for p in RANK if module == p or module.startswith(p + ".")), None)


def internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sources("forecaster"):
        module = module_name(path)
        graph[module] = {n for n in imported_modules(path) if n.startswith("forecaster.") and n != module}
    return graph


def test_every_module_of_forecaster_belongs_to_a_stage() -> None:
    loose = sorted(
        m for m in internal_graph() if rank_of(m) is None and m not in ("forecaster", "forecaster.__main__")
    )
    assert loose == ["forecaster._compat"], "a module outside the stages of DESIGN.md's path"


def test_forecaster_imports_only_downward_along_the_path() -> None:
    upward = {
        module: sorted(n for n in names if (rank_of(n) or 0) > (rank_of(module) or 0))
        for module, names in internal_graph().items()
        if rank_of(module) is not None
    }
    assert {m: n for m, n in upward.items() if n} == {}


def test_stages_of_the_same_rank_do_not_import_each_other() -> None:
    across = {
        module: sorted(n for n in names if rank_of(n) == rank_of(module) and stage_of(n) != stage_of(module))
        for module, names in internal_graph().items()
        if rank_of(module)
    }
    assert {m: n for m, n in across.items() if n} == {}


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk of `graph` closes (module -> the modules it imports)."""
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current trail, 2: done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state and nxt in graph:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return circles


def test_forecaster_has_no_import_circle() -> None:
    assert find_circles(internal_graph()) == []


def test_the_circle_check_finds_a_circle() -> None:
    assert find_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_config_and_errors_import_nothing_of_the_package() -> None:
    graph = internal_graph()
    assert graph["forecaster.config"] == set() and graph["forecaster.errors"] == set()


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


def test_only_the_registry_imports_mlflow() -> None:
    users = {
        m
        for pkg in ("forecaster", "service", "pipelines")
        for m, n in imports_of(pkg).items()
        if any(x.split(".")[0] == "mlflow" for x in n)
    }
    assert {u for u in users if not u.startswith("forecaster/registry/")} == set()


def test_data_and_the_transform_need_no_torch() -> None:
    modules = imports_of("forecaster")
    checked = [m for m in modules if m.startswith("forecaster/data/")]
    checked += ["forecaster/model/scaling.py", "forecaster/evaluation/backtest.py"]
    assert {m for m in checked if any(x.split(".")[0] == "torch" for x in modules[m])} == set()


def test_networks_do_not_use_pandas() -> None:
    assert not any(x.split(".")[0] == "pandas" for x in imports_of("forecaster")["forecaster/model/networks.py"])


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
# forecast dates (the trading calendar), the rules of a bar, and their types (errors, config
# constants); the console helpers for its `serve` command.
SERVICE_MAY_IMPORT = {
    "forecaster",
    "forecaster.model",
    "forecaster.model.predictor",
    "forecaster.registry",
    "forecaster.registry.tracking",
    "forecaster.registry.names",
    "forecaster.data",
    "forecaster.data.sources",
    "forecaster.data.calendar",
    "forecaster.data.rules",
    "forecaster.errors",
    "forecaster.config",
    "forecaster.interface",
    "forecaster.interface.console",
    "forecaster.monitor.schema",  # the forecast ledger's rows and store (service/ledger.py)
    "forecaster.monitor.store",
}


def test_service_uses_only_the_predictor_registry_sources_and_their_types() -> None:
    used = {
        module: sorted(n for n in names if n.split(".")[0] == "forecaster" and n not in SERVICE_MAY_IMPORT)
        for module, names in imports_of("service").items()
    }
    assert {m: n for m, n in used.items() if n} == {}


def test_command_plugins_never_import_the_cli_that_loads_them() -> None:
    """forecaster's command line finds `serve` and `retrain` through entry points; the plugins import
    forecaster.interface.console, so the dependency goes one way and there is no import loop."""
    for package in ("service", "pipelines"):
        bad = {m: n for m, n in imports_of(package).items() if "forecaster.interface.cli" in n}
        assert bad == {}, bad


def test_inference_does_not_import_training() -> None:
    modules = imports_of("forecaster")
    inference = ("forecaster/model/predictor.py", "forecaster/model/artifact.py", "forecaster/registry/pyfunc_model.py")
    for name in inference:
        assert {"forecaster.model.fit", "forecaster.model.feed"}.isdisjoint(modules[name]), name


def test_each_module_says_what_it_owns() -> None:
    """STYLE.md: module docstrings say what the file owns (every product module opens with one)."""
    silent = [
        str(p.relative_to(ROOT))
        for pkg in ("forecaster", "service", "pipelines")
        for p in sources(pkg)
        if p.read_text().strip() and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert silent == []


MAX_LINES = 400  # STYLE.md: small files, one idea each


def test_no_product_file_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for pkg in ("forecaster", "service", "pipelines")
        for p in sources(pkg)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, "split the file where it holds two ideas"
