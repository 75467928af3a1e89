"""A model that answers NaN never serves: a version whose weights or calibration are NaN is refused
at its warm-up (the old version keeps serving, the refusal shows on /admin/reload, /models, /ready
and /metrics), and a loaded model whose answer for one request is not finite gets a 409 naming the
series, never a 200 with nulls. The bad versions are real logged models, edited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_ops_api import metric

from forecaster.model.predictor import Forecast, Forecaster
from forecaster.registry import tracking
from service.main import create_app
from service.models.warmup import probe_window, unusable, warm_up


def nan_weights(bundle: Path) -> str:
    weights = bundle / "weights.safetensors"
    tensors = load_file(str(weights))
    save_file({name: torch.full_like(t, float("nan")) for name, t in tensors.items()}, str(weights))
    return "non-finite values (NaN or inf)"


def nan_calibration(bundle: Path) -> str:
    config = json.loads((bundle / "config.json").read_text())
    offsets = config["calibration"]["offsets"]
    config["calibration"]["offsets"] = [[float("nan")] * len(row) for row in offsets]
    (bundle / "config.json").write_text(json.dumps(config))  # Python writes NaN; the loader reads it
    return "non-finite values (NaN or inf)"


NAN_DAMAGES = [nan_weights, nan_calibration]


@pytest.mark.parametrize("damage", NAN_DAMAGES, ids=lambda d: d.__name__)
def test_a_nan_version_never_replaces_the_champion_and_the_refusal_shows_everywhere(
    serve_app, make_version, history, damage
):
    name = f"svc_nan_{damage.__name__}"
    good, _ = make_version(name)
    tracking.set_alias(name, "champion", good)
    body = {"history": history, "model": name}
    with serve_app(model_name=name, poll_interval_s=3600, api_key="adm1n") as http:
        http.headers["X-API-Key"] = "adm1n"
        bad, cause = make_version(name, damage)
        tracking.set_alias(name, "champion", bad)

        reload = http.post("/admin/reload")
        assert reload.status_code == 409, reload.text
        report = reload.json()
        assert report["changes"] == []
        assert report["models"] == {f"{name}@champion": good}
        [failed] = report["failed"]
        assert (failed["model"], failed["version"]) == (f"{name}@champion", bad)
        assert failed["reason"].startswith(
            f"model '{name}' version {bad} cannot be loaded: its warm-up forecast has {cause}"
        ), failed["reason"]

        served = http.post("/forecast", json=body)
        assert served.status_code == 200, served.text
        assert served.json()["model"]["version"] == good
        numbers = [v for p in served.json()["forecasts"][0]["points"] for v in (p["close"], *p["quantiles"])]
        assert all(isinstance(v, float) and np.isfinite(v) for v in numbers), numbers

        ready = http.get("/ready")
        assert ready.status_code == 200, ready.text
        assert (ready.json()["version"], ready.json()["failed"]) == (good, failed)
        [listed] = http.get("/models").json()
        assert (listed["version"], listed["failed"]) == (good, failed)
        assert metric(http, "forecaster_model_failed_version", name=name, ref="champion") == float(bad)
        assert metric(http, "forecaster_model_load_failures_total", name=name, ref="champion") == 1.0


def test_a_nan_champion_at_start_is_not_served_and_ready_says_why(serve_app, make_version, history):
    name = "svc_nan_start"
    bad, cause = make_version(name, nan_weights)
    tracking.set_alias(name, "champion", bad)
    with serve_app(wait=False, model_name=name, poll_interval_s=3600) as http:
        response = http.post("/forecast", json={"history": history})
        assert response.status_code == 503, response.text
        reason = f"model '{name}' version {bad} cannot be loaded: its warm-up forecast has {cause}"
        assert response.json()["detail"].startswith(f"no model available: {reason}"), response.text
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["version"] is None
        assert ready.json()["detail"].startswith(f"{name}@champion: {reason}"), ready.text
        assert ready.json()["failed"]["version"] == bad
        assert http.get("/models").json() == []


def test_a_pinned_nan_version_is_409_naming_version_and_cause(client, make_version, history):
    bad, cause = make_version("svc_nan_pinned", nan_calibration)
    response = client.post("/forecast", json={"history": history, "model": "svc_nan_pinned", "version": int(bad)})
    assert response.status_code == 409, response.text
    assert response.json()["detail"].startswith(
        f"model 'svc_nan_pinned' version {bad} cannot be loaded: its warm-up forecast has {cause}"
    )


def test_a_version_whose_warm_up_quantiles_cross_is_refused(serve_app, history, monkeypatch):
    """The network and the calibration keep quantiles ordered by construction; a version that
    breaks that anyway (here: its loader made to reverse them) is refused like a NaN one."""
    real = tracking.load_forecaster

    def crossing(*args: Any, **kwargs: Any) -> Any:
        forecaster, ref = real(*args, **kwargs)
        predict = forecaster.predict_windows
        forecaster.predict_windows = lambda X, **kw: Forecast(  # type: ignore[method-assign]
            predict(X, **kw).quantiles[..., ::-1], forecaster.quantiles
        )
        return forecaster, ref

    monkeypatch.setattr(tracking, "load_forecaster", crossing)
    with serve_app(wait=False, poll_interval_s=3600) as http:
        response = http.post("/forecast", json={"history": history, "version": 1})
        assert response.status_code == 409, response.text
        assert response.json()["detail"].startswith(
            "model 'svc' version 1 cannot be loaded: its warm-up forecast has quantiles out of order at step 1: "
            "level 0.1 is "
        ), response.text


def test_a_loaded_model_answering_nan_for_one_series_is_a_409_naming_it_never_nulls(registry, serve_built, history):
    """A model that passed its warm-up but answers NaN for some input (here: histories ending
    above 1000, made so by wrapping its predict) fails that request with 409; others still get 200."""
    app = create_app(registry.settings())
    with serve_built(app) as http:
        forecaster: Forecaster = app.state.store.models[app.state.store.default_key].forecaster
        predict = forecaster.predict_windows

        def nan_above_1000(X: np.ndarray, **kwargs: Any) -> Forecast:
            forecast = predict(X, **kwargs)
            forecast.quantiles[X[:, -1, 3] > 1000] = np.nan
            return forecast

        forecaster.predict_windows = nan_above_1000  # type: ignore[method-assign]
        high = [{**bar, **{k: bar[k] * 100 for k in ("open", "high", "low", "close")}} for bar in history]
        series = {"series": [{"id": "ok", "history": history}, {"id": "high", "history": high}]}

        response = http.post("/forecast", json=series)
        assert response.status_code == 409, response.text
        assert response.json() == {
            "detail": "model 'svc' version 1 cannot forecast series[1]: it answered non-finite values (NaN or inf)"
        }
        single = http.post("/forecast", json={"history": high})
        assert single.status_code == 409
        assert "cannot forecast the series" in single.json()["detail"]
        assert http.post("/forecast", json={"history": history}).status_code == 200


def test_unusable_names_non_finite_numbers_and_crossed_quantiles():
    levels = (0.1, 0.5, 0.9)
    good = np.array([[[1.0, 2.0, 2.0], [1.0, 1.5, 3.0]]])  # ties are ordered
    assert unusable(good, levels) is None
    for bad in (np.nan, np.inf, -np.inf):
        values = good.copy()
        values[0, 1, 2] = bad
        assert unusable(values, levels) == "non-finite values (NaN or inf) in 1 of 6 numbers"
    crossed = good.copy()
    crossed[0, 1] = [1.0, 3.0, 2.5]
    assert unusable(crossed, levels) == "quantiles out of order at step 2: level 0.5 is 3, above level 0.9 at 2.5"


def test_the_probe_window_is_a_valid_moving_series(registry):
    window = probe_window(registry.lookback)
    assert window.shape == (1, registry.lookback, 4) and window.dtype == np.float32
    open_, high, low, close = window[0].T
    assert (high >= np.maximum(open_, close)).all() and (low <= np.minimum(open_, close)).all()
    assert np.ptp(close) > 0.01  # it moves: a flat window would test only the volatility floor
    forecaster, _ = tracking.load_forecaster("models:/svc/1", device="cpu")
    assert warm_up(forecaster) is None  # the session's real model passes its own warm-up
