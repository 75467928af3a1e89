"""Retraining safety: one run per model and store whatever the working directory, rollback under
the same lock, runs left RUNNING by a dead process marked FAILED by the next run, and alias moves
read back after they are made."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from e2e_support import (
    FORECASTER,
    ar1_ohlc,
    base_env,
    finish,
    kill_process,
    one_error_line,
    retrain_args,
    start_cli,
    wait_until,
)
from typer.testing import CliRunner

from forecaster.errors import ForecasterError
from forecaster.registry import tracking
from pipelines import promote, retrain
from pipelines.lock import lock_target
from pipelines.settings import RetrainSettings

if TYPE_CHECKING:  # fixtures' types (tests/conftest.py); not imported at run time
    from conftest import MlflowStore

MODEL = "safe"

HOLDER = textwrap.dedent("""
    import sys
    from pipelines.lock import lock_target, pipeline_lock
    with pipeline_lock(sys.argv[1], lock_target(sys.argv[1], sys.argv[2], None, None), timeout_s=0) as held:
        print("held" if held else "busy", flush=True)
        sys.stdin.read()  # hold until the test closes stdin
""")


@pytest.fixture()
def lock_holder(mlflow_store: MlflowStore) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the retraining lock of MODEL on the test's store."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, MODEL, mlflow_store.uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def registered_versions(count: int, tmp_path: Path) -> list[str]:
    """MODEL with `count` registry versions (no artifacts: only aliases are moved here)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    client.create_registered_model(MODEL)
    return [str(client.create_model_version(MODEL, source=str(tmp_path), run_id=None).version) for _ in range(count)]


def aliases() -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    return {alias: str(v) for alias, v in MlflowClient().get_registered_model(MODEL).aliases.items()}


# ---------------------------------------------------------------- runs left RUNNING


def start_unended_run(tags: dict[str, str]) -> str:
    """A run started through MLflow and never ended, as a killed process leaves it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    return str(client.create_run(tracking.ensure_experiment(), tags=tags).info.run_id)


def test_runs_left_running_by_this_models_pipeline_are_failed_at_the_next_start(
    mlflow_store: MlflowStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    stale = start_unended_run(retrain.pipeline_tags(MODEL))
    other_model = start_unended_run(retrain.pipeline_tags("another"))
    not_pipeline = start_unended_run({"owner": "a notebook"})
    trained: list[str] = []
    monkeypatch.setattr(retrain, "run_once", lambda s: trained.append(s.model_name))
    retrain.run_locked(RetrainSettings(model_name=MODEL, tracking_uri=mlflow_store.uri))
    assert trained == [MODEL]
    client = MlflowClient()
    run = client.get_run(stale)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert "ended without closing it" in run.data.tags["failure_reason"]
    assert client.get_run(other_model).info.status == "RUNNING", "another model's pipeline may still be running"
    assert client.get_run(not_pipeline).info.status == "RUNNING", "not ours to end"


def test_a_skipped_run_leaves_running_runs_alone(
    mlflow_store: MlflowStore, lock_holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    running = start_unended_run(retrain.pipeline_tags(MODEL))  # the lock holder's run, alive
    monkeypatch.setattr(retrain, "run_once", lambda s: pytest.fail("a skipped run must not train"))
    assert retrain.run_locked(RetrainSettings(model_name=MODEL, tracking_uri=mlflow_store.uri)) is None
    assert MlflowClient().get_run(running).info.status == "RUNNING"


# ---------------------------------------------------------------- rollback under the lock


def test_rollback_waits_a_bounded_time_for_the_lock_then_fails_changing_nothing(
    mlflow_store: MlflowStore, lock_holder: subprocess.Popen[str], tmp_path: Path
) -> None:
    registered_versions(2, tmp_path)
    tracking.set_alias(MODEL, promote.PREVIOUS, "1")
    tracking.set_alias(MODEL, promote.CHAMPION, "2")
    settings = RetrainSettings(model_name=MODEL, tracking_uri=mlflow_store.uri, rollback_wait_s=0.3)
    with pytest.raises(ForecasterError, match=r"rollback: a retraining run of 'safe' held the lock .* for 0.3s"):
        retrain.rollback_locked(settings)
    assert aliases() == {"previous": "1", "champion": "2"}


def test_rollback_command_is_one_error_line_while_a_retrain_holds_the_lock(
    mlflow_store: MlflowStore, lock_holder: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from forecaster.interface.cli import app

    with_champion_and_previous(tmp_path)
    monkeypatch.setenv("FORECASTER_RETRAIN_ROLLBACK_WAIT_S", "0.2")
    result = CliRunner().invoke(app, ["rollback", "--model", MODEL, "--tracking-uri", mlflow_store.uri])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: rollback:"), result.output
    lock = lock_target(MODEL, mlflow_store.uri, None, None).path
    assert str(lock) in result.output.replace("\n", "")


def with_champion_and_previous(tmp_path: Path) -> None:
    """MODEL with versions 1 (previous) and 2 (champion): something to roll back to."""
    registered_versions(2, tmp_path)
    tracking.set_alias(MODEL, promote.PREVIOUS, "1")
    tracking.set_alias(MODEL, promote.CHAMPION, "2")


def test_rollback_takes_the_lock_and_swaps_champion_and_previous(mlflow_store: MlflowStore, tmp_path: Path) -> None:
    with_champion_and_previous(tmp_path)
    settings = RetrainSettings(model_name=MODEL, tracking_uri=mlflow_store.uri, rollback_wait_s=0)
    assert retrain.rollback_locked(settings) == ("2", "1")
    assert aliases() == {"champion": "1", "previous": "2"}


def lock_files(store: MlflowStore) -> list[Path]:
    return sorted(store.root.glob("*.lock"))


@pytest.mark.parametrize(
    ("name", "says"),
    [("nosuch", "is not registered: nothing to roll back"), ("registered_without_aliases", "has no 'champion' yet")],
)
def test_rollback_of_a_model_with_no_champion_says_so_and_leaves_no_lock_file(
    name: str, says: str, mlflow_store: MlflowStore
) -> None:
    from mlflow.tracking import MlflowClient

    if name != "nosuch":
        MlflowClient().create_registered_model(name)
    line = one_error_line(["rollback", "--model", name, "--tracking-uri", mlflow_store.uri])
    assert f"model '{name}' {says}" in line, line
    assert not lock_files(mlflow_store), "no lock is taken for a model with nothing to roll back"


def test_rollback_of_a_champion_without_previous_names_the_missing_alias(
    mlflow_store: MlflowStore, tmp_path: Path
) -> None:
    registered_versions(1, tmp_path)
    tracking.set_alias(MODEL, promote.CHAMPION, "1")
    line = one_error_line(["rollback", "--model", MODEL, "--tracking-uri", mlflow_store.uri])
    assert f"model '{MODEL}': no 'previous' version to roll back to" in line, line
    assert not lock_files(mlflow_store)


# ---------------------------------------------------------------- an unreachable lock database

DEAD_LOCK_DB = "postgresql://mlflow:S3cretPW@127.0.0.1:1/mlflow"  # port 1: refused at once, no network


def test_unreachable_lock_database_is_one_error_line_naming_the_setting_for_retrain_and_rollback(
    mlflow_store: MlflowStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_champion_and_previous(tmp_path)
    config = tmp_path / "retrain.yaml"
    config.write_text(f"model_name: {MODEL}\n")
    monkeypatch.setenv("FORECASTER_RETRAIN_LOCK_DATABASE_URL", DEAD_LOCK_DB)
    monkeypatch.setattr(retrain, "run_once", lambda s: pytest.fail("no run without the lock"))
    for args in (
        ["retrain", "--config", str(config), "--once"],
        ["rollback", "--model", MODEL, "--tracking-uri", mlflow_store.uri],
    ):
        line = one_error_line(args)
        assert line.startswith("error: lock_database_url: cannot connect to postgresql://mlflow:***@127.0.0.1:1/"), line
        assert "S3cretPW" not in line
    assert aliases() == {"previous": "1", "champion": "2"}


def test_the_lock_database_connection_attempt_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg2

    from pipelines.lock import LockTarget, pipeline_lock

    asked: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs.get("connect_timeout"))
        raise psycopg2.OperationalError("timeout expired")

    monkeypatch.setattr(psycopg2, "connect", refuse)
    target = LockTarget(database_url=DEAD_LOCK_DB)
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    with pytest.raises(ForecasterError, match=r"lock_database_url: .*timeout expired"):
        with pipeline_lock(MODEL, target, 0):
            pass
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "3")  # libpq's own variable still wins
    with pytest.raises(ForecasterError):
        with pipeline_lock(MODEL, target, 0):
            pass
    assert asked == [int(tracking.STORE_CLIENT_DEFAULTS["PGCONNECT_TIMEOUT"]), 3]


# ---------------------------------------------------------------- alias moves are read back


@pytest.fixture()
def registry_answers_version_99(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store accepts every alias move but then answers another version for that alias (a concurrent
    writer); an alias not moved yet reads as it is."""
    from mlflow.tracking import MlflowClient

    moved: set[str] = set()
    real_set, real_get = MlflowClient.set_registered_model_alias, MlflowClient.get_model_version_by_alias

    def set_alias(self: Any, name: str, alias: str, version: str) -> None:
        moved.add(alias)
        real_set(self, name, alias, version)

    def get_alias(self: Any, name: str, alias: str) -> Any:
        return _Version("99") if alias in moved else real_get(self, name, alias)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", set_alias)
    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", get_alias)


class _Version:
    """What get_model_version_by_alias answers, as far as tracking reads it."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.run_id = None


def decision(promote_it: bool) -> promote.Decision:
    return promote.Decision(promote_it, "test", "mase", 0.9, None, 1.0)


@pytest.mark.parametrize(("promoted", "alias"), [(True, "champion"), (False, "challenger")])
def test_apply_fails_naming_alias_expected_and_found_when_the_move_does_not_hold(
    mlflow_store: MlflowStore, tmp_path: Path, registry_answers_version_99: None, promoted: bool, alias: str
) -> None:
    registered_versions(1, tmp_path)
    with pytest.raises(ForecasterError, match=rf"alias '{alias}' of model 'safe' points at version 99 .* set to 1"):
        promote.apply(MODEL, "1", decision(promoted))


def test_rollback_fails_when_the_champion_move_does_not_hold(mlflow_store: MlflowStore, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    registered_versions(2, tmp_path)
    tracking.set_alias(MODEL, promote.PREVIOUS, "1")
    tracking.set_alias(MODEL, promote.CHAMPION, "2")
    real = MlflowClient.get_model_version_by_alias

    def stale_champion(self: Any, name: str, alias: str) -> Any:
        return _Version("2") if alias == promote.CHAMPION else real(self, name, alias)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MlflowClient, "get_model_version_by_alias", stale_champion)
        with pytest.raises(ForecasterError, match=r"alias 'champion' of model 'safe' points at version 2 .* set to 1"):
            promote.rollback(MODEL)


def test_apply_moves_and_verifies_champion_and_previous(mlflow_store: MlflowStore, tmp_path: Path) -> None:
    registered_versions(2, tmp_path)
    promote.apply(MODEL, "1", decision(True))
    promote.apply(MODEL, "2", decision(True))
    assert aliases() == {"champion": "2", "previous": "1"}


# ---------------------------------------------------------------- real processes, one SQLite store


@pytest.mark.slow
def test_two_retrains_from_different_directories_on_one_sqlite_store_run_one_at_a_time(tmp_path: Path) -> None:
    """A (in dir a) trains until killed; B (in dir b) must skip; A is killed, leaving its run
    RUNNING; C (in dir b) runs, marks A's run FAILED and registers the only version."""
    from mlflow.tracking import MlflowClient

    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    uri = f"sqlite:///{store}"
    csv = tmp_path / "bars.csv"
    ar1_ohlc(tickers=2, days=300).to_csv(csv, index=False)
    env = base_env(MLFLOW_TRACKING_URI=uri, FORECASTER_RETRAIN_LOCK_DIR=str(tmp_path / "locks"))
    common = {
        "model_name": MODEL,
        "source": "file",
        "data_path": csv,
        "data_dir": tmp_path / "data",
        "lookback": 20,
        "horizon": 3,
        "hidden": 8,
        "layers": 1,
        "batch_size": 64,
        "device": "cpu",
        "tracking_uri": uri,
    }
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    dir_a.mkdir()
    dir_b.mkdir()
    log_a = (tmp_path / "a.log").open("w")
    # A never ends by itself: only the kill below stops it, so B cannot miss it
    a = subprocess.Popen(
        [FORECASTER, "retrain", "--once", *retrain_args(**common, epochs=100_000, patience=100_000)],
        stdout=log_a,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=dir_a,
        start_new_session=True,
    )
    log_a.close()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:

        def a_run() -> str | None:
            if a.poll() is not None:
                raise AssertionError(f"A exited: {(tmp_path / 'a.log').read_text()[-3000:]}")
            experiment = client.get_experiment_by_name(tracking.EXPERIMENT)
            if experiment is None:
                return None
            runs = client.search_runs([experiment.experiment_id], "tags.pipeline_model = 'safe'")
            return runs[0].info.run_id if runs else None

        run_a = wait_until(a_run, 180, "A's run to start in MLflow (holding the lock)")
        b = finish(start_cli(["retrain", "--once", *retrain_args(**common, epochs=1)], env, dir_b), 180)
        assert b.returncode == 0, b.describe()
        assert b.json == {"skipped": True}, b.describe()
        assert f"{store}.retrain-{MODEL}.lock" in b.stderr.replace("\n", "")
        assert a.poll() is None, "A must still hold the lock while B skipped"
    finally:
        kill_process(a)
    assert client.get_run(run_a).info.status == "RUNNING", "a killed process leaves its run RUNNING"

    c = finish(start_cli(["retrain", "--once", *retrain_args(**common, epochs=1)], env, dir_b), 300)
    assert c.returncode == 0, c.describe()
    report = c.json
    assert report["version"] == "1", report
    killed = client.get_run(run_a)
    assert killed.info.status == "FAILED" and "failure_reason" in killed.data.tags
    assert client.get_run(report["run_id"]).info.status == "FINISHED"
    versions = sorted(str(mv.version) for mv in client.search_model_versions(f"name='{MODEL}'"))
    # C trained the only challenger; never without a champion: it, or the EWMA baseline after it
    if report["promoted"]:
        assert (versions, aliases_at(client), report["baseline_version"]) == (["1"], {"champion": "1"}, None)
    else:
        assert versions == ["1", "2"] and report["baseline_version"] == "2"
        assert aliases_at(client) == {"challenger": "1", "champion": "2"}
    assert not (dir_a / ".forecaster").exists() and not (dir_b / ".forecaster").exists()


def aliases_at(client: Any) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(MODEL).aliases.items()}
