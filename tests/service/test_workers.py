"""`forecaster serve --workers N`: worker processes that each load the model and follow the
alias on their own, answer with no failed request while the alias moves, and whose metrics
/metrics sums (Prometheus multiprocess mode)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from prometheus_client.parser import text_string_to_metric_families
from traffic import Traffic
from uvicorn.config import STARTUP_FAILURE

from forecaster.registry import tracking
from service.settings import Settings
from service.workers import (
    MULTIPROC_ENV,
    ReusePortListener,
    reuse_port_supported,
    run_workers,
    settings_env,
    shared_metrics_dir,
)

NAME = "svc_workers"  # its own registered model: moving its alias leaves svc@champion alone
WORKERS = 2
STARTUP_TIMEOUT_S = 120.0  # two processes importing torch and loading a model on 2 shared cores
SWAP_TIMEOUT_S = 30.0  # poll interval 0.5 s plus a model load in each worker
STOP_TIMEOUT_S = 30.0


def test_cli_overrides_reach_workers_as_the_variables_settings_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {"model_name": "m", "alias": "staging", "workers": 3, "tracking_uri": "http://mlflow:5000"}
    env = settings_env(Settings(), overrides)
    assert env == {
        "FORECASTER_MODEL_NAME": "m",
        "FORECASTER_ALIAS": "staging",
        "FORECASTER_WORKERS": "3",
        "FORECASTER_TRACKING_URI": "http://mlflow:5000",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.model_name, settings.alias, settings.workers, settings.tracking_uri) == (
        "m",
        "staging",
        3,
        "http://mlflow:5000",
    )


def test_shared_metrics_dir_is_emptied_at_start_and_a_temporary_one_removed_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_4242.db").write_bytes(b"a previous run")
    with shared_metrics_dir() as folder:
        assert folder == tmp_path and list(folder.iterdir()) == []
    assert os.environ[MULTIPROC_ENV] == str(tmp_path)

    monkeypatch.delenv(MULTIPROC_ENV)
    with shared_metrics_dir() as folder:
        assert os.environ[MULTIPROC_ENV] == str(folder) and folder.is_dir()
    assert not folder.exists() and MULTIPROC_ENV not in os.environ


needs_reuse_port = pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT balancing is Linux's")


def listening_sockets(port: int) -> int:
    """Listening TCP sockets on 127.0.0.1:port, from the kernel's table (Linux)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    wanted = f"0100007F:{port:04X}"  # 127.0.0.1 as the kernel prints it, then the port in hex
    return sum(1 for row in rows if row.split()[1] == wanted and row.split()[3] == "0A")  # 0A: LISTEN


def accepted(sock: socket.socket) -> int:
    """Connections waiting in a listening socket's queue, accepted and closed."""
    sock.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = sock.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


@needs_reuse_port
def test_a_reuse_port_listener_reaches_each_worker_as_its_own_socket_and_the_kernel_spreads_connections() -> None:
    with ReusePortListener.reserve("127.0.0.1", 0) as listener:
        port = listener.getsockname()[1]
        # what uvicorn's supervisor does to hand a socket to a spawned worker, twice
        workers = [ForkingPickler.loads(bytes(ForkingPickler.dumps(listener))) for _ in range(2)]
        try:
            assert {w.getsockname() for w in workers} == {("127.0.0.1", port)}
            assert len({w.fileno() for w in workers} | {listener.fileno()}) == 3  # three sockets, not copies of one
            assert all(w.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for w in workers)
            for worker in workers:
                worker.listen(128)
            assert listening_sockets(port) == 2  # the parent's bound socket never listens
            clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
            time.sleep(0.2)  # let the last handshakes land in the queues (counted below, not timed)
            counts = [accepted(w) for w in workers]
            for client in clients:
                client.close()
        finally:
            for worker in workers:
                worker.close()
    # 64 connections hashed by their ports: all on one socket has odds of 2 in 2**64
    assert sum(counts) == 64 and min(counts) > 0, counts


def a_plain_listener(stack: ExitStack) -> int:
    taken = stack.enter_context(socket.socket())
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    return int(taken.getsockname()[1])


def another_server_starting(stack: ExitStack) -> int:
    """Another `serve --workers` whose workers do not listen yet: only its reservation."""
    return int(stack.enter_context(ReusePortListener.reserve("127.0.0.1", 0)).getsockname()[1])


def another_server_serving(stack: ExitStack) -> int:
    """Another `serve --workers` with its reservation and two workers listening."""
    listener = stack.enter_context(ReusePortListener.reserve("127.0.0.1", 0))
    for _ in range(2):
        stack.enter_context(ForkingPickler.loads(bytes(ForkingPickler.dumps(listener)))).listen(8)
    return int(listener.getsockname()[1])


@needs_reuse_port
@pytest.mark.parametrize("holder", [a_plain_listener, another_server_starting, another_server_serving])
def test_workers_on_a_taken_port_fail_before_any_worker_starts(
    holder: Callable[[ExitStack], int], capfd: pytest.CaptureFixture[str]
) -> None:
    # SO_REUSEPORT would let a second server of the same user join the port and take half its
    # connections: the reservation refuses it, like any other holder of the address
    with ExitStack() as stack:
        port = holder(stack)
        with pytest.raises(SystemExit) as stopped:
            run_workers("service.main:create_app", 2, {"host": "127.0.0.1", "port": port}, reuse_port=True)
    assert stopped.value.code == STARTUP_FAILURE
    assert f"cannot listen on 127.0.0.1:{port}: [Errno" in capfd.readouterr().err  # uvicorn's log, on stderr


def test_a_port_left_in_time_wait_by_an_earlier_server_can_be_reserved_again() -> None:
    with socket.socket() as earlier:  # a server (without SO_REUSEPORT) that closed its side first
        earlier.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        earlier.bind(("127.0.0.1", 0))
        earlier.listen(1)
        port = earlier.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        connection, _ = earlier.accept()
        connection.close()  # the server's end goes to TIME_WAIT
        client.close()
    with ReusePortListener.reserve("127.0.0.1", port) as listener:
        assert listener.getsockname() == ("127.0.0.1", port)


@pytest.fixture(scope="module")
def versions(registry) -> tuple[str, str]:
    """svc_workers 1 (the session's model, alias champion) and 2 (a second fit, no alias yet)."""
    first = str(mlflow.register_model(registry.run.model_uri, NAME).version)
    tracking.set_alias(NAME, "champion", first)
    second = registry.train(seed=7, register_as=NAME).version
    assert second is not None and second != first
    return first, second


def start(registry, port: int, metrics_dir: Path) -> subprocess.Popen[bytes]:
    executable = Path(sys.executable).parent / "forecaster"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")},
        "MLFLOW_TRACKING_URI": registry.uri,
        "FORECASTER_DATA_SOURCE": "file",
        "FORECASTER_DATA_PATH": str(registry.data_path),
        "FORECASTER_DEVICE": "cpu",
        "FORECASTER_POLL_INTERVAL_S": "0.5",
        "OMP_NUM_THREADS": "1",
        MULTIPROC_ENV: str(metrics_dir),
    }
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS), "--model", NAME]
    with (metrics_dir.parent / "serve.log").open("wb") as log:
        return subprocess.Popen(
            [str(executable), *args], env=env, cwd=registry.root, stdout=log, stderr=subprocess.STDOUT
        )


@pytest.fixture()
def workers_process(registry, free_port, versions, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A 2-worker server; yields (base URL, its metrics folder, its log); killed if still running."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_4242.db").write_bytes(b"left by a previous run")  # must be cleared at start
    port = free_port()
    process = start(registry, port, metrics_dir)
    try:
        yield f"http://127.0.0.1:{port}", metrics_dir, tmp_path / "serve.log"
        process.terminate()
        try:
            code = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit within {STOP_TIMEOUT_S} s of SIGTERM") from None
        assert code in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
        live = sorted(path.name for path in metrics_dir.glob("gauge_live*.db"))
        assert live == [], f"workers left live gauges behind: {live}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def fresh_connections(url: str) -> httpx.Client:
    """A client that opens a connection per request: the kernel hands each to either worker."""
    return httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


def ready_workers(http: httpx.Client, log: Path) -> set[str]:
    """Asks /ready until WORKERS distinct processes answered 200 (bounded)."""
    seen: set[str] = set()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while len(seen) < WORKERS:
        assert time.monotonic() < deadline, f"ready workers after {STARTUP_TIMEOUT_S} s: {seen}\n{log.read_text()}"
        try:
            response = http.get("/ready")
        except httpx.TransportError:
            time.sleep(0.25)
            continue
        if response.status_code == 200:
            seen.add(response.headers["x-worker"])
        else:
            time.sleep(0.1)
    return seen


class WorkerTraffic(Traffic):
    """Threads posting forecasts on fresh connections until stopped (bounded in time)."""

    def __init__(self, url: str, body: dict[str, Any], threads: int = 2, max_seconds: float = 120.0) -> None:
        super().__init__(threads, max_seconds, join_s=60.0)
        self.url, self.body = url, body
        self.results: list[tuple[float, int, str, str]] = []  # (done at, status, version or error, worker)

    def _run(self) -> None:
        with fresh_connections(self.url) as http:
            while self.running():
                try:
                    response = http.post("/forecast", json=self.body)
                    ok = response.status_code == 200
                    result = (
                        response.status_code,
                        response.json()["model"]["version"] if ok else response.text,
                        response.headers.get("x-worker", "?"),
                    )
                except httpx.TransportError as error:  # a refused or dropped connection is a failure too
                    result = (0, repr(error), "?")
                with self.lock:
                    self.results.append((time.monotonic(), *result))

    def switched(self, workers: set[str], version: str, since: float) -> bool:
        """Every worker has answered `version` after `since`."""
        with self.lock:
            return workers <= {w for t, _, v, w in self.results if t > since and v == version}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def forecasts_counted(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    return sum(
        value
        for labels, value in samples(text, "forecaster_requests_total")
        if (labels["route"], labels["method"], labels["status"]) == ("/forecast", "POST", "200")
    )


@pytest.mark.slow
def test_two_workers_follow_an_alias_move_without_failed_requests_and_sum_their_metrics(
    workers_process, versions, history
):
    url, metrics_dir, log = workers_process
    first, second = versions
    with fresh_connections(url) as http:
        workers = ready_workers(http, log)
        assert not (metrics_dir / "counter_4242.db").exists()  # the previous run's counts were cleared
        if reuse_port_supported():  # each worker listens on its own socket, and keep-alive clients spread
            port = int(url.rsplit(":", 1)[1])
            assert listening_sockets(port) == WORKERS
            answered_by = set()
            for _ in range(32):  # 32 connections: all on one worker has odds of 2 in 2**32
                with httpx.Client(base_url=url, timeout=30) as keep_alive:
                    answered_by |= {keep_alive.get("/ready").headers["x-worker"] for _ in range(3)}
            assert answered_by == workers
        with WorkerTraffic(url, {"history": history}) as traffic:
            deadline = time.monotonic() + SWAP_TIMEOUT_S
            while not traffic.switched(workers, first, 0.0):  # both workers serve version 1 first
                assert time.monotonic() < deadline, f"not every worker answered: {workers}"
                time.sleep(0.05)
            moved_at = time.monotonic()
            tracking.set_alias(NAME, "champion", second)
            while not traffic.switched(workers, second, moved_at):
                assert time.monotonic() < moved_at + SWAP_TIMEOUT_S, f"not every worker swapped\n{log.read_text()}"
                time.sleep(0.05)
            time.sleep(1.0)  # keep traffic flowing on the new version for a moment
        results = sorted(traffic.results)

        failed = [(status, text) for _, status, text, _ in results if status != 200]
        assert failed == []
        assert {w for *_, w in results} == workers  # no third process answered
        for worker in workers:
            ordered = [version for _, _, version, w in results if w == worker]
            first_new = ordered.index(second)
            assert set(ordered[:first_new]) == {first} and first_new > 0, worker
            assert set(ordered[first_new:]) == {second}, f"{worker} went back to version {first}"
        last_switch = max(next(t for t, _, v, w in results if w == worker and v == second) for worker in workers)
        assert {v for t, _, v, _ in results if t >= last_switch} == {second}  # all later answers: version 2

        # /metrics, from whichever worker answers it, sums every worker's counter ...
        sent = len(results)
        deadline = time.monotonic() + 10.0  # a counter is bumped just after its answer is sent
        while (counted := forecasts_counted(http)) < sent:
            assert time.monotonic() < deadline, f"/metrics counts {counted} forecasts, {sent} were answered"
            time.sleep(0.1)
        assert counted >= sent > max(sum(1 for *_, w in results if w == worker) for worker in workers)
        # ... and lists each live worker's loaded version under its pid
        loaded = {
            labels["pid"]: value
            for labels, value in samples(http.get("/metrics").text, "forecaster_model_version")
            if labels["name"] == NAME
        }
        assert loaded == {worker.rsplit(":", 1)[1]: float(second) for worker in workers}

        # a killed worker is replaced by uvicorn's supervisor; the new one listens on a socket of its
        # own (with SO_REUSEPORT) and serves, and the dead one's loaded version leaves /metrics
        killed = sorted(workers)[0]
        os.kill(int(killed.rsplit(":", 1)[1]), signal.SIGKILL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        replaced: set[str] = set()
        while not replaced:
            assert time.monotonic() < deadline, f"no new worker after {STARTUP_TIMEOUT_S} s\n{log.read_text()}"
            try:
                response = http.get("/ready")
            except httpx.TransportError:  # a connection hashed to the dead worker's socket, as it closed
                continue
            if response.status_code == 200 and response.headers["x-worker"] not in workers:
                replaced.add(response.headers["x-worker"])
            time.sleep(0.05)
        if reuse_port_supported():
            assert listening_sockets(int(url.rsplit(":", 1)[1])) == WORKERS
        loaded = {
            labels["pid"]
            for labels, _ in samples(http.get("/metrics").text, "forecaster_model_version")
            if labels["name"] == NAME
        }
        assert killed.rsplit(":", 1)[1] not in loaded
