"""API key on /forecast, /admin and (when protected) /models and /metrics; 503 with Retry-After
while no model can be loaded."""

from __future__ import annotations

import time

import mlflow
import pytest

from forecaster.registry import tracking

KEY_DETAIL = "X-API-Key header: missing or wrong API key"


@pytest.fixture(scope="module")
def keyed(serve_app):
    with serve_app(api_key="s3cret") as http:
        yield http


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_forecast_without_the_right_key_is_401(keyed, history, headers):
    response = keyed.post("/forecast", json={"history": history}, headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == KEY_DETAIL
    assert response.headers["WWW-Authenticate"] == "APIKey"


def test_forecast_with_the_key_is_200(keyed, history, baseline, same_forecast):
    response = keyed.post("/forecast", json={"history": history}, headers={"X-API-Key": "s3cret"})
    assert response.status_code == 200, response.text
    same_forecast(response.json(), baseline)


def test_health_and_ready_need_no_key(keyed):
    assert keyed.get("/health").status_code == 200
    assert keyed.get("/ready").status_code == 200


def test_models_and_metrics_need_no_key_by_default(keyed):
    assert keyed.get("/models").status_code == 200
    assert keyed.get("/metrics").status_code == 200


@pytest.fixture(scope="module")
def keyed_status(serve_app):
    with serve_app(api_key="s3cret", protect_status_routes=True) as http:
        yield http


@pytest.mark.parametrize("path", ["/models", "/metrics"])
def test_models_and_metrics_need_the_key_when_protected(keyed_status, path):
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = keyed_status.get(path, headers=headers)
        assert response.status_code == 401, (path, headers)
        assert response.json()["detail"] == KEY_DETAIL
    assert keyed_status.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert keyed_status.get("/ready").status_code == keyed_status.get("/health").status_code == 200  # never keyed


def test_protect_status_routes_without_a_key_protects_nothing(serve_app):
    with serve_app(protect_status_routes=True) as http:
        assert http.get("/models").status_code == http.get("/metrics").status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_admin_reload_without_the_right_key_is_401(keyed, headers):
    response = keyed.post("/admin/reload", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == KEY_DETAIL


def test_admin_reload_with_the_key_is_200(keyed):
    response = keyed.post("/admin/reload", headers={"X-API-Key": "s3cret"})
    assert response.status_code == 200, response.text
    assert response.json()["changes"] == []
    assert response.json()["models"]["svc@champion"] == "1"


def test_admin_is_disabled_without_a_configured_key(client):
    response = client.post("/admin/reload", headers={"X-API-Key": "anything"})
    assert response.status_code == 403
    assert response.json()["detail"] == "admin endpoints are disabled: set FORECASTER_API_KEY to enable them"


def test_not_yet_registered_model_is_not_ready_then_loads_when_registered(serve_app, registry, history):
    with serve_app(wait=False, model_name="late", poll_interval_s=0.2) as http:
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert ready.headers["Retry-After"] == "5"
        assert ready.json()["detail"].startswith("late@champion: ")
        response = http.post("/forecast", json={"history": history})
        # the service's own model missing means "not ready": 503 with Retry-After, not the client's 404
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        detail = response.json()["detail"]
        assert detail == "no model available: model 'late': alias 'champion' not found in the registry"

        version = mlflow.register_model(registry.run.model_uri, "late").version
        tracking.set_alias("late", "champion", str(version))
        deadline = time.monotonic() + 15
        while (ready := http.get("/ready")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.status_code == 200, ready.text
        assert ready.json()["version"] == str(version)
        response = http.post("/forecast", json={"history": history})
        assert response.status_code == 200, response.text
        assert response.json()["model"]["name"] == "late"


def test_unreachable_registry_gives_503_with_retry_after(serve_app, registry, history, free_port):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with serve_app(wait=False, tracking_uri=dead, poll_interval_s=0, retry_after_s=7) as http:
        deadline = time.monotonic() + 30
        while "still loading" in (ready := http.get("/ready")).json()["detail"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.status_code == 503
        assert ready.headers["Retry-After"] == "7"
        assert ready.json()["status"] == "not ready"
        assert ready.json()["detail"].startswith("svc@champion: registry: ")
        response = http.post("/forecast", json={"history": history})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "7"
        assert response.json()["detail"].startswith("no model available: registry: ")
        assert http.get("/health").status_code == 200
    assert mlflow.get_tracking_uri() == registry.uri  # restored for the tests that follow
