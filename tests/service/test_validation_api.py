"""Bad requests get a specific status and a `detail` naming the field, and change nothing."""

from __future__ import annotations

import copy
import json

import pytest
from test_ops_api import metric

from service.errors import error_field, field_path


def edited(history, index, **changes):
    bars = copy.deepcopy(history)
    bars[index].update(changes)
    return bars


def raw_json(body) -> bytes:
    return json.dumps(body).encode()  # allow_nan: NaN / Infinity go out as JS literals


def messages(response) -> list[str]:
    """The human messages of a 422 (FastAPI's shape: `detail: [{loc, msg, type}]`)."""
    return [error["msg"] for error in response.json()["detail"]]


def fields(response) -> list[str]:
    return [error_field(error) for error in response.json()["detail"]]


CASES = {
    "missing_series_fields": (lambda h: {"horizon": 2}, "body: give exactly one of 'history', 'ticker' or 'series'"),
    "two_forms": (lambda h: {"history": h, "ticker": "AAA"}, "give exactly one of 'history', 'ticker' or 'series'"),
    "extra_field": (lambda h: {"history": h, "colour": "red"}, "colour: unknown field"),
    "extra_bar_field": (lambda h: {"history": edited(h, 2, volume=10)}, "history[2].volume: unknown field"),
    "missing_bar_field": (
        lambda h: {"history": [{k: v for k, v in b.items() if k != "low"} for b in h]},
        "history[0].low: Field required",
    ),
    "nan_literal": (
        lambda h: {"history": edited(h, 3, close=float("nan"))},
        "history[3].close: Input should be a finite number",
    ),
    "nan_string": (lambda h: {"history": edited(h, 4, open="nan")}, "history[4].open: Input should be a finite number"),
    "inf": (lambda h: {"history": edited(h, 5, high=float("inf"))}, "history[5].high: Input should be a finite number"),
    "negative_price": (
        lambda h: {"history": edited(h, 6, low=-1.0)},
        "history[6].low: Input should be greater than or equal to 0.000001",
    ),
    "zero_price": (
        lambda h: {"history": edited(h, 7, open=0)},
        "history[7].open: Input should be greater than or equal to 0.000001",
    ),
    "high_below_low": (
        lambda h: {"history": edited(h, 8, high=1.0, low=2.0, open=1.5, close=1.5)},
        "history[8]: high (1.0) is below low (2.0)",
    ),
    "not_a_number": (
        lambda h: {"history": edited(h, 1, close="abc")},
        "history[1].close: Input should be a valid number",
    ),
    "bad_date": (lambda h: {"history": edited(h, 1, date="2023-13-45")}, "history[1].date:"),
    "dates_not_increasing": (
        lambda h: {"history": h[:10] + [h[5]] + h[11:]},
        "history: dates must be strictly increasing",
    ),
    "duplicated_date": (lambda h: {"history": edited(h, 10, date=h[9]["date"])}, "(duplicated)"),
    "short_history": (lambda h: {"history": h[:5]}, "history: 5 bars, the model needs at least lookback = 20"),
    "empty_history": (lambda h: {"history": []}, "history: List should have at least 1 item"),
    "horizon_zero": (lambda h: {"history": h, "horizon": 0}, "horizon: Input should be greater than or equal to 1"),
    "horizon_too_long": (lambda h: {"history": h, "horizon": 4}, "horizon: 4 is larger than the model's horizon 3"),
    "version_zero": (lambda h: {"history": h, "version": 0}, "version: Input should be greater than or equal to 1"),
    "alias_and_version": (
        lambda h: {"history": h, "alias": "champion", "version": 1},
        "give either 'alias' or 'version', not both",
    ),
    "series_item_both_forms": (
        lambda h: {"series": [{"id": "a", "history": h, "ticker": "AAA"}]},
        "series[0]: give exactly one of 'history' or 'ticker'",
    ),
    "series_item_short": (
        lambda h: {"series": [{"id": "a", "history": h}, {"id": "b", "history": h[:3]}]},
        "series[1].history: 3 bars, the model needs at least lookback = 20",
    ),
    "series_item_nan": (
        lambda h: {"series": [{"history": edited(h, 0, close=float("nan"))}]},
        "series[0].history[0].close: Input should be a finite number",
    ),
    "too_many_series": (lambda h: {"series": [{"history": h[:1]}] * 257}, "series: 257 series, the limit is 256"),
    "empty_series": (lambda h: {"series": []}, "series: List should have at least 1 item"),
    "not_an_object": (lambda h: [1, 2], "Input should be a valid dictionary"),
    # a bool is no number (pydantic's lax mode, and numpy among floats, read it as 1)
    "bool_price": (lambda h: {"history": edited(h, 5, close=True)}, "history[5].close: Input should be a valid number"),
    "bool_price_series": (
        lambda h: {"series": [{"history": h}, {"history": edited(h, 5, open=True)}]},
        "series[1].history[5].open: Input should be a valid number",
    ),
    "bool_price_columns": (
        lambda h: {"history": {k: [b[k] for b in edited(h, 5, high=True)] for k in h[0]}},
        "history[5].high: Input should be a valid number",
    ),
    "bool_horizon": (lambda h: {"history": h, "horizon": True}, "horizon: Input should be a valid integer"),
    "bool_version": (lambda h: {"history": h, "version": True}, "version: Input should be a valid integer"),
    "empty_model": (lambda h: {"history": h, "model": ""}, "model: String should have at least 1 character"),
    "empty_alias": (lambda h: {"history": h, "alias": ""}, "alias: String should have at least 1 character"),
    "version_padded": (lambda h: {"history": h, "version": " 1"}, "version: ' 1' is not a version number"),
    "version_fraction": (lambda h: {"history": h, "version": 1.5}, "version: Input should be a valid integer"),
    "version_text_float": (lambda h: {"history": h, "version": "1.0"}, "version: '1.0' is not a version number"),
    "version_leading_zero": (lambda h: {"ticker": "AAA", "version": "01"}, "version: '01' is not a version number"),
    "duplicate_id": (
        lambda h: {"series": [{"id": "a", "history": h}, {"id": "b", "ticker": "AAA"}, {"id": "a", "ticker": "BBB"}]},
        "series[2].id: 'a' is already the id of series[0]",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forecast_rejects_bad_input_with_422_naming_the_field(client, history, assert_unchanged, case):
    build, expected = CASES[case]
    response = client.post("/forecast", content=raw_json(build(history)), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert expected in messages(response)[0], response.json()
    # every 422 is FastAPI's list of {loc, msg, type}, each message naming its field (loc) first
    errors = response.json()["detail"]
    assert errors and all(set(e) == {"loc", "msg", "type"} for e in errors), errors
    assert all(e["loc"][0] == "body" for e in errors), errors
    assert all(e["msg"].startswith(f"{field_path(e['loc'])}:") or e["loc"] == ["body"] for e in errors), errors
    assert_unchanged()


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("short_history", "history"),
        ("series_item_short", "series[1].history"),
        ("horizon_too_long", "horizon"),
        ("too_many_series", "series"),
        ("duplicate_id", "series[2].id"),
        ("bool_price_columns", "history[5].high"),
    ],
)
def test_422s_found_after_parsing_name_their_field_in_errors(client, history, case, field):
    build, _ = CASES[case]
    response = client.post("/forecast", content=raw_json(build(history)), headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert fields(response) == [field], response.json()


def test_unknown_ticker_is_422_naming_the_ticker_field(client, history):
    response = client.post("/forecast", json={"series": [{"history": history}, {"ticker": "NOPE"}]})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "series", 1, "ticker"], "value_error")
    assert error["msg"].startswith("series[1].ticker: ticker 'NOPE' is not in")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"history":' + b"[" * 2000 + b"]" * 2000 + b"}", "nested too deeply"),  # 8 kB: RecursionError
        (b'{"history":[' + b"[" * 1020 + b"]" * 1020 + b"]}", "nested too deeply"),  # below orjson's limit
        (b'{"ticker":"AAA","horizon":' + b"9" * 5000 + b"}", "longer than 4300 digits"),  # int() refuses it
        (b'{"history":[{"date":"2023-12-22","open":1,"high":2,"low":1,"close":' + b"9" * 5000 + b"}]}", "digits"),
    ],
)
def test_bodies_the_json_decoders_cannot_read_are_422_naming_the_body(client, assert_unchanged, body, reason):
    response = client.post("/forecast", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["msg"].startswith("body: not valid JSON"), error
    assert reason in error["msg"]
    assert error["type"] == "json_invalid" and error["loc"][0] == "body" and fields(response) == ["body"]
    assert_unchanged()


def test_forecast_rejects_unparseable_json(client, assert_unchanged):
    response = client.post("/forecast", content=b"{bad", headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert messages(response)[0].startswith("body: not valid JSON")
    assert fields(response) == ["body"]  # the body; FastAPI's loc also has the parser's position
    assert response.json()["detail"][0]["loc"] == ["body", 1]
    assert_unchanged()


def test_forecast_validation_errors_list_each_field(client, history):
    bad = edited(edited(history, 1, close=-1.0), 2, open=float("nan"))
    response = client.post(
        "/forecast", content=raw_json({"history": bad, "horizon": 0}), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert {"history[1].close", "history[2].open", "horizon"} <= set(fields(response))


def test_forecast_rejects_body_over_limit_with_413(client, history, assert_unchanged):
    body = raw_json({"history": history * 40})  # about 4 x 30 x 100 bytes x 10: over the 100 kB limit
    assert len(body) > 100_000
    refused = {"route": "unmatched", "method": "POST", "status": "413"}  # refused before any route is matched
    before = metric(client, "forecaster_requests_total", **refused)
    response = client.post("/forecast", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == "request body is larger than the limit of 100000 bytes"
    assert metric(client, "forecaster_requests_total", **refused) == before + 1
    assert_unchanged()


def test_forecast_rejects_streamed_body_over_limit_with_413(client, history, assert_unchanged):
    chunk = raw_json({"history": history})

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(60):
            yield chunk

    refused = {"route": "/forecast", "method": "POST", "status": "413"}  # refused while the route reads
    before = metric(client, "forecaster_requests_total", **refused)
    response = client.post("/forecast", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "larger than the limit of 100000 bytes" in response.json()["detail"]
    assert metric(client, "forecaster_requests_total", **refused) == before + 1
    assert_unchanged()


def with_key_twice(body: bytes, key: bytes, value: bytes) -> bytes:
    """`body` with `"key": value` added before its first `"key":` (JSON keeps the last; we refuse it)."""
    at = body.index(b'"' + key + b'":')
    return body[:at] + b'"' + key + b'": ' + value + b", " + body[at:]


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (lambda raw: with_key_twice(raw, b"horizon", b"3"), "horizon"),
        (lambda raw: with_key_twice(raw, b"open", b"1.0"), "history[0].open"),  # the first bar's open
        (lambda raw: raw.replace(b'"horizon": 2', b'"horizon": 2, "horizon": 2'), "horizon"),  # even the same value
        (lambda raw: raw.replace(b'"horizon": 2', b'"horizon": 2, "hori\\u007aon": 2'), "horizon"),  # escaped
    ],
)
def test_a_key_given_twice_in_one_object_is_422_naming_it(client, history, assert_unchanged, where, field):
    raw = where(json.dumps({"horizon": 2, "history": history}).encode())
    response = client.post("/forecast", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error_field(error) == field, error
    assert error["msg"] == f"{field}: given more than once in one object (each key at most once)"
    assert_unchanged()


def test_a_key_given_twice_in_a_columnar_history_or_a_series_is_named(client, history):
    columns = {k: [b[k] for b in history] for k in history[0]}
    raw = json.dumps({"series": [{"ticker": "AAA"}, {"id": "x", "history": columns}]}).encode()
    for key, field in ((b"close", "series[1].history.close"), (b"id", "series[1].id")):
        body = with_key_twice(raw, key, b"[]" if key == b"close" else b'"y"')
        response = client.post("/forecast", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert [error_field(e) for e in response.json()["detail"]] == [field]


@pytest.mark.parametrize("version", [1, "1", 1.0])  # 1.0 is an integer to JSON Schema, as the document says
def test_a_version_is_an_integer_or_its_digits(client, history, baseline, same_forecast, version):
    response = client.post(
        "/forecast",
        content=raw_json({"history": history, "version": version}),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"]["version"] == "1"
