"""GET /models, /health, /ready, /metrics, the docs, and micro-batching under concurrency."""

from __future__ import annotations

import datetime as dt
import logging
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from forecaster.registry import tracking


def metric(client, sample_name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0.0 when absent)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_health_is_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_reports_the_loaded_version_the_registry_and_the_last_refresh(client):
    response = client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    refreshed = dt.datetime.fromisoformat(body.pop("last_refresh"))
    assert body == {
        "status": "ready",
        "model": "svc",
        "alias": "champion",
        "version": "1",
        "registry": "up",
        "failed": None,
        "detail": None,
    }
    assert abs(dt.datetime.now(dt.UTC) - refreshed) < dt.timedelta(hours=1)
    assert metric(client, "forecaster_registry_up") == 1.0
    assert metric(client, "forecaster_registry_last_refresh_timestamp_seconds") == refreshed.timestamp()


def test_models_lists_the_loaded_model(client, registry):
    response = client.get("/models")
    assert response.status_code == 200
    champion = [m for m in response.json() if m["name"] == "svc" and m["alias"] == "champion"]
    assert len(champion) == 1
    info = champion[0]
    assert info["version"] == "1"
    assert info["run_id"] == registry.run.run_id
    assert (info["lookback"], info["horizon"]) == (registry.lookback, registry.horizon)
    assert (info["arch"], info["mode"], info["device"]) == ("lstm", "n-to-1", "cpu")
    assert info["quantiles"] == [0.1, 0.5, 0.9]
    loaded_at = dt.datetime.fromisoformat(info["loaded_at"])
    assert abs(dt.datetime.now(dt.UTC) - loaded_at) < dt.timedelta(hours=1)


def test_metrics_count_requests_by_route_and_status(client, history):
    ok = {"route": "/forecast", "method": "POST", "status": "200"}
    bad = {"route": "/forecast", "method": "POST", "status": "422"}
    before_ok = metric(client, "forecaster_requests_total", **ok)
    before_bad = metric(client, "forecaster_requests_total", **bad)
    for _ in range(2):
        assert client.post("/forecast", json={"history": history}).status_code == 200
    assert client.post("/forecast", json={"history": history[:3]}).status_code == 422
    assert metric(client, "forecaster_requests_total", **ok) == before_ok + 2
    assert metric(client, "forecaster_requests_total", **bad) == before_bad + 1
    assert metric(client, "forecaster_request_latency_seconds_count", route="/forecast", status="200") >= 2
    assert metric(client, "forecaster_request_latency_seconds_bucket", route="/forecast", status="200", le="+Inf") >= 2
    assert metric(client, "forecaster_model_version", name="svc", ref="champion") == 1.0
    assert metric(client, "forecaster_batch_windows_count") >= 2
    text = client.get("/metrics").text
    assert "# TYPE forecaster_request_latency_seconds histogram" in text
    assert "# TYPE forecaster_batch_windows histogram" in text


def test_docs_and_openapi_describe_forecast(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "post" in paths["/forecast"]
    assert {"/models", "/health", "/ready", "/admin/reload"} <= set(paths)


def test_every_documented_error_has_the_error_schema(client):
    spec = client.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorDetail"
    assert spec["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            for status, response in responses.items():
                if status[0] in "45":
                    schema = response["content"]["application/json"]["schema"]
                    ref = schema["$ref"]
                    assert (
                        ref == error_ref
                        or "detail" in spec["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
                    ), (method, path, status)
    forecast = spec["paths"]["/forecast"]["post"]["responses"]
    assert {"404", "405", "408", "409", "413", "422", "500", "503"} <= set(forecast)
    assert "401" not in forecast  # no key configured here: /forecast asks for none (test_request_schema)
    assert "Retry-After" in forecast["503"]["headers"]
    assert {"401", "403", "409", "503"} <= set(spec["paths"]["/admin/reload"]["post"]["responses"])
    assert "503" in spec["paths"]["/ready"]["get"]["responses"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(serve_app, registry):
    bars = registry.frame[registry.frame["ticker"] == "BBB"]
    ends = range(len(bars) - 32, len(bars))
    windows = [bars.iloc[end - registry.lookback : end] for end in ends]
    bodies = [
        {
            "history": [
                {"date": f"{r.date:%Y-%m-%d}", "open": r.open, "high": r.high, "low": r.low, "close": r.close}
                for r in w.itertuples()
            ]
        }
        for w in windows
    ]
    forecaster, _ = tracking.load_forecaster("models:/svc@champion", device="cpu")
    expected = forecaster.predict_windows(np.stack([w[["open", "high", "low", "close"]].to_numpy() for w in windows]))

    with serve_app(batch_wait_ms=20) as http, ThreadPoolExecutor(max_workers=32) as pool:
        responses = list(pool.map(lambda body: http.post("/forecast", json=body), bodies))
        assert [r.status_code for r in responses] == [200] * 32, [r.text for r in responses if r.status_code != 200]
        for i, response in enumerate(responses):
            got = response.json()["forecasts"][0]["points"]
            np.testing.assert_allclose([p["close"] for p in got], expected.median[i], rtol=1e-5)
            np.testing.assert_allclose([p["upper"] for p in got], expected.upper[i], rtol=1e-5)
        passes = metric(http, "forecaster_batch_windows_count")
        single = metric(http, "forecaster_batch_windows_bucket", le="1.0")
        windows_total = metric(http, "forecaster_batch_windows_sum")
    assert passes - single >= 1, f"no forward pass held more than one window ({passes} passes)"
    assert passes < 32 + 5  # fewer passes than requests (+ warm-up and /ready probes)
    assert windows_total >= 32


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_every_request_writes_one_access_line_with_its_id_status_duration_and_series(client, history):
    # a handler on the access logger itself: whether its records also propagate to the root logger
    # (caplog) depends on which earlier test configured logging, and the order is not fixed
    access, collect = logging.getLogger("service.access"), _Collect()
    level = access.level
    access.addHandler(collect)
    access.setLevel(logging.INFO)
    try:
        body = {"series": [{"history": history}, {"history": history, "id": "again"}]}
        response = client.post("/forecast", json=body, headers={"X-Request-ID": "abc-123"})
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "abc-123"  # a caller's id is kept
        odd = client.get("/ready", headers={"X-Request-ID": "not an id; " + "x" * 80})
        generated = odd.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)  # an unusable one is replaced
    finally:
        access.removeHandler(collect)
        access.setLevel(level)

    lines = collect.records
    [line] = [r for r in lines if r.request_id == "abc-123"]
    assert (line.method, line.path, line.status, line.series) == ("POST", "/forecast", 200, 2)
    assert line.duration_ms > 0
    assert line.getMessage().startswith("POST /forecast 200 ")
    assert line.getMessage().endswith(" series=2 id=abc-123")
    [ready] = [r for r in lines if r.request_id == generated]
    assert (ready.path, ready.status, ready.series) == ("/ready", 200, None)
