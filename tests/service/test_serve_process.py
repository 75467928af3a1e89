"""`forecaster serve` as a real process: starts, becomes ready, forecasts, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

STARTUP_TIMEOUT_S = 90.0


@pytest.mark.slow
def test_forecaster_serve_process_answers_and_stops(registry, free_port, history):
    port = free_port()
    executable = Path(sys.executable).parent / "forecaster"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": registry.uri,
        "FORECASTER_MODEL_NAME": "svc",
        "FORECASTER_DATA_SOURCE": "file",
        "FORECASTER_DATA_PATH": str(registry.data_path),
        "FORECASTER_DEVICE": "cpu",
        "FORECASTER_POLL_INTERVAL_S": "0",
        "OMP_NUM_THREADS": "1",
    }
    log_path = registry.root / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
            env=env,
            cwd=registry.root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        ready = None
        with httpx.Client(base_url=url, timeout=10) as http:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    ready = http.get("/ready")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.25)
            assert ready is not None and ready.status_code == 200, log_path.read_text()
            assert ready.json()["version"] == "1"

            response = http.post("/forecast", json={"history": history})
            assert response.status_code == 200, response.text
            assert response.json()["model"]["name"] == "svc"
            assert [p["date"] for p in response.json()["forecasts"][0]["points"]] == [
                "2023-12-26",
                "2023-12-27",
                "2023-12-28",
            ]
            by_ticker = http.post("/forecast", json={"ticker": "AAA"})
            assert by_ticker.status_code == 200, by_ticker.text
    finally:
        process.terminate()
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            raise AssertionError("forecaster serve did not exit within 30 s of SIGTERM") from None
    output = log_path.read_text()
    assert code in (0, -signal.SIGTERM), output  # uvicorn re-raises the signal after a graceful exit
    assert "Application shutdown complete." in output
