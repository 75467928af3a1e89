"""Failures answered cleanly: unexpected errors (JSON 500, connection kept), versions that cannot
be loaded (409), impossible versions (404, no SQL), no model registered (503), a data source
down (503), a registry that hangs, dies and comes back under a running service (503 within
seconds, the loaded model keeps serving, recovery), and failed lookups remembered briefly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from test_ops_api import metric

from forecaster.errors import ModelNotFoundError, SourceError
from forecaster.registry import tracking
from service.batching import MicroBatcher
from service.errors import RegistryTimeout, ServiceUnavailable
from service.main import create_app
from service.metrics import ServiceMetrics
from service.models.store import ModelStore

BROKEN = "svc_broken"  # its own registered model: versions made from copies of svc/1, then damaged
MLFLOW = str(Path(sys.executable).parent / "mlflow")
# Generous bounds on what must be fast: the registry bound is 1 s in these tests; a few seconds
# more absorb a loaded CI machine, and the failures this guards against took minutes.
FAST_S = 8.0


def connection_of(response: httpx.Response) -> Any:
    """The local address of the TCP connection that carried a response."""
    return response.extensions["network_stream"].get_extra_info("client_addr")


def damage_truncated_weights(bundle: Path) -> str:
    weights = bundle / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    return "SafetensorError"


def damage_garbled_config(bundle: Path) -> str:
    (bundle / "config.json").write_text('{"format_version": 1, "model": ')
    return "config.json"


def damage_format_version(bundle: Path) -> str:
    config = json.loads((bundle / "config.json").read_text())
    config["format_version"] = 99
    (bundle / "config.json").write_text(json.dumps(config))
    return "format_version 99"


def damage_missing_weights(bundle: Path) -> str:
    (bundle / "weights.safetensors").unlink()
    return "weights.safetensors"


DAMAGES = [damage_truncated_weights, damage_garbled_config, damage_format_version, damage_missing_weights]


def test_unexpected_error_is_a_json_500_naming_the_request_id_and_the_connection_stays_usable(
    client, history, monkeypatch
):
    real = tracking.resolve_version

    def buggy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "boom":
            raise RuntimeError("a bug nobody mapped")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(tracking, "resolve_version", buggy)
    before = metric(client, "forecaster_errors_total", kind="internal")
    answered_500 = {"route": "/forecast", "method": "POST", "status": "500"}
    before_500 = metric(client, "forecaster_requests_total", **answered_500)
    failed = client.post("/forecast", json={"history": history, "model": "boom"})
    assert failed.status_code == 500
    assert failed.headers["content-type"] == "application/json"
    request_id = failed.headers["x-request-id"]
    assert failed.json() == {"detail": f"internal error (id {request_id})"}
    assert "bug" not in failed.text
    assert failed.headers.get("connection", "").lower() != "close"

    ok = client.post("/forecast", json={"history": history})
    assert ok.status_code == 200, ok.text
    assert connection_of(ok) == connection_of(failed)  # same keep-alive connection
    assert metric(client, "forecaster_errors_total", kind="internal") == before + 1
    assert metric(client, "forecaster_requests_total", **answered_500) == before_500 + 1  # the catch-all's answer


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: d.__name__.removeprefix("damage_"))
def test_pinned_version_that_cannot_be_loaded_is_409_naming_version_and_cause(client, history, make_version, damage):
    version, cause = make_version(BROKEN, damage)
    before = metric(client, "forecaster_errors_total", kind="model_load")
    response = client.post("/forecast", json={"history": history, "model": BROKEN, "version": int(version)})
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert detail.startswith(f"model '{BROKEN}' version {version} cannot be loaded: "), detail
    assert cause in detail
    assert "/tmp" not in detail and "pytest" not in detail  # no local paths
    again = client.post("/forecast", json={"history": history})
    assert again.status_code == 200
    assert connection_of(again) == connection_of(response)
    assert metric(client, "forecaster_errors_total", kind="model_load") == before + 1


@pytest.mark.parametrize("version", [2**31, 10**12, 10**30])
def test_a_version_no_registry_can_hold_is_404_without_store_text(client, history, version):
    response = client.post("/forecast", json={"history": history, "version": version})
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"model 'svc': version '{version}' not found in the registry"}


def test_no_model_registered_is_503_with_retry_after_but_unknown_named_references_are_404(serve_app, history):
    with serve_app(wait=False, model_name="never_registered", retry_after_s=9) as http:
        response = http.post("/forecast", json={"history": history})
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "9"
        assert response.json()["detail"] == (
            "no model available: model 'never_registered': alias 'champion' not found in the registry"
        )
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith("never_registered@champion: ")
        for named in ({"model": "ghost"}, {"model": "svc", "alias": "nope"}, {"model": "svc", "version": 999}):
            response = http.post("/forecast", json={"history": history, **named})
            assert response.status_code == 404, (named, response.text)
            assert "Retry-After" not in response.headers


def test_a_data_source_failure_is_503_with_retry_after(registry, serve_built):
    class DownSource:
        def __getattr__(self, name: str) -> Callable[..., Any]:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise SourceError("yahoo: no answer from https://user:s3cret@query1.example/v8")

            return fail

    app = create_app(registry.settings(retry_after_s=4))
    app.state.history = DownSource()
    with serve_built(app) as http:
        response = http.post("/forecast", json={"ticker": "AAA"})
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "4"
        assert response.json() == {"detail": "data source 'file' unavailable; retry later"}
        assert metric(http, "forecaster_errors_total", kind="source") == 1


def test_a_hung_registry_gives_503_within_the_bound_and_says_why(serve_app, registry_proxy, history):
    proxy = registry_proxy(mode="hang")  # accepts, never answers
    with serve_app(wait=False, tracking_uri=proxy.uri(), registry_timeout_s=1.0, retry_after_s=6) as http:
        started = time.monotonic()
        response = http.post("/forecast", json={"history": history, "model": "other"})
        assert time.monotonic() - started < FAST_S
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "6"
        assert response.json()["detail"] == "no model available: registry: resolve other@champion: no answer within 1 s"
        deadline = time.monotonic() + FAST_S
        while "still loading" in (ready := http.get("/ready")).json()["detail"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.status_code == 503
        assert ready.json()["registry"] == "down"
        assert ready.json()["detail"] == "svc@champion: registry: resolve svc@champion: no answer within 1 s"
        assert metric(http, "forecaster_registry_up") == 0.0


# ------------------------------------------------------------------ a real registry that dies


@pytest.fixture(scope="module")
def mlflow_server(registry, tmp_path_factory) -> Iterator[int]:
    """`mlflow server` on this session's store (the artifacts are local files either way)."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FORECASTER_"))}
    env |= {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONWARNINGS": "ignore"}
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [MLFLOW, "server", "--backend-store-uri", registry.uri, "--host", "127.0.0.1", "--port", str(port)]
            + ["--workers", "1"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"mlflow server did not start: {log_path.read_text()[-3000:]}"
            time.sleep(0.25)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_registry_dying_under_a_running_service(serve_app, mlflow_server, registry_proxy, history, caplog):
    """Loaded through a real `mlflow server`; the server hangs, then refuses, then comes back."""
    caplog.set_level("DEBUG")
    proxy = registry_proxy(mlflow_server)
    seen: list[httpx.Response] = []
    settings = {
        "tracking_uri": proxy.uri("ops:s3cret"),
        "registry_timeout_s": 1.0,
        "negative_cache_s": 0.5,
        "poll_interval_s": 0.2,
        "api_key": "adm1n",
    }
    pinned = {"history": history, "version": 1}  # svc/1: not loaded yet, needs the registry
    with serve_app(**settings) as http:
        http.headers["X-API-Key"] = "adm1n"  # /forecast and /admin need it

        def call(method: str, url: str, **kwargs: Any) -> httpx.Response:
            response = http.request(method, url, **kwargs)
            seen.append(response)
            return response

        assert call("GET", "/ready").json()["registry"] == "up"
        assert call("POST", "/forecast", json={"history": history}).status_code == 200

        for mode in ("hang", "refuse"):
            proxy.set(mode)
            started = time.monotonic()
            response = call("POST", "/forecast", json=pinned)
            assert time.monotonic() - started < FAST_S, mode
            assert response.status_code == 503, (mode, response.text)
            assert response.headers["Retry-After"] == "5"
            assert response.json()["detail"].startswith("no model available: registry: "), response.text
            served = call("POST", "/forecast", json={"history": history})
            assert served.status_code == 200, (mode, served.text)  # the loaded model keeps serving
            deadline = time.monotonic() + FAST_S
            while (ready := call("GET", "/ready")).json()["registry"] != "down" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert ready.status_code == 200 and ready.json()["registry"] == "down", (mode, ready.text)
            reload = call("POST", "/admin/reload")
            assert reload.status_code == 503, (mode, reload.text)
            assert reload.headers["Retry-After"] == "5"
            assert metric(http, "forecaster_registry_up") == 0.0

        proxy.set("forward")
        deadline = time.monotonic() + 20
        while (response := call("POST", "/forecast", json=pinned)).status_code != 200:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.1)
        assert response.json()["model"]["version"] == "1"
        deadline = time.monotonic() + FAST_S
        while (ready := call("GET", "/ready")).json()["registry"] != "up" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.json()["registry"] == "up"
        assert call("POST", "/admin/reload").status_code == 200
        metrics_text = call("GET", "/metrics").text

    for response in seen:
        assert "s3cret" not in response.text
        assert "s3cret" not in str(response.headers)
    assert "s3cret" not in metrics_text
    assert "s3cret" not in caplog.text
    assert "ops:***@" in caplog.text  # the registry was named, redacted


# ------------------------------------------------------------------ the store on its own


def test_failed_lookups_are_remembered_for_a_few_seconds(registry, monkeypatch):
    """Driven by a fake clock: no sleeping, no timing luck."""
    calls: list[str] = []

    def unknown(name: str, alias: str | None = None, version: str | None = None) -> Any:
        calls.append(name)
        raise ModelNotFoundError(f"model '{name}': alias '{alias}' not found in the registry")

    monkeypatch.setattr(tracking, "resolve_version", unknown)
    now = [1000.0]
    store = ModelStore(registry.settings(negative_cache_s=5.0), ServiceMetrics(), clock=lambda: now[0])

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(ModelNotFoundError, match="ghost"):
                await store.get("ghost", "champion")
        assert calls == ["ghost"]  # asked once, answered from memory twice
        now[0] += 5.1
        with pytest.raises(ModelNotFoundError):
            await store.get("ghost", "champion")
        assert calls == ["ghost", "ghost"]
        with pytest.raises(ServiceUnavailable, match="no model available: model 'svc'"):
            await store.get("svc", "champion")  # the service's own model: 503, not 404
        await store.close()

    asyncio.run(scenario())


def test_a_stuck_registry_call_is_abandoned_at_the_bound_and_does_not_block_the_next(registry, monkeypatch):
    release = threading.Event()

    def stuck(name: str, alias: str | None = None, version: str | None = None) -> Any:
        if name == "stuck":
            release.wait(30)  # a registry that does not answer
        raise ModelNotFoundError(f"model '{name}': alias '{alias}' not found in the registry")

    monkeypatch.setattr(tracking, "resolve_version", stuck)
    store = ModelStore(registry.settings(registry_timeout_s=0.2), ServiceMetrics())

    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(RegistryTimeout, match="no answer within 0.2 s"):
            await store.get("stuck", "champion")
        assert time.monotonic() - started < FAST_S
        with pytest.raises(ModelNotFoundError):  # the next call is not queued behind the stuck one
            await store.get("other", "champion")
        assert store.registry_up is True
        await store.close()

    try:
        asyncio.run(scenario())
    finally:
        release.set()


def test_stopping_a_batcher_is_bounded_and_leaves_no_request_waiting():
    """A forward pass that never ends must not hold up a swap or a shutdown; a request that took
    the old model just before a swap is still answered."""
    release = threading.Event()

    def predict(windows: np.ndarray) -> np.ndarray:
        if windows[0, 0, 0] < 0:
            release.wait(30)  # a stuck forward pass
        return windows[:, :1, :1]

    executor = ThreadPoolExecutor(max_workers=2)
    batcher = MicroBatcher(predict, wait_s=0.0, max_batch=8, executor=executor)

    async def scenario() -> None:
        stuck = asyncio.create_task(batcher.submit(-np.ones((1, 2, 4), dtype=np.float32)))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await batcher.stop(drain_s=0.2)
        assert time.monotonic() - started < FAST_S
        with pytest.raises(RuntimeError, match="unloaded during its forward pass"):
            await stuck
        late = await batcher.submit(np.full((1, 2, 4), 3.0, dtype=np.float32))  # after the stop
        assert late.tolist() == [[[3.0]]]

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        executor.shutdown(wait=False)
