"""The production topology on one machine, as real processes: PostgreSQL -> `mlflow server`
(PostgreSQL backend, proxied artifacts) -> `forecaster retrain` runs and a `forecaster serve`
service following the champion alias.

The steps run in order and share the registry: promote v1 -> serve it -> reject a worse v2 ->
promote a better v3 and hot-swap it -> roll back to v1 -> failures that must change nothing
(bad data, the tracking server dying mid-run) -> two runs racing for the advisory lock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from e2e_support import (
    CliResult,
    MlflowServer,
    PgDatabase,
    Service,
    ar1_ohlc,
    base_env,
    finish,
    history_payload,
    retrain_args,
    run_cli,
    start_cli,
    wait_until,
)

from forecaster.run.metric_names import CURVES

pytestmark = [pytest.mark.slow, pytest.mark.incremental]
MODEL = "e2e"
LOOKBACK, HORIZON = 20, 3
# deterministic on CPU (seed 42): the short run beats naive by ~6%, the long one beats it by ~10% more
SHORT = {"epochs": 2, "batch_size": 64}
LONG = {"epochs": 12, "batch_size": 64, "margin": 0.05}
WORSE = {"epochs": 1, "lr": 1e-6, "hidden": 2, "arch": "rnn"}  # an untrained net: no better than naive
SWAP_TIMEOUT_S = 90


@dataclass
class Topology:
    root: Path
    db: PgDatabase
    mlflow: MlflowServer
    csv: Path
    frame: pd.DataFrame

    @property
    def env(self) -> dict[str, str]:
        # lock files derived from the tracking server's URI go to a state dir of this test, not ~
        return base_env(MLFLOW_TRACKING_URI=self.mlflow.uri, FORECASTER_RETRAIN_LOCK_DIR=str(self.root / "locks"))

    def retrain_command(self, **overrides: Any) -> list[str]:
        settings: dict[str, Any] = {
            "model_name": MODEL,
            "source": "file",
            "data_path": self.csv,
            "data_dir": self.root / "data",
            "lookback": LOOKBACK,
            "horizon": HORIZON,
            "hidden": 16,
            "layers": 1,
            "epochs": 8,
            "device": "cpu",
            "lock_file": self.root / "retrain.lock",
            "tracking_uri": self.mlflow.uri,
            **overrides,
        }
        return ["retrain", *retrain_args(**settings)]

    def retrain(self, **overrides: Any) -> CliResult:
        return run_cli(self.retrain_command(**overrides), self.env, self.root)

    # the registry, read in-process through the MLflow client
    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.mlflow.uri, registry_uri=self.mlflow.uri)

    def aliases(self) -> dict[str, str]:
        return {alias: str(version) for alias, version in self.client().get_registered_model(MODEL).aliases.items()}

    def versions(self) -> list[str]:
        return sorted((mv.version for mv in self.client().search_model_versions(f"name='{MODEL}'")), key=int)

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(self.client().get_model_version(MODEL, version).tags)

    def epochs_logged(self, run_id: str) -> int:
        """Epochs the run has logged so far, straight from the PostgreSQL backend store."""
        key = CURVES["train_loss"]  # the name the run logs the training curve under
        rows = self.db.query("SELECT count(*) FROM metrics WHERE run_uuid = %s AND key = %s", (run_id, key))
        return int(rows[0][0])

    def runs(self) -> dict[str, str]:
        """run id -> status, straight from the PostgreSQL backend store (works with MLflow down)."""
        return dict(self.db.query("SELECT run_uuid, status FROM runs"))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory, database: PgDatabase) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("topology")
    (root / "artifacts").mkdir()
    frame = ar1_ohlc(tickers=4, days=600)
    csv = root / "bars.csv"
    frame.to_csv(csv, index=False)
    server = MlflowServer(database.sqlalchemy_url, root / "artifacts", root / "mlflow.log")
    try:
        server.start(timeout_s=150)  # a fresh database: MLflow creates its schema first
        yield Topology(root, database, server, csv, frame)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(topology: Topology) -> Iterator[Service]:
    env = base_env(
        MLFLOW_TRACKING_URI=topology.mlflow.uri,
        FORECASTER_MODEL_NAME=MODEL,
        FORECASTER_POLL_INTERVAL_S="1",
        FORECASTER_DATA_SOURCE="file",
        FORECASTER_DATA_PATH=str(topology.csv),
        FORECASTER_DEVICE="cpu",
    )
    served = Service(env, topology.root / "service.log")
    try:
        served.start(topology.root)
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def history(topology: Topology) -> list[dict[str, Any]]:
    return history_payload(topology.frame, "AR1", LOOKBACK + 5)


def assert_ok(result: CliResult) -> dict[str, Any]:
    assert result.returncode == 0, result.describe()
    return result.json


def assert_failed_with_one_error_line(result: CliResult, *fragments: str) -> str:
    """Exit code 2 from friendly_errors, the reason as the last stderr line, no traceback."""
    assert result.returncode == 2, result.describe()
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    error = next((line for line in lines if line.startswith("error:")), None)
    assert error is not None, result.describe()
    for fragment in fragments:
        assert fragment in result.stderr, f"'{fragment}' not in the error output:\n{result.describe()}"
    assert "Traceback" not in result.stderr, result.describe()
    assert '"promoted"' not in result.stdout
    return error


# ---------------------------------------------------------------- the happy path


def test_first_retrain_promotes_without_champion(topology: Topology) -> None:
    report = assert_ok(topology.retrain(**SHORT))
    assert report["version"] == "1"
    assert report["promoted"] is True, report
    assert "no champion yet" in report["reason"]
    assert report["champion_before"] is None and report["champion_after"] == "1"
    assert topology.aliases() == {"champion": "1"}
    verdict = topology.version_tags("1")  # the verdict on the version (at most 8 tags), the figures on the run
    assert verdict["gate_promoted"] == "true" and verdict["gate_rule"] == "" and len(verdict) <= 8
    run = topology.client().get_run(report["run_id"])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["gate_promoted"] == "true" and tags["gate_metric"] == "mase"
    assert float(tags["gate_challenger"]) < float(tags["gate_naive"])
    assert float(tags["gate_spl"]) <= float(tags["gate_ewma_spl"])
    bands = dict(item.split("=") for item in tags["gate_coverage"].split(","))
    assert "80" in bands and abs(float(bands["80"]) - 0.8) <= float(tags["gate_coverage_tolerance"]) + 1e-9
    stored = [p.name for p in (topology.root / "artifacts").rglob("*") if p.is_file()]
    assert "MLmodel" in stored, f"the model must be proxied into --artifacts-destination, found {stored}"


def test_service_loads_and_serves_the_champion(
    topology: Topology, service: Service, history: list[dict[str, Any]]
) -> None:
    assert wait_until(service.ready_version, 120, f"/ready (log {service.log_path})") == "1"
    response = service.forecast(history)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == "1" and body["model"]["alias"] == "champion"
    assert len(body["forecasts"][0]["points"]) == HORIZON
    by_ticker = httpx.post(f"{service.url}/forecast", json={"ticker": "AR2"}, timeout=10)
    assert by_ticker.status_code == 200, by_ticker.text  # history from FORECASTER_DATA_SOURCE=file


def test_worse_challenger_is_rejected_and_kept_as_challenger(
    topology: Topology, service: Service, history: list[dict[str, Any]]
) -> None:
    report = assert_ok(topology.retrain(**WORSE))
    assert report["version"] == "2"
    assert report["promoted"] is False, report
    assert report["champion_before"] == "1" and report["champion_after"] == "1"
    assert topology.aliases() == {"champion": "1", "challenger": "2"}
    tags = topology.version_tags("2")
    assert tags["gate_promoted"] == "false"
    assert tags["gate_reason"] == report["reason"] and "does not beat" in tags["gate_reason"]
    assert topology.client().get_run(report["run_id"]).data.tags["gate_champion_version"] == "1"
    assert tags["gate_rule"] == rejecting_rule(tags["gate_reason"]), "the rule named is the one the reason states"
    service.wait_full_refresh(after=time.time())  # the service read the registry after the rejection
    assert service.served_version(history) == "1"


def rejecting_rule(reason: str) -> str:
    """The gate rule (pipelines.promote RULE_*) a rejection's reason text states."""
    phrases = {
        "does not beat naive": "naive",
        "miscalibrated": "coverage",
        "worse than ewma": "spl_vs_ewma",
        "does not beat champion": "champion",
        "not finite": "non_finite",
    }
    found = [rule for phrase, rule in phrases.items() if phrase in reason]
    assert len(found) == 1, reason
    return found[0]


def test_better_challenger_is_promoted_and_hot_swapped(
    topology: Topology, service: Service, history: list[dict[str, Any]]
) -> None:
    assert service.proc is not None
    pid = service.proc.pid
    report = assert_ok(topology.retrain(**LONG))
    assert report["version"] == "3"
    assert report["promoted"] is True, report
    assert "beats champion" in report["reason"]
    assert report["champion_before"] == "1" and report["champion_after"] == "3"
    assert topology.aliases() == {"champion": "3", "previous": "1", "challenger": "2"}
    service.wait_serving("3", history, SWAP_TIMEOUT_S)
    assert service.alive() and service.proc.pid == pid, "swapped without a restart"
    assert service.ready_version() == "3"


def test_rollback_restores_the_previous_champion(
    topology: Topology, service: Service, history: list[dict[str, Any]]
) -> None:
    result = run_cli(["rollback", "--model", MODEL, "--tracking-uri", topology.mlflow.uri], topology.env, topology.root)
    assert result.returncode == 0, result.describe()
    assert f"{MODEL}: champion 3 -> 1" in result.stdout
    assert topology.aliases() == {"champion": "1", "previous": "3", "challenger": "2"}
    assert topology.version_tags("1")["rolled_back_from"] == "3"
    service.wait_serving("1", history, SWAP_TIMEOUT_S)


# ---------------------------------------------------------------- failures change nothing


def test_data_failures_exit_with_an_error_and_change_nothing(topology: Topology) -> None:
    aliases, versions, runs = topology.aliases(), topology.versions(), topology.runs()
    bad = topology.frame.copy()
    bad.loc[bad.index[50], "high"] = bad.loc[bad.index[50], "low"] * 0.5  # high below low
    bad_csv = topology.root / "bad.csv"
    bad.to_csv(bad_csv, index=False)
    # one after the other: two retrains at once would meet at the pipeline lock and one would skip
    missing = start_cli(topology.retrain_command(data_path=topology.root / "missing.csv"), topology.env, topology.root)
    missing_result = finish(missing, 150)
    malformed = start_cli(topology.retrain_command(data_path=bad_csv), topology.env, topology.root)
    malformed_result = finish(malformed, 150)
    assert_failed_with_one_error_line(missing_result, "missing.csv", "does not exist")
    assert_failed_with_one_error_line(malformed_result, "AR0")
    assert topology.aliases() == aliases
    assert topology.versions() == versions
    assert topology.runs() == runs, "a data failure happens before any MLflow run"


def test_tracking_server_dying_mid_run_fails_cleanly_and_service_keeps_serving(
    topology: Topology, service: Service, history: list[dict[str, Any]]
) -> None:
    aliases, versions, runs_before = topology.aliases(), topology.versions(), topology.runs()
    # long enough that the server dies during training, well before registration
    proc = start_cli(topology.retrain_command(epochs=400, patience=400, batch_size=64), topology.env, topology.root)
    try:
        new_run = wait_until(
            lambda: [r for r, s in topology.runs().items() if r not in runs_before and s == "RUNNING"],
            120,
            "the retrain run to start in MLflow",
        )[0]
        wait_until(lambda: topology.epochs_logged(new_run) >= 2, 120, "two epochs logged by the run")
        assert proc.poll() is None, "the run finished before the outage"
        topology.mlflow.kill()
        outage_started = time.monotonic()
        served_during_outage = []
        while time.monotonic() - outage_started < 5:
            served_during_outage.append(service.served_version(history))  # asserts 200
            time.sleep(0.5)
        assert set(served_during_outage) == {"1"}
        assert service.ready_version() == "1"
        result = finish(proc, 150)
    finally:
        if proc.poll() is None:
            proc.kill()
    error = assert_failed_with_one_error_line(result, f"127.0.0.1:{topology.mlflow.port}")
    assert "tracking" in error
    assert service.served_version(history) == "1", "still serving after the pipeline failed"

    topology.mlflow.start()  # same database, same port
    assert topology.aliases() == aliases, "the champion must not move"
    assert topology.versions() == versions, "nothing was registered"
    assert topology.runs()[new_run] != "FINISHED"
    assert service.served_version(history) == "1"


def test_two_runs_together_train_once_under_the_advisory_lock(topology: Topology) -> None:
    versions = topology.versions()
    left_running = [run for run, status in topology.runs().items() if status == "RUNNING"]
    assert left_running, "the run cut off from the tracking server above is still RUNNING"
    command = topology.retrain_command(lock_database_url=topology.db.url, **SHORT)
    first = start_cli(command, topology.env, topology.root)
    second = start_cli(command, topology.env, topology.root)
    results = [finish(first, 200), finish(second, 200)]
    for result in results:
        assert result.returncode == 0, result.describe()
    reports = [result.json for result in results]
    skipped = [r for r in reports if r.get("skipped") is True]
    trained = [r for r in reports if "version" in r]
    assert len(skipped) == 1 and len(trained) == 1, reports
    skipped_err = next(r.stderr for r, j in zip(results, reports, strict=True) if j.get("skipped"))
    assert "postgres advisory lock" in skipped_err
    new_version = str(int(versions[-1]) + 1)
    assert trained[0]["version"] == new_version
    assert topology.versions() == [*versions, new_version]
    aliases = topology.aliases()
    expected_alias = "champion" if trained[0]["promoted"] else "challenger"
    assert aliases[expected_alias] == new_version
    assert os.path.exists(topology.root / "data" / "bars.parquet")
    statuses = topology.runs()
    assert {statuses[run] for run in left_running} == {"FAILED"}, "the run that trained marks dead runs FAILED"
    assert "failure_reason" in topology.client().get_run(left_running[0]).data.tags
