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
