"""A password in the tracking URI never leaves the process: not in a response body or header,
not in a log line, not in the CLI's error."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forecaster.errors import redact

SECRET = "s3cret"
FORECASTER = str(Path(sys.executable).parent / "forecaster")


def test_redact_scrubs_passwords_inside_any_text():
    assert (
        redact("postgresql+psycopg2://mlflow:s3cret@db:5432/mlflow")
        == "postgresql+psycopg2://mlflow:***@db:5432/mlflow"
    )
    message = (
        "API request to http://user:s3cret@127.0.0.1:9/api/2.0/mlflow/registered-models/alias failed "
        "with exception HTTPConnectionPool(host='127.0.0.1', port=9)"
    )
    assert redact(message) == message.replace(":s3cret@", ":***@")
    dsn = "host=db user=mlflow password=s3cret dbname=x"
    assert redact(dsn) == "host=db user=mlflow password=*** dbname=x"
    assert redact("a https://:s3cret@host/ and http://u:p4ss@h:1/x") == "a https://:***@host/ and http://u:***@h:1/x"
    for untouched in ("sqlite:////tmp/x/mlflow.db", "http://127.0.0.1:5000/api", "user@example.com at 10:30"):
        assert redact(untouched) == untouched


@pytest.mark.parametrize("scheme", ["http", "postgresql"])
def test_no_answer_header_or_log_line_carries_the_store_password(serve_app, free_port, history, caplog, capsys, scheme):
    port = free_port()  # nothing listens there: every registry call fails
    uri = {
        "http": f"http://ops:{SECRET}@127.0.0.1:{port}/",
        "postgresql": f"postgresql+psycopg2://mlflow:{SECRET}@127.0.0.1:{port}/mlflow",
    }[scheme]
    caplog.set_level(logging.DEBUG)
    answers = []
    with serve_app(wait=False, tracking_uri=uri, api_key="adm1n", poll_interval_s=0.1, registry_timeout_s=5) as http:
        http.headers["X-API-Key"] = "adm1n"
        deadline = time.monotonic() + 30
        while "still loading" in (ready := http.get("/ready")).json()["detail"] and time.monotonic() < deadline:
            time.sleep(0.05)
        answers.append(ready)
        assert ready.status_code == 503
        assert ready.json()["detail"] == "svc@champion: registry: unavailable"  # no claim that a model serves
        for method, path, body in [
            ("POST", "/forecast", {"history": history}),
            ("POST", "/forecast", {"history": history, "model": "other"}),
            ("POST", "/forecast", {"history": history, "version": 1}),
            ("POST", "/admin/reload", None),
            ("GET", "/models", None),
            ("GET", "/metrics", None),
            ("GET", "/openapi.json", None),
            ("GET", "/docs", None),
            ("GET", "/health", None),
        ]:
            answers.append(http.request(method, path, json=body))
    statuses = {(a.request.method, a.request.url.path, a.status_code) for a in answers}
    assert ("POST", "/forecast", 503) in statuses and ("POST", "/admin/reload", 503) in statuses, statuses
    for answer in answers:
        assert SECRET not in answer.text, (answer.request.url, answer.text)
        assert SECRET not in str(answer.headers), answer.request.url
    assert "registry" in caplog.text  # the failures were logged ...
    assert SECRET not in caplog.text  # ... without the password
    captured = capsys.readouterr()
    assert "***@127.0.0.1" in captured.err  # the service's own stderr names the store, redacted
    assert SECRET not in captured.err + captured.out


@pytest.mark.slow
def test_cli_with_a_dead_tracking_uri_fails_within_seconds_in_one_line(registry, free_port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # our retry defaults, not the tests'
    env |= {"COLUMNS": "250", "PYTHONWARNINGS": "ignore", "CUDA_VISIBLE_DEVICES": ""}
    dead = f"http://ops:{SECRET}@127.0.0.1:{free_port()}/"
    started = time.monotonic()
    result = subprocess.run(
        [FORECASTER, "evaluate", "--model-uri", "models:/svc@champion", "--tracking-uri", dead],
        env=env,
        cwd=registry.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert errors == lines[-1:], result.stderr[-3000:]  # one error line, last, no traceback
    assert errors[0].startswith("error: registry: cannot resolve model 'svc' at http://ops:***@127.0.0.1:"), lines
    # before it at most urllib3's own notices of MLflow's (now two) retries
    assert all("Retrying" in line or line.startswith(" ") for line in lines[:-1]), lines
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert elapsed < 40, f"took {elapsed:.1f} s"  # about 3 s of MLflow retries plus start-up; it took 4 minutes
