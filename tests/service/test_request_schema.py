"""The documented contract of POST /forecast: the OpenAPI response schema names exactly the fields
sent (the answer is built by hand for speed), and every documented example body works."""

from __future__ import annotations

from typing import Any

import pytest

from service.schemas import ForecastResponse


def component(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return spec["components"]["schemas"][name]


def test_response_fields_are_exactly_the_documented_ones(client, history):
    spec = client.get("/openapi.json").json()
    documented = spec["paths"]["/forecast"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert documented == {"$ref": "#/components/schemas/ForecastResponse"}
    response = client.post("/forecast", json={"series": [{"history": history}, {"ticker": "AAA"}]})
    assert response.status_code == 200, response.text
    body = response.json()
    ForecastResponse.model_validate(body)
    for name, sent in [
        ("ForecastResponse", body),
        ("SeriesForecast", body["forecasts"][1]),
        ("ForecastPoint", body["forecasts"][1]["points"][0]),
    ]:
        schema = component(spec, name)
        assert set(sent) == set(schema["properties"]) == set(schema["required"]), name
    assert set(component(spec, "SeriesForecast")["properties"]["source"]["enum"]) >= {"request", "file"}


@pytest.fixture(scope="module")
def sample_app(serve_app):
    """An app whose tickers come from the bundled sample (the tickers the examples name)."""
    with serve_app(data_source="sample") as http:
        yield http


def test_every_documented_example_body_is_answered(sample_app):
    post = sample_app.get("/openapi.json").json()["paths"]["/forecast"]["post"]
    examples = post["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"history", "ticker", "series"}
    for name, example in examples.items():
        response = sample_app.post("/forecast", json=example["value"])
        assert response.status_code == 200, (name, response.text)
        sources = [f["source"] for f in response.json()["forecasts"]]
        assert sources == {"history": ["request"], "ticker": ["sample"], "series": ["request", "sample"]}[name]


def test_the_documented_series_limit_is_the_one_enforced(client, registry, history):
    from service.main import create_app

    for limit in (256, 3):
        spec = create_app(registry.settings(max_series=limit)).openapi()
        body = spec["paths"]["/forecast"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        (array,) = [v for v in body["properties"]["series"]["anyOf"] if v.get("type") == "array"]
        assert (array["minItems"], array["maxItems"]) == (1, limit)
    # the default app enforces what its own document says
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/forecast"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    (array,) = [v for v in body["properties"]["series"]["anyOf"] if v.get("type") == "array"]
    most = array["maxItems"]
    response = client.post("/forecast", json={"series": [{"history": history[:1]}] * (most + 1)})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "series"], response.text


def test_422_is_documented_in_fastapi_s_shape_as_sent(client):
    spec = client.get("/openapi.json").json()
    forecast_422 = spec["paths"]["/forecast"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert forecast_422 == {"$ref": "#/components/schemas/ValidationErrorDetail"}
    invalid = component(spec, "ValidationErrorDetail")
    assert invalid["required"] == ["detail"]
    item = invalid["properties"]["detail"]["items"]["$ref"].rsplit("/", 1)[1]
    assert set(component(spec, item)["required"]) == {"loc", "msg", "type"}  # FastAPI's ValidationError
    response = client.post("/forecast", json={"horizon": 0, "ticker": "AAA"})
    assert response.status_code == 422
    assert set(response.json()) == set(invalid["properties"])
    [error] = response.json()["detail"]
    assert set(error) == set(component(spec, item)["properties"])
    assert error == {
        "loc": ["body", "horizon"],
        "msg": "horizon: Input should be greater than or equal to 1",
        "type": "greater_than_equal",
    }


def forecast_body(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["paths"]["/forecast"]["post"]["requestBody"]["content"]["application/json"]


def test_the_document_states_the_one_of_rule_and_the_served_model_s_window(client, registry):
    media = forecast_body(client.get("/openapi.json").json())
    body = media["schema"]
    one_of = [(branch["required"], sorted(branch["properties"])) for branch in body["oneOf"]]
    assert one_of == [([name], ["history", "series", "ticker"]) for name in ("history", "ticker", "series")]
    assert body["not"]["required"] == ["alias", "version"]
    assert [b["required"] for b in body["$defs"]["SeriesIn"]["oneOf"]] == [["history"], ["ticker"]]
    for owner in (body, body["$defs"]["SeriesIn"]):
        (bars,) = [v for v in owner["properties"]["history"]["anyOf"] if v.get("type") == "array"]
        assert bars["minItems"] == registry.lookback
    assert {c["minItems"] for c in body["$defs"]["ColumnarHistory"]["properties"].values()} == {registry.lookback}
    (horizon,) = [v for v in body["properties"]["horizon"]["anyOf"] if v.get("type") == "integer"]
    assert horizon["maximum"] == registry.horizon
    # the examples are built from the served model's lookback, so the history example is answered
    assert len(media["examples"]["history"]["value"]["history"]) == registry.lookback
    response = client.post("/forecast", json=media["examples"]["history"]["value"])
    assert response.status_code == 200, response.text


def test_the_key_is_declared_only_where_asked_and_405_everywhere(client, serve_app):
    def secured(spec: dict[str, Any]) -> set[str]:
        return {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m, op in ops.items() if op.get("security")}

    open_spec = client.get("/openapi.json").json()
    assert secured(open_spec) == {"POST /admin/reload"}  # no key configured: only /admin names one
    with serve_app(api_key="k", protect_status_routes=True) as keyed:
        assert secured(keyed.get("/openapi.json").json()) == {"POST /admin/reload", "POST /forecast", "GET /models"}
        assert keyed.get("/models").status_code == 401
    for path, operations in open_spec["paths"].items():
        for operation in operations.values():
            assert "Allow" in operation["responses"]["405"]["headers"], path
    wrong = client.get("/forecast")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
