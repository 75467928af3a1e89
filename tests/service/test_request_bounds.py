"""Inputs at the edges of what the model and the calendar can take: a 422 naming the field, never a
500; and every 200 holds finite, ordered, dated numbers, whatever valid body produced it."""

from __future__ import annotations

import datetime as dt
import http.client
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forecaster.data.calendar import CALENDAR_START
from forecaster.model.predictor import MAX_PRICE, MIN_PRICE


def edited(history: list[dict[str, Any]], index: int, **changes: Any) -> list[dict[str, Any]]:
    bars = [dict(bar) for bar in history]
    bars[index].update(changes)
    return bars


def scaled(history: list[dict[str, Any]], index: int, factor: float) -> list[dict[str, Any]]:
    """The bar at `index` with every price multiplied (still a consistent bar)."""
    bar = history[index]
    return edited(history, index, **{k: bar[k] * factor for k in ("open", "high", "low", "close")})


def redated(history: list[dict[str, Any]], last: dt.date) -> list[dict[str, Any]]:
    """The same bars on consecutive weekdays ending on `last`."""
    days: list[dt.date] = []
    day = last
    while len(days) < len(history):
        if day.weekday() < 5:
            days.append(day)
        day -= dt.timedelta(days=1)
    return [{**bar, "date": d.isoformat()} for bar, d in zip(history, reversed(days), strict=True)]


EDGES = {
    "date_1985": (
        lambda h: {"history": redated(h, dt.date(1985, 6, 28))},
        "history[0].date: 1985-05-20 is before 1990-01-02",
    ),
    "date_9999": (
        lambda h: {"history": edited(h, 29, date="9999-12-31")},
        "history[29].date: 9999-12-31 is in the future",
    ),
    "price_1e39": (
        lambda h: {"history": scaled(h, 17, 1e38)},
        "history[17].open: Input should be less than or equal to",
    ),
    "price_1e-50": (
        lambda h: {"series": [{"history": h}, {"history": scaled(h, 17, 1e-51)}]},
        "series[1].history[17].open: Input should be greater than or equal to 0.000001",
    ),
}


@pytest.fixture
def connection(client: Any) -> Any:
    """One raw keep-alive HTTP/1.1 connection to the default app."""
    conn = http.client.HTTPConnection(client.base_url.host, client.base_url.port, timeout=30)
    yield conn
    conn.close()


def post(conn: http.client.HTTPConnection, body: Any) -> tuple[int, dict[str, Any]]:
    conn.request("POST", "/forecast", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.parametrize("case", list(EDGES))
def test_edge_input_is_422_naming_the_field_and_the_connection_still_serves(connection, history, case):
    build, expected = EDGES[case]
    status, body = post(connection, build(history))
    assert status == 422, body
    assert body["detail"][0]["msg"].startswith(expected), body
    socket = connection.sock
    status, body = post(connection, {"history": history})
    assert status == 200, body
    assert connection.sock is socket  # same TCP connection: the 422 did not close it


def test_calendar_start_is_accepted_and_answered_with_sessions(client, history):
    bars = redated(history, dt.date(1990, 3, 30))
    assert dt.date.fromisoformat(bars[0]["date"]) >= CALENDAR_START
    response = client.post("/forecast", json={"history": bars})
    assert response.status_code == 200, response.text
    assert [p["date"] for p in response.json()["forecasts"][0]["points"]] == ["1990-04-02", "1990-04-03", "1990-04-04"]


def test_prices_at_the_accepted_bounds_give_finite_forecasts(client, history):
    for factor in (MIN_PRICE / 40.0, MAX_PRICE / 60.0):  # the fixture's prices are about 40 to 60
        bars = [
            {**b, **{k: min(max(b[k] * factor, MIN_PRICE), MAX_PRICE) for k in ("open", "high", "low", "close")}}
            for b in history
        ]
        response = client.post("/forecast", json={"history": bars})
        assert response.status_code == 200, response.text
        assert_invariants(response.json(), [bars])


def assert_invariants(body: dict[str, Any], histories: list[list[dict[str, Any]]]) -> None:
    """What every 200 promises: finite numbers, lower <= close <= upper, quantiles in level order
    (one per level), dates strictly after the last bar and increasing, as_of = the last bar."""
    levels = body["levels"]
    assert levels == sorted(levels) and 0.5 in levels
    for forecast, bars in zip(body["forecasts"], histories, strict=True):
        assert forecast["as_of"] == bars[-1]["date"] and forecast["source"] == "request"
        dates = [p["date"] for p in forecast["points"]]
        assert dates == sorted(set(dates)) and dates[0] > bars[-1]["date"]
        for point in forecast["points"]:
            q = point["quantiles"]
            assert len(q) == len(levels) and np.isfinite(q).all()
            assert q == sorted(q)
            assert point["lower"] == q[0] <= point["close"] == q[levels.index(0.5)] <= point["upper"] == q[-1]


@st.composite
def histories(draw: st.DrawFn, lookback: int = 20) -> list[dict[str, Any]]:
    """A valid history: a random walk of any level and volatility the schema accepts, on weekdays."""
    n = draw(st.integers(lookback, lookback + 15))
    log_level = draw(st.floats(np.log(MIN_PRICE), np.log(MAX_PRICE)))
    volatility = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.1, 0.5]))
    seed = draw(st.integers(0, 2**32 - 1))
    last = draw(st.dates(dt.date(1990, 6, 1), dt.date.today()))
    rng = np.random.default_rng(seed)
    log_close = np.clip(log_level + np.cumsum(rng.normal(0.0, volatility, n)), np.log(MIN_PRICE), np.log(MAX_PRICE))
    close = np.exp(log_close)
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.exp(np.abs(rng.normal(0.0, volatility / 2 + 1e-9, n)))
    high = np.minimum(np.maximum(open_, close) * spread, MAX_PRICE)
    low = np.maximum(np.minimum(open_, close) / spread, MIN_PRICE)
    bars = [
        {"date": "", "open": float(o), "high": float(h), "low": float(lo), "close": float(c)}
        for o, h, lo, c in zip(open_, high, low, close, strict=True)
    ]
    return redated(bars, last)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(many=st.lists(histories(), min_size=1, max_size=3), horizon=st.integers(1, 3))
def test_every_valid_body_gets_finite_ordered_dated_forecasts(client, registry, many, horizon):
    assert registry.lookback == 20  # the strategy's lookback
    response = client.post("/forecast", json={"series": [{"history": h} for h in many], "horizon": horizon})
    assert response.status_code == 200, response.text
    body = response.json()
    assert all(len(f["points"]) == horizon for f in body["forecasts"])
    assert_invariants(body, many)
