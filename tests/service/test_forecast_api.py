"""POST /forecast: response shape, trading dates, parity with the library, batch and ticker forms,
model references."""

from __future__ import annotations

import numpy as np
import pytest

from forecaster.registry import tracking


def points(response_json, index=0):
    return response_json["forecasts"][index]["points"]


def test_forecast_returns_dated_intervals_for_history(client, history, baseline, registry):
    body = baseline
    assert set(body) == {"model", "device", "levels", "forecasts"}
    assert body["model"] == {"name": "svc", "version": "1", "alias": "champion", "run_id": registry.run.run_id}
    assert body["device"] == "cpu"
    assert body["levels"] == [0.1, 0.5, 0.9]
    assert len(body["forecasts"]) == 1
    forecast = body["forecasts"][0]
    assert set(forecast) == {"id", "source", "as_of", "stale", "points"}
    assert (forecast["source"], forecast["as_of"], forecast["stale"]) == ("request", history[-1]["date"], False)
    assert [p["step"] for p in forecast["points"]] == [1, 2, 3]
    for point in forecast["points"]:
        assert set(point) == {"step", "date", "close", "lower", "upper", "quantiles"}
        assert point["lower"] <= point["close"] <= point["upper"]
        assert np.isfinite([point["lower"], point["close"], point["upper"]]).all()
        # every quantile in level order; close, lower and upper are the median and the outer ones
        assert point["quantiles"] == sorted(point["quantiles"])
        assert point["quantiles"] == [point["lower"], point["close"], point["upper"]]


def test_forecast_of_a_ticker_says_where_its_history_came_from(client, registry):
    response = client.post("/forecast", json={"ticker": "BBB"})
    assert response.status_code == 200, response.text
    forecast = response.json()["forecasts"][0]
    last = registry.frame[registry.frame["ticker"] == "BBB"]["date"].max()
    assert (forecast["source"], forecast["as_of"], forecast["stale"]) == ("file", f"{last:%Y-%m-%d}", False)


def test_forecast_dates_are_next_nyse_sessions(baseline, history):
    assert history[-1]["date"] == "2023-12-22"  # Friday; Monday 12-25 is Christmas
    assert [p["date"] for p in points(baseline)] == ["2023-12-26", "2023-12-27", "2023-12-28"]


def test_forecast_dates_skip_new_year(client, registry):
    history = [bar for bar in registry.history("BBB", 200) if bar["date"] <= "2023-06-30"][-25:]
    response = client.post("/forecast", json={"history": history})
    assert response.status_code == 200, response.text
    # Fri 2023-06-30 -> Mon 07-03, Tue 07-04 is Independence Day -> Wed 07-05
    assert [p["date"] for p in points(response.json())] == ["2023-07-03", "2023-07-05", "2023-07-06"]


def test_forecast_smaller_horizon_truncates(client, history, baseline, same_points):
    response = client.post("/forecast", json={"history": history, "horizon": 2})
    assert response.status_code == 200, response.text
    same_points(points(response.json()), points(baseline)[:2])


def test_forecast_matches_library_prediction(baseline, history):
    forecaster, ref = tracking.load_forecaster("models:/svc@champion", device="cpu")
    assert ref.version == baseline["model"]["version"]
    bars = np.array([[b["open"], b["high"], b["low"], b["close"]] for b in history])
    expected = forecaster.predict_history(bars)
    got = points(baseline)
    np.testing.assert_allclose([p["close"] for p in got], expected.median[0], rtol=1e-5)
    np.testing.assert_allclose([p["lower"] for p in got], expected.lower[0], rtol=1e-5)
    np.testing.assert_allclose([p["upper"] for p in got], expected.upper[0], rtol=1e-5)


def test_forecast_uses_only_the_last_lookback_bars(client, history, baseline, registry, same_points):
    response = client.post("/forecast", json={"history": history[-registry.lookback :]})
    assert response.status_code == 200, response.text
    same_points(points(response.json()), points(baseline))


def test_forecast_series_batch_preserves_ids_and_matches_single_requests(client, registry, same_points):
    one, two = registry.history("AAA", 25), registry.history("CCC", 40)[:-5]
    response = client.post(
        "/forecast",
        json={
            "series": [
                {"id": "first", "history": one},
                {"id": "second", "history": two},
                {"id": "bbb", "ticker": "BBB"},
            ]
        },
    )
    assert response.status_code == 200, response.text
    forecasts = response.json()["forecasts"]
    assert [f["id"] for f in forecasts] == ["first", "second", "bbb"]
    singles = [{"history": one}, {"history": two}, {"ticker": "BBB"}]
    for forecast, single in zip(forecasts, singles, strict=True):
        alone = client.post("/forecast", json=single)
        assert alone.status_code == 200, alone.text
        same_points(forecast["points"], points(alone.json()))


def test_forecast_ticker_reads_the_data_file(client, registry, same_points):
    by_ticker = client.post("/forecast", json={"ticker": "CCC"})
    by_history = client.post("/forecast", json={"history": registry.history("CCC", registry.lookback)})
    assert by_ticker.status_code == 200, by_ticker.text
    assert by_ticker.json()["forecasts"][0]["id"] == "CCC"
    same_points(points(by_ticker.json()), points(by_history.json()))


def test_forecast_unknown_ticker_is_422_naming_it(client, assert_unchanged):
    response = client.post("/forecast", json={"ticker": "ZZZQ"})
    assert response.status_code == 422
    [error] = response.json()["detail"]  # FastAPI's 422 shape: [{loc, msg, type}]
    assert error["loc"] == ["body", "ticker"]
    assert "ticker 'ZZZQ'" in error["msg"] and "not in the service's data source" in error["msg"]
    assert_unchanged()


def test_forecast_by_version(client, history, baseline, same_points):
    response = client.post("/forecast", json={"history": history, "version": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == "1"
    assert body["model"]["alias"] is None
    same_points(points(body), points(baseline))


def test_forecast_by_explicit_alias_and_model(client, history, baseline, same_forecast):
    response = client.post("/forecast", json={"history": history, "model": "svc", "alias": "champion"})
    assert response.status_code == 200, response.text
    same_forecast(response.json(), baseline)


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"model": "no_such_model"}, ["no_such_model"]),
        ({"alias": "nonexistent_alias"}, ["svc", "nonexistent_alias"]),
        ({"version": 99}, ["svc", "99"]),
    ],
)
def test_forecast_unknown_model_reference_is_404(client, history, assert_unchanged, extra, names):
    response = client.post("/forecast", json={"history": history, **extra})
    assert response.status_code == 404, response.text
    detail = response.json()["detail"]
    for name in names:
        assert name in detail
    assert "not found" in detail
    assert_unchanged()
