"""Dependencies as a library: compatible ranges in pyproject.toml (forecaster installs beside other
libraries in a notebook), the exact versions the suite passes with in constraints.txt (what
scripts/setup.sh and the Dockerfile install), and test-only packages in the test extra."""

from __future__ import annotations

import ast
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
TEST_ONLY = {canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["test"]}


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_runtime_dependencies_are_ranges_not_pins() -> None:
    pinned = [str(r) for r in RUNTIME if any(s.operator in ("==", "===") for s in r.specifier)]
    assert pinned == [], "pin exact versions in constraints.txt, not in [project.dependencies]"
    assert all(r.specifier for r in RUNTIME), "every dependency says which versions it works with"


def test_constraints_pin_every_runtime_dependency_inside_its_range_at_the_installed_version() -> None:
    pins = constraints()
    for requirement in RUNTIME:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"constraints.txt has no pin for {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name], requirement)
        installed = metadata.version(requirement.name).split("+")[0]
        assert installed == pins[name], f"{name}: installed {installed}, constraints.txt says {pins[name]}"


def test_constraints_pin_public_releases_only() -> None:
    assert [f"{n}=={v}" for n, v in constraints().items() if "+" in v] == []  # torch's +cpu is not on PyPI


def test_product_code_imports_no_test_only_package() -> None:
    used: dict[str, set[str]] = {}
    for package in ("forecaster", "service", "pipelines"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = canonicalize_name(re.split(r"[.]", name)[0])
                    if top in TEST_ONLY:
                        used.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    assert used == {}, "a package only the test extra installs"
    assert "httpx" in TEST_ONLY and "httpx" not in {canonicalize_name(r.name) for r in RUNTIME}
