"""The one reading of a sqlite:/// URI: the database file, as SQLAlchemy reads it; the artifact
folder, the ledger and the retrain lock all sit beside that file."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.monitor.store import default_uri
from forecaster.registry.store import sqlite_path
from pipelines.lock import derived_lock_file


def test_sqlite_path_resolves_relative_paths_against_the_working_directory_and_drops_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///store/mlflow.db?timeout=5") == tmp_path / "store" / "mlflow.db"
    assert sqlite_path(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    for other in ("sqlite:///:memory:", "sqlite:///", "postgresql://h/db", "http://mlflow:5000", "mlruns"):
        assert sqlite_path(other) is None, other


def test_the_ledger_and_the_lock_sit_beside_the_same_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = "sqlite:///store/mlflow.db?timeout=5"
    assert default_uri(uri) == f"sqlite:///{tmp_path / 'store' / 'ledger.db'}"
    assert derived_lock_file("m", uri, tmp_path / "unused") == tmp_path / "store" / "mlflow.db.retrain-m.lock"
