"""Shared test setup: CPU only (one thread), seeded, and a temporary MLflow store per test.

Tests marked ``gpu`` are skipped without CUDA; every other test sees no CUDA device, so
``device="auto"`` resolves to the CPU everywhere (bit-reproducible, no bf16).
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from rich.logging import RichHandler

torch.set_num_threads(1)  # two cores shared with other work: more threads only spin (10x slower)
SEED = 1234


def pytest_configure(config: pytest.Config) -> None:
    """pytest-randomly shuffles the test order (every run a new order, to catch tests that lean on
    each other); the seeds of the data stay ours (`_cpu_and_seed`): without this it would reseed
    random and numpy per test from its run seed, and the data of a test would change from run to run."""
    if hasattr(config.option, "randomly_reset_seed"):
        config.option.randomly_reset_seed = False


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(
            f"test order: pytest-randomly seed {seed} (the same order: --randomly-seed={seed}; "
            "the written order: -p no:randomly)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cpu_and_seed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed every RNG, and hide CUDA from tests not marked gpu."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Any:
    """A CLI run in process (`setup_logging`) puts a console handler on the root logger; left
    there, it would print later tests' log lines (a server thread's access log) to the terminal,
    and change what reaches caplog depending on test order. Removed after each test, with the
    root level and every existing logger's level restored; pytest's own capture handlers are
    left to pytest."""
    root = logging.getLogger()
    level, before = root.level, set(root.handlers)
    # the CLIs also set named loggers' levels (forecaster, pipelines at INFO): left so, a later
    # test's caplog would see their INFO lines or not depending on the order the tests ran in
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    yield
    for handler in list(root.handlers):
        ours = not type(handler).__module__.startswith("_pytest")
        # new in this test, or the CLI's console handler left by a session or module fixture's run
        if ours and (handler not in before or isinstance(handler, RichHandler)):
            root.removeHandler(handler)
    root.setLevel(level)
    for name, logger_level in levels.items():
        named = logging.getLogger(name)
        if named.level != logger_level:
            named.setLevel(logger_level)


@dataclass(frozen=True)
class MlflowStore:
    """A temporary tracking + registry store; the test runs with ``root`` as working directory."""

    root: Path
    uri: str


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its schema migrated, made once: creating one takes
    seconds (alembic), copying it takes nothing."""
    import mlflow
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{path}")
    MlflowClient().search_experiments()
    mlflow.set_tracking_uri(previous)
    return path


def new_store(root: Path, template: Path) -> MlflowStore:
    shutil.copyfile(template, root / "mlflow.db")
    return MlflowStore(root, f"sqlite:///{root / 'mlflow.db'}")


def use_store(store: MlflowStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MLflow at `store` until `monkeypatch` undoes it. MLflow keeps its URIs in process-wide
    globals: they are saved through monkeypatch, so the next test (or a session fixture set up
    before it, whatever the order) finds MLflow where it was, not at this test's store."""
    import mlflow.tracking._model_registry.utils as registry_state
    import mlflow.tracking._tracking_service.utils as tracking_state

    from forecaster.registry import tracking

    monkeypatch.setattr(tracking_state, "_tracking_uri", tracking_state._tracking_uri)
    monkeypatch.setattr(registry_state, "_registry_uri", registry_state._registry_uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.chdir(store.root)  # so a stray ./mlruns lands here
    tracking.configure()


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _empty_mlflow_db: Path) -> MlflowStore:
    """A fresh, empty tracking store in tmp_path (MLFLOW_TRACKING_URI and MLflow point at it)."""
    store = new_store(tmp_path, _empty_mlflow_db)
    use_store(store, monkeypatch)
    return store


@dataclass(frozen=True)
class CliModel:
    """A tiny model trained by `forecaster train --data bars.csv --register-as tiny --alias champion`."""

    store: MlflowStore
    data_path: Path
    frame: pd.DataFrame
    name: str
    lookback: int
    horizon: int
    epochs: int
    output: str  # what the train command printed (stdout and stderr)
    stdout: str
    exit_code: int
    run: Any  # forecaster.run.tracked.RunResult of that command, the in-memory trained forecaster included


@pytest.fixture(scope="session")
def cli_model(tmp_path_factory: pytest.TempPathFactory, _empty_mlflow_db: Path) -> CliModel:
    """Trained once per session through the CLI; the run's in-memory result is kept by a spy."""
    from factories import random_ohlc, to_csv
    from typer.testing import CliRunner

    from forecaster.interface.cli import app
    from forecaster.run import tracked as runs

    store = new_store(tmp_path_factory.mktemp("cli_store"), _empty_mlflow_db)
    frame = random_ohlc(tickers=("AAA", "BBB"), days=120, seed=5)
    data_path = store.root / "bars.csv"
    to_csv(frame, data_path)
    captured: list[Any] = []
    real = runs.tracked_training

    def spy(*args: Any, **kwargs: Any) -> Any:
        captured.append(real(*args, **kwargs))
        return captured[-1]

    lookback, horizon, epochs = 10, 2, 2
    with pytest.MonkeyPatch.context() as mp:
        use_store(store, mp)
        mp.setattr(torch.cuda, "is_available", lambda: False)
        mp.setattr(runs, "tracked_training", spy)
        result = CliRunner().invoke(
            app,
            [
                "train",
                "--data",
                str(data_path),
                "--lookback",
                str(lookback),
                "--horizon",
                str(horizon),
                "--epochs",
                str(epochs),
                "--hidden",
                "8",
                "--layers",
                "1",
                "--dropout",
                "0",
                "--batch-size",
                "64",
                "--patience",
                "5",
                "--seed",
                "3",
                "--device",
                "cpu",
                "--register-as",
                "tiny",
                "--alias",
                "champion",
            ],
        )
    assert result.exit_code == 0, result.output
    return CliModel(
        store,
        data_path,
        frame,
        "tiny",
        lookback,
        horizon,
        epochs,
        result.output,
        result.stdout,
        result.exit_code,
        captured[0],
    )


@pytest.fixture()
def in_cli_store(cli_model: CliModel, monkeypatch: pytest.MonkeyPatch) -> CliModel:
    """The session's CLI-trained model, with MLflow pointed at its store for this test."""
    use_store(cli_model.store, monkeypatch)
    return cli_model


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No FORECASTER_RETRAIN_* variable from the environment the suite runs in (settings tests)."""
    import os

    for key in list(os.environ):
        if key.startswith("FORECASTER_RETRAIN_"):
            monkeypatch.delenv(key)
    return monkeypatch
