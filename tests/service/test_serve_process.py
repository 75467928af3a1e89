"""`forecaster serve` as a real process: starts, becomes ready, forecasts, logs one JSON access
line per request, stops on SIGTERM; with a hung registry it answers 503 at once, says why in its
log, never prints the registry password, and still stops within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


@contextmanager
def serve_process(registry, port: int, **env_extra: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`forecaster serve` on `port` with the session's data; yields (process, log path); stops it
    (SIGKILL after STOP_TIMEOUT_S) if the test did not."""
    executable = Path(sys.executable).parent / "forecaster"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("FORECASTER_")},
        "MLFLOW_TRACKING_URI": registry.uri,
        "FORECASTER_MODEL_NAME": "svc",
        "FORECASTER_DATA_SOURCE": "file",
        "FORECASTER_DATA_PATH": str(registry.data_path),
        "FORECASTER_DEVICE": "cpu",
        "FORECASTER_POLL_INTERVAL_S": "0",
        "OMP_NUM_THREADS": "1",
        **env_extra,
    }
    log_path = registry.root / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=registry.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def wait_for(http: httpx.Client, process: subprocess.Popen[bytes], log_path: Path, path: str, status: int) -> Any:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    response = None
    while time.monotonic() < deadline and process.poll() is None:
        try:
            response = http.get(path)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{path} never answered {status}: {response and response.text}\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes], log_path: Path) -> tuple[int, float]:
    started = time.monotonic()
    process.terminate()
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit within {STOP_TIMEOUT_S} s of SIGTERM\n{log_path.read_text()}") from None
    return code, time.monotonic() - started


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_forecaster_serve_process_answers_logs_and_stops(registry, free_port, history):
    port = free_port()
    with serve_process(registry, port, FORECASTER_LOG_FORMAT="json") as (process, log_path):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            ready = wait_for(http, process, log_path, "/ready", 200)
            assert ready.json()["version"] == "1"

            response = http.post("/forecast", json={"history": history}, headers={"X-Request-ID": "probe-42"})
            assert response.status_code == 200, response.text
            assert response.headers["x-request-id"] == "probe-42"
            assert response.json()["model"]["name"] == "svc"
            assert [p["date"] for p in response.json()["forecasts"][0]["points"]] == [
                "2023-12-26",
                "2023-12-27",
                "2023-12-28",
            ]
            by_ticker = http.post("/forecast", json={"ticker": "AAA"})
            assert by_ticker.status_code == 200, by_ticker.text
        code, _ = stop(process, log_path)
    output = log_path.read_text()
    assert code in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal after a graceful exit
    assert "Application shutdown complete." in output
    access = [line for line in json_lines(output) if line["logger"] == "service.access"]
    [probe] = [line for line in access if line["request_id"] == "probe-42"]
    assert (probe["method"], probe["path"], probe["status"], probe["series"]) == ("POST", "/forecast", 200, 1)
    assert probe["duration_ms"] > 0
    assert {"time", "level", "message"} <= set(probe)
    assert any(line["path"] == "/ready" and line["series"] is None for line in access)
    assert '"POST /forecast HTTP/1.1" 200' not in output  # uvicorn's own access log stays off


@pytest.mark.slow
def test_serve_with_a_hung_registry_answers_503_at_once_logs_why_and_stops_within_seconds(
    registry, free_port, registry_proxy, history
):
    proxy = registry_proxy(mode="hang")  # accepts connections, never answers
    port = free_port()
    settings = {
        "FORECASTER_TRACKING_URI": proxy.uri("ops:s3cret"),
        "FORECASTER_REGISTRY_TIMEOUT_S": "1",
        "FORECASTER_POLL_INTERVAL_S": "0.5",
        "FORECASTER_LOG_FORMAT": "json",
    }
    with serve_process(registry, port, **settings) as (process, log_path):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_for(http, process, log_path, "/health", 200)
            ready = wait_for(http, process, log_path, "/ready", 503)
            started = time.monotonic()
            response = http.post("/forecast", json={"history": history})
            assert time.monotonic() - started < 8.0  # the registry bound is 1 s; it hung for minutes
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "5"
            deadline = time.monotonic() + 15
            while "still loading" in (ready := http.get("/ready")).json()["detail"]:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.1)
            assert ready.json()["registry"] == "down"
            assert ready.json()["detail"] == "svc@champion: registry: resolve svc@champion: no answer within 1 s"
        # MLflow's own calls (5 s timeout in these tests, 10 s by default) are still hanging here
        code, took = stop(process, log_path)
    output = log_path.read_text()
    assert code in (0, -signal.SIGTERM), output
    assert took < 10.0, f"SIGTERM took {took:.1f} s"
    warnings = [line for line in json_lines(output) if line["level"] == "warning"]
    assert any("no answer within 1 s" in line["message"] for line in warnings), output
    assert any("ops:***@127.0.0.1" in line["message"] for line in json_lines(output)), output
    assert "s3cret" not in output
