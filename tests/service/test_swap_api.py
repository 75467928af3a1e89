"""Moving an alias swaps the served version with no failed request: by polling, or at once
through POST /admin/reload."""

from __future__ import annotations

import time

import mlflow
import pytest
from traffic import Traffic

from forecaster.registry import tracking

NAME = "svc_swap"  # its own registered model, so moving its alias leaves svc@champion alone
SWAP_TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def first_version(registry) -> str:
    """svc_swap version 1: the session's trained model, registered again under this name."""
    version = str(mlflow.register_model(registry.run.model_uri, NAME).version)
    tracking.set_alias(NAME, "champion", version)
    return version


class SwapTraffic(Traffic):
    """Threads posting forecasts back to back until stopped (bounded in count and time)."""

    def __init__(self, http, body, threads: int = 2, max_requests: int = 3000, max_seconds: float = 90.0) -> None:
        super().__init__(threads, max_seconds, max_requests)
        self.http, self.body = http, body
        # (answered at, status, version, close) and when each request was sent, in the same order
        self.results: list[tuple[float, int, str | None, float | None]] = []
        self.sent: list[float] = []

    def _run(self) -> None:
        while self.running():
            sent = time.monotonic()
            response = self.http.post("/forecast", json=self.body)
            ok = response.status_code == 200
            body = response.json() if ok else None
            with self.lock:
                self.sent.append(sent)
                self.results.append(
                    (
                        time.monotonic(),
                        response.status_code,
                        body["model"]["version"] if body else response.text,
                        body["forecasts"][0]["points"][0]["close"] if body else None,
                    )
                )

    def versions_after(self, start: float) -> set[str | None]:
        with self.lock:
            return {version for t, _, version, _ in self.results if t > start}


def test_alias_move_swaps_version_without_failed_requests(serve_app, registry, first_version, history):
    body = {"history": history, "model": NAME}
    with serve_app(model_name=NAME, poll_interval_s=0.2) as http:
        assert http.get("/ready").json()["version"] == first_version
        with SwapTraffic(http, body) as traffic:
            second = registry.train(seed=7, register_as=NAME).version  # registered while serving
            assert second is not None and second != first_version
            assert http.post("/forecast", json=body).json()["model"]["version"] == first_version  # alias not moved
            moved_at = time.monotonic()
            tracking.set_alias(NAME, "champion", second)
            while second not in traffic.versions_after(moved_at) and time.monotonic() < moved_at + SWAP_TIMEOUT_S:
                time.sleep(0.05)
            swapped_at = time.monotonic()
            time.sleep(0.5)  # keep traffic flowing on the new version for a moment
        results = traffic.results
        assert second in {version for _, _, version, _ in results}, f"no swap within {SWAP_TIMEOUT_S}s"
        assert len(results) >= 20
        failed = [(status, text) for _, status, text, _ in results if status != 200]
        assert failed == []
        assert {version for _, _, version, _ in results} == {first_version, second}
        # once swapped, never back: a request sent after a new-version answer gets the new version
        # (one sent before the swap may still finish on the old model, after it)
        first_new_answer = min(t for t, _, version, _ in results if version == second)
        late_old = [sent for sent, (_, _, v, _) in zip(traffic.sent, results, strict=True) if v == first_version]
        assert max(late_old) < first_new_answer
        closes = {version: close for _, _, version, close in results}
        assert closes[first_version] != closes[second]  # a different model answers
        assert swapped_at - moved_at < SWAP_TIMEOUT_S

        assert http.get("/ready").json()["version"] == second
        champion = [m for m in http.get("/models").json() if m["alias"] == "champion"]
        assert [m["version"] for m in champion] == [second]
        assert f'forecaster_model_version{{name="{NAME}",ref="champion"}} {float(second)}' in http.get("/metrics").text


def test_admin_reload_swaps_at_once(serve_app, registry, first_version, history):
    tracking.set_alias(NAME, "staging", first_version)
    body = {"history": history, "model": NAME, "alias": "staging"}
    headers = {"X-API-Key": "adm1n"}
    with serve_app(model_name=NAME, alias="staging", poll_interval_s=3600, api_key="adm1n") as http:
        response = http.post("/forecast", json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == {
            "name": NAME,
            "version": first_version,
            "alias": "staging",
            "run_id": registry.run.run_id,
        }

        newer = str(mlflow.register_model(registry.run.model_uri, NAME).version)
        tracking.set_alias(NAME, "staging", newer)
        time.sleep(0.3)
        assert http.post("/forecast", json=body, headers=headers).json()["model"]["version"] == first_version

        reload = http.post("/admin/reload", headers=headers)
        assert reload.status_code == 200, reload.text
        assert reload.json()["changes"] == [f"{NAME}@staging: {first_version} -> {newer}"]
        assert reload.json()["models"][f"{NAME}@staging"] == newer
        response = http.post("/forecast", json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["model"]["version"] == newer
        assert http.get("/ready").json()["version"] == newer

        again = http.post("/admin/reload", headers=headers)
        assert again.status_code == 200
        assert again.json()["changes"] == []


def truncate_weights(bundle) -> str:
    weights = bundle / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    return "SafetensorError"


def test_a_version_that_fails_to_load_is_reported_everywhere_and_the_old_one_keeps_serving(
    serve_app, make_version, history
):
    name = "svc_badswap"
    good, _ = make_version(name)
    tracking.set_alias(name, "champion", good)
    body = {"history": history, "model": name}
    with serve_app(model_name=name, poll_interval_s=3600, api_key="adm1n") as http:
        http.headers["X-API-Key"] = "adm1n"
        assert http.post("/forecast", json=body).json()["model"]["version"] == good
        bad, cause = make_version(name, truncate_weights)
        tracking.set_alias(name, "champion", bad)

        reload = http.post("/admin/reload")
        assert reload.status_code == 409, reload.text
        report = reload.json()
        assert report["changes"] == []
        assert report["models"][f"{name}@champion"] == good
        [failed] = report["failed"]
        assert (failed["model"], failed["version"]) == (f"{name}@champion", bad)
        assert failed["reason"].startswith(f"model '{name}' version {bad} cannot be loaded: {cause}")
        assert report["detail"] == f"{name}@champion version {bad}: {failed['reason']}"

        served = http.post("/forecast", json=body)
        assert served.status_code == 200 and served.json()["model"]["version"] == good
        ready = http.get("/ready").json()
        assert (ready["status"], ready["version"]) == ("ready", good)
        assert ready["failed"] == failed
        [listed] = [m for m in http.get("/models").json() if m["alias"] == "champion"]
        assert listed["version"] == good and listed["failed"] == failed
        text = http.get("/metrics").text
        assert f'forecaster_model_load_failures_total{{name="{name}",ref="champion"}} 1.0' in text
        assert f'forecaster_model_failed_version{{name="{name}",ref="champion"}} {float(bad)}' in text

        assert http.post("/admin/reload").status_code == 409  # an operator's reload tries again
        tracking.set_alias(name, "champion", good)  # the alias moves back: nothing is failing any more
        again = http.post("/admin/reload")
        assert again.status_code == 200, again.text
        assert again.json()["failed"] == []
        assert http.get("/ready").json()["failed"] is None
        text = http.get("/metrics").text
        assert f'forecaster_model_load_failures_total{{name="{name}",ref="champion"}} 2.0' in text
        assert f'forecaster_model_failed_version{{name="{name}",ref="champion"}} 0.0' in text


def test_polling_does_not_reload_a_version_that_failed_until_the_alias_moves(serve_app, make_version, history):
    name = "svc_badpoll"
    good, _ = make_version(name)
    tracking.set_alias(name, "champion", good)
    with serve_app(model_name=name, poll_interval_s=0.05) as http:
        bad, _ = make_version(name, truncate_weights)
        tracking.set_alias(name, "champion", bad)
        deadline = time.monotonic() + SWAP_TIMEOUT_S
        while (ready := http.get("/ready").json())["failed"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready["failed"]["version"] == bad, ready
        first = ready["last_refresh"]
        for _ in range(3):  # three more completed polls, counted by their refresh time
            deadline = time.monotonic() + SWAP_TIMEOUT_S
            while http.get("/ready").json()["last_refresh"] == first and time.monotonic() < deadline:
                time.sleep(0.02)
            first = http.get("/ready").json()["last_refresh"]
        text = http.get("/metrics").text
        assert f'forecaster_model_load_failures_total{{name="{name}",ref="champion"}} 1.0' in text
        assert http.post("/forecast", json={"history": history, "model": name}).json()["model"]["version"] == good
