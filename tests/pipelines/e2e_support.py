"""Real processes for the end-to-end pipeline tests: PostgreSQL databases, an MLflow server,
the forecast service and `forecaster` CLI runs. Every wait is bounded; every process is killed
by whoever started it."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

BIN = Path(sys.executable).parent
FORECASTER = str(BIN / "forecaster")
MLFLOW = str(BIN / "mlflow")
REPO = Path(__file__).resolve().parents[2]
PG_HOST, PG_PORT = "127.0.0.1", 5432


# ---------------------------------------------------------------- small utilities


def one_error_line(args: list[str]) -> str:
    """`forecaster ARGS` in process: exit code 2 and exactly one line, an `error:` line; returns it."""
    from typer.testing import CliRunner

    from forecaster.interface.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessExited(RuntimeError):
    """A process we wait on died: stop waiting at once."""


def wait_until(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """Poll `check` until it returns a truthy value; fail naming `what` after `timeout_s`
    (at once when `check` raises ProcessExited)."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except ProcessExited:
            raise
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_error = exc
        time.sleep(every_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what} (last error: {last_error})")


def stop_process(proc: subprocess.Popen[Any] | None, grace_s: float = 3.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        kill_process(proc)


def kill_process(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL the whole process group (the server and its workers), no shutdown hooks."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def base_env(**extra: str) -> dict[str, str]:
    """The test process's environment, CPU only, few threads, bounded MLflow HTTP retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORECASTER_", "MLFLOW_"))}
    env.update(
        {
            "CUDA_VISIBLE_DEVICES": "",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore",
            "COLUMNS": "200",  # rich: keep log lines whole
            # a dead tracking server must fail a client in seconds, not after minutes of backoff
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
        }
    )
    env.update(extra)
    return env


# ---------------------------------------------------------------- PostgreSQL


def pg_user() -> str:
    """A superuser the local trust-auth server accepts: whoami, else root, else postgres."""
    import psycopg2

    candidates = [getpass.getuser(), "root", "postgres"]
    errors = []
    for user in dict.fromkeys(candidates):
        try:
            psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=5).close()
            return user
        except psycopg2.OperationalError as exc:
            errors.append(f"{user}: {exc}".strip())
    raise RuntimeError(f"no PostgreSQL user works on {PG_HOST}:{PG_PORT}: {errors}")


def pg_admin(user: str, sql: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=5)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@dataclass(frozen=True)
class PgDatabase:
    user: str
    name: str

    @property
    def url(self) -> str:
        """For psycopg2 (and the pipeline's advisory lock)."""
        return f"postgresql://{self.user}@{PG_HOST}:{PG_PORT}/{self.name}"

    @property
    def sqlalchemy_url(self) -> str:
        """For MLflow's SQLAlchemy: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which
        is not installed; name the psycopg2 driver."""
        return self.url.replace("postgresql://", "postgresql+psycopg2://", 1)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg2

        connection = psycopg2.connect(self.url, connect_timeout=5)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
        finally:
            connection.close()


def create_database(prefix: str = "forecaster_e2e") -> PgDatabase:
    user = pg_user()
    db = PgDatabase(user, f"{prefix}_{secrets.token_hex(4)}")
    pg_admin(user, f'CREATE DATABASE "{db.name}"')
    return db


def drop_database(db: PgDatabase) -> None:
    pg_admin(db.user, f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


# ---------------------------------------------------------------- MLflow server


@dataclass
class MlflowServer:
    """`mlflow server` on a PostgreSQL backend with proxied artifacts; restartable on one port."""

    backend_uri: str
    artifacts: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> None:
        command = [
            MLFLOW,
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            str(self.artifacts),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        log = self.log_path.open("ab")
        # no background job runner: nothing here uses MLflow jobs, and it costs a process
        env = base_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.artifacts.parent, start_new_session=True
        )
        log.close()
        try:
            wait_until(self.healthy, timeout_s, f"mlflow server on port {self.port} (log {self.log_path})")
        except TimeoutError:
            self.stop()
            raise

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise ProcessExited(f"mlflow server exited: {tail}")
        return httpx.get(f"{self.uri}/health", timeout=2).status_code == 200

    def kill(self) -> None:
        """Die as in a crash: SIGKILL, no shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            kill_process(self.proc)
        wait_until(lambda: not port_open(self.port), 30, f"port {self.port} to close")

    def stop(self) -> None:
        stop_process(self.proc)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- the forecast service


@dataclass
class Service:
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, cwd: Path) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [FORECASTER, "serve", "--port", str(self.port), "--log-level", "warning"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=cwd,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready_version(self) -> str | None:
        if not self.alive():
            raise ProcessExited(f"service exited: {self.log_path.read_text(errors='replace')[-3000:]}")
        response = httpx.get(f"{self.url}/ready", timeout=5)
        return response.json()["version"] if response.status_code == 200 else None

    def forecast(self, history: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(f"{self.url}/forecast", json={"history": history}, timeout=10)

    def served_version(self, history: list[dict[str, Any]]) -> str:
        response = self.forecast(history)
        assert response.status_code == 200, response.text
        return str(response.json()["model"]["version"])

    def wait_serving(self, version: str, history: list[dict[str, Any]], timeout_s: float = 60.0) -> None:
        wait_until(
            lambda: self.served_version(history) == version,
            timeout_s,
            f"the service to serve version {version} (log {self.log_path})",
        )

    def last_refresh(self) -> float:
        """Unix time of the service's last registry refresh that resolved every followed alias (0: none)."""
        metrics = httpx.get(f"{self.url}/metrics", timeout=5).text
        name = "forecaster_registry_last_refresh_timestamp_seconds"
        values = [float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name)]
        return max(values, default=0.0)

    def wait_full_refresh(self, after: float, timeout_s: float = 60.0) -> None:
        """Until a whole registry refresh has run after `after` (unix time): two completed refreshes
        later, the second started after the first ended, so it read the registry as it is now."""
        first = wait_until(lambda: (t := self.last_refresh()) > after and t, timeout_s, "a registry refresh")
        wait_until(lambda: self.last_refresh() > first, timeout_s, "a second registry refresh")

    def stop(self) -> None:
        stop_process(self.proc)


# ---------------------------------------------------------------- the CLI


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        """The JSON object on the last non-empty stdout line."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no stdout; rc={self.returncode}, stderr:\n{self.stderr[-4000:]}"
        return json.loads(lines[-1])

    def describe(self) -> str:
        return f"rc={self.returncode}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-6000:]}"


def retrain_args(**settings: Any) -> list[str]:
    """{'model_name': 'e2e', 'epochs': 8} -> ['--model-name', 'e2e', '--epochs', '8']."""
    args: list[str] = []
    for key, value in settings.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def start_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FORECASTER, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float) -> CliResult:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_process(proc)
        out, err = proc.communicate()
        raise AssertionError(f"`forecaster` ran past {timeout_s}s; stderr:\n{err[-4000:]}") from None
    return CliResult(proc.returncode, out, err)


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 150.0) -> CliResult:
    return finish(start_cli(args, env, cwd), timeout_s)


# ---------------------------------------------------------------- synthetic data a model can learn


def ar1_ohlc(tickers: int = 4, days: int = 600, phi: float = 0.6, sigma: float = 0.01, seed: int = 7) -> pd.DataFrame:
    """Daily bars whose close log returns follow AR(1) with coefficient `phi`: a third of each
    day's move is predictable from the day before, so a trained model beats the naive forecast."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2021-01-04", periods=days)
    frames = []
    for i in range(tickers):
        eps = rng.normal(0.0, sigma, days)
        returns = np.empty(days)
        returns[0] = eps[0]
        for t in range(1, days):
            returns[t] = phi * returns[t - 1] + eps[t]
        close = (20.0 + 15.0 * i) * np.exp(np.cumsum(returns))
        previous = np.concatenate([[close[0]], close[:-1]])
        open_ = previous * np.exp(rng.normal(0.0, sigma / 5, days))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, sigma / 3, days)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, sigma / 3, days)))
        frames.append(
            pd.DataFrame(
                {
                    "date": dates.strftime("%Y-%m-%d"),
                    "ticker": f"AR{i}",
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def history_payload(frame: pd.DataFrame, ticker: str, bars: int) -> list[dict[str, Any]]:
    """The last `bars` rows of one ticker as the API's `history` list."""
    rows = frame[frame["ticker"] == ticker].tail(bars)
    return [{"date": r.date, "open": r.open, "high": r.high, "low": r.low, "close": r.close} for r in rows.itertuples()]
