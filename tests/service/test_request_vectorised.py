"""The vectorised request path: columnar and list bodies are the same request, the fast path
accepts exactly what the schema accepts, and a columnar error names its bar like the list form."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pytest
from fastapi.exceptions import RequestValidationError

from forecaster.errors import DataError
from service.fastpath import _fast, _NotFast, _slow, parse_body
from service.schemas import BAR_FIELDS


def columns(bars: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {name: [bar[name] for bar in bars] for name in BAR_FIELDS}


def quantiles(forecast: dict[str, Any]) -> np.ndarray:
    return np.array([p["quantiles"] for p in forecast["points"]])


def same_parse(raw: bytes) -> None:
    """The fast path, when it accepts, returns exactly what pydantic's path returns."""
    fast, slow = parse_body(raw), _slow(raw)
    assert (fast.model, fast.alias, fast.version, fast.horizon, fast.many) == (
        slow.model,
        slow.alias,
        slow.version,
        slow.horizon,
        slow.many,
    )
    for a, b in zip(fast.series, slow.series, strict=True):
        assert (a.id, a.field, a.ticker, a.last_date) == (b.id, b.field, b.ticker, b.last_date)
        if a.prices is None:
            assert b.prices is None
        else:
            np.testing.assert_array_equal(a.prices, b.prices)


def test_columnar_and_list_bodies_give_identical_forecasts(client, history):
    by_list = client.post("/forecast", json={"history": history})
    by_columns = client.post("/forecast", json={"history": columns(history)})
    mixed = client.post("/forecast", json={"series": [{"history": columns(history)}, {"history": history}]})
    assert by_list.status_code == by_columns.status_code == mixed.status_code == 200, mixed.text
    assert by_columns.json()["forecasts"] == by_list.json()["forecasts"]
    first, second = mixed.json()["forecasts"]
    # the same window twice in one batch: the same forecast, up to the last float32 bits (a CPU's
    # matrix kernels may round rows of one batch differently), and so for a batch of one
    assert [(p["step"], p["date"]) for p in first["points"]] == [(p["step"], p["date"]) for p in second["points"]]
    np.testing.assert_allclose(quantiles(first), quantiles(second), rtol=1e-5)
    np.testing.assert_allclose(quantiles(first), quantiles(by_list.json()["forecasts"][0]), rtol=1e-5)


def test_fast_path_accepts_valid_bodies_and_agrees_with_pydantic(history):
    shuffled = [{k: bar[k] for k in ("close", "date", "low", "open", "high")} for bar in history]
    integers = [{**bar, **{k: round(bar[k]) for k in ("open", "high", "low", "close")}} for bar in history]
    integers = [{**b, "high": max(b.values(), key=lambda v: v if isinstance(v, int) else 0)} for b in integers]
    integers = [{**b, "low": min(b["open"], b["close"], b["low"])} for b in integers]
    bodies = [
        {"history": history, "horizon": 2, "model": "m", "alias": "a"},
        {"history": columns(history), "version": 3},
        {"history": shuffled},
        {"history": integers},
        {"ticker": "AAA"},
        {"series": [{"ticker": "BBB"}, {"id": "x", "history": history}, {"history": columns(history)}]},
    ]
    for body in bodies:
        raw = json.dumps(body).encode()
        _fast(json.loads(raw))  # accepted without pydantic
        same_parse(raw)


@pytest.mark.parametrize(
    "body",
    [
        {"history": "BARS", "horizon": 2.0},  # a whole float is not the fast path's int
        {"history": "BARS_STRINGS"},  # numeric strings: pydantic's lax mode reads them
        {"history": "BARS_DATETIMES"},  # midnight datetimes: pydantic reads them as dates
    ],
)
def test_bodies_the_fast_path_declines_are_still_pydantic_s_to_accept(client, history, body):
    bars = {
        "BARS": history,
        "BARS_STRINGS": [{**b, "close": str(b["close"])} for b in history],
        "BARS_DATETIMES": [{**b, "date": b["date"] + "T00:00:00"} for b in history],
    }[body["history"]]
    sent = {**body, "history": bars}
    with pytest.raises(_NotFast):
        _fast(sent)
    response = client.post("/forecast", json=sent)
    assert response.status_code == 200, response.text
    assert response.json()["forecasts"][0]["as_of"] == history[-1]["date"]


CASES = {
    "bad_bar": (lambda c: {**c, "high": c["high"][:17] + [-1.0] + c["high"][18:]}, "history[17].high: Input should be"),
    "unequal": (lambda c: {**c, "low": c["low"][:-1]}, "history: columns must have the same length"),
    "unknown": (lambda c: {**c, "volume": [1] * len(c["date"])}, "history: unknown column(s) ['volume']"),
    "missing": (lambda c: {k: v for k, v in c.items() if k != "close"}, "history: missing column(s) ['close']"),
    "not_lists": (lambda c: {**c, "open": 3.0}, "history: every column must be a list"),
    "empty": (lambda c: {k: [] for k in c}, "history: List should have at least 1 item"),
    "order": (lambda c: {k: v[:10] + [v[5]] + v[11:] for k, v in c.items()}, "history: dates must be strictly"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_columnar_history_errors_name_the_bar_or_the_columns(client, history, case):
    build, expected = CASES[case]
    response = client.post("/forecast", json={"series": [{"history": history}, {"history": build(columns(history))}]})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"].startswith(f"series[1].{expected}"), response.json()


def test_short_history_before_an_unknown_ticker_is_named_first(client, history):
    """Tickers are read in one call, yet the first bad series in request order is the one named."""
    body = {"series": [{"history": history}, {"history": history[:3]}, {"ticker": "NOPE"}]}
    response = client.post("/forecast", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("series[1].history: 3 bars")
    response = client.post("/forecast", json={"series": [{"ticker": "NOPE"}, {"history": history[:3]}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith("series[0].ticker: ticker 'NOPE'")


def test_bad_bodies_raise_fastapi_s_validation_errors():
    with pytest.raises(RequestValidationError) as empty:
        parse_body(b"")
    assert empty.value.errors()[0]["loc"] == ("body",)
    with pytest.raises(RequestValidationError) as broken:
        parse_body(b'{"history": [1,')
    assert broken.value.errors()[0]["type"] == "json_invalid"
    with pytest.raises(RequestValidationError) as binary:  # FastAPI answered an undocumented 400 here
        parse_body(b"\xff\x06%\xb3")
    assert binary.value.errors()[0]["ctx"]["error"].startswith("not UTF-8 text")


def test_future_and_nat_dates_are_left_to_pydantic(history):
    tomorrow_plus = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)).isoformat()
    for date in (tomorrow_plus, "NaT", "1989-12-29"):
        with pytest.raises(_NotFast):
            _fast({"history": [*history[:-1], {**history[-1], "date": date}]})


def test_openapi_documents_the_columnar_form_with_an_example(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/forecast"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    assert set(schema["properties"]) == {"model", "alias", "version", "horizon", "history", "ticker", "series"}
    refs = json.dumps(schema)
    assert "ColumnarHistory" in refs
    columnar = schema["$defs"]["ColumnarHistory"]
    assert set(columnar["properties"]) == set(BAR_FIELDS) and columnar["additionalProperties"] is False
    example = columnar["examples"][0]
    assert set(example) == set(BAR_FIELDS)
    # every $ref of the body resolves inside the document
    for ref in {part.split('"')[0] for part in refs.split('"$ref": "')[1:]}:
        node: Any = spec
        for step in ref.removeprefix("#/").split("/"):
            node = node[step.replace("~1", "/").replace("~0", "~")]
        assert isinstance(node, dict), ref


def test_batch_histories_answer_in_order_with_each_error(registry):
    import asyncio

    from service.history import HistoryProvider

    provider = HistoryProvider(registry.settings(history_age_limit_days=None))
    answers = asyncio.run(provider.histories([("AAA", "a"), ("NOPE", "b"), ("CCC", "c")], 30))
    assert [type(a).__name__ for a in answers] == ["TickerHistory", "DataError", "TickerHistory"]
    assert isinstance(answers[1], DataError) and str(answers[1]).startswith("b: ticker 'NOPE'")
    assert answers[2].bars["ticker"].iloc[0] == "CCC"


def test_iso_days_reads_only_canonical_calendar_dates():
    from service.fastpath import _iso_days

    good = ["2024-02-29", "1990-01-02", "2023-12-31", "2000-02-29"]
    assert _iso_days(good).tolist() == [dt.date.fromisoformat(d) for d in good]
    for bad in ("2023-02-29", "1900-02-29", "2023-13-01", "2023-04-31", "2023-00-10", "2023/01/01", "2023-1-011"):
        with pytest.raises(_NotFast):
            _iso_days([*good, bad])


@pytest.mark.parametrize("headers", [{"content-type": "text/plain"}, {}])
def test_a_body_not_declared_json_is_refused_as_fastapi_does(client, history, headers):
    response = client.post("/forecast", content=json.dumps({"history": history}).encode(), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"].startswith("body: Input should be a valid dictionary"), response.json()
