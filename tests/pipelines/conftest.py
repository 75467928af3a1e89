"""Pipeline tests: the local PostgreSQL server, and ordered ("incremental") end-to-end modules
whose later steps are skipped once an earlier step failed. pytest-randomly shuffles everything
else; the steps of an incremental module keep their written order."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import PgDatabase, create_database, drop_database, pg_user

SERVICES_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "incremental: steps of one scenario; a failed step skips the rest")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Runs after pytest-randomly's shuffle (it reorders in a wrapper, before every plain hook):
    within each module, its incremental steps go back to their written order in the places the
    shuffle gave that module, so modules still come in random order."""
    slots: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        if item.get_closest_marker("incremental"):
            slots[item.nodeid.split("::")[0]].append(index)
    for places in slots.values():
        steps = sorted((items[i] for i in places), key=lambda item: item.reportinfo()[1] or 0)
        for place, step in zip(places, steps, strict=True):
            items[place] = step


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if call.excinfo is not None and call.when == "call" and item.get_closest_marker("incremental"):
        item.module._first_failed_step = item.name  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("incremental"):
        failed = getattr(item.module, "_first_failed_step", None)
        if failed is not None:
            pytest.skip(f"an earlier step failed: {failed}")


@pytest.fixture(scope="session")
def postgres_user() -> str:
    """A PostgreSQL superuser on 127.0.0.1:5432, starting the local server when it is down."""
    try:
        return pg_user()
    except RuntimeError:
        subprocess.run(["bash", str(SERVICES_SCRIPT)], timeout=60, check=False)
        return pg_user()


@pytest.fixture(scope="module")
def database(postgres_user: str) -> Iterator[PgDatabase]:
    """A fresh database for this module, dropped (with its connections) at the end."""
    db = create_database()
    yield db
    drop_database(db)
