"""Pipeline tests: the local PostgreSQL server, and ordered ("incremental") end-to-end modules
whose later steps are skipped once an earlier step failed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import PgDatabase, create_database, drop_database, pg_user

SERVICES_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "incremental: steps of one scenario; a failed step skips the rest")


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
