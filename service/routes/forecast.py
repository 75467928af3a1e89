"""POST /forecast: histories or tickers in, dated quantile forecasts out.

The body is parsed from the raw bytes by `service.fastpath` (orjson, every bar checked at once with
numpy, pydantic only for bodies it cannot vouch for), so the route declares its body for OpenAPI
by hand: `ForecastRequest`'s schema, inline, with its examples.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from forecaster.data.calendar import next_sessions
from forecaster.errors import DataError
from forecaster.model.predictor import Forecaster, Window
from service.deps import ApiKeyDep, HistoryDep, MetricsDep, SettingsDep, StoreDep
from service.errors import InvalidField
from service.fastpath import ParsedRequest, parse_body
from service.schemas import REQUEST_EXAMPLES, ForecastRequest, ForecastResponse, HistorySource, request_examples

router = APIRouter(prefix="/forecast", tags=["forecast"])

# The body as OpenAPI documents it: ForecastRequest's JSON schema with its nested models kept
# beside it (the refs point inside this operation, since FastAPI lists in `components` only the
# models of a declared body parameter, and this route reads its body itself).
_BODY_POINTER = "#/paths/~1forecast/post/requestBody/content/application~1json/schema/$defs/{model}"
REQUEST_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": ForecastRequest.model_json_schema(ref_template=_BODY_POINTER),
                "examples": REQUEST_EXAMPLES,
            }
        },
    }
}


def document_series_limit(spec: dict[str, Any], max_series: int) -> None:
    """Give the documented body's `series` this app's limit as maxItems (FORECASTER_MAX_SERIES, the
    limit the route enforces). The body document is REQUEST_BODY_DOC, shared by every app: copied first."""
    operation = spec["paths"]["/forecast"]["post"]
    operation["requestBody"] = copy.deepcopy(operation["requestBody"])
    series = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["series"]
    for variant in series.get("anyOf", [series]):
        if variant.get("type") == "array":
            variant["maxItems"] = max_series


def document_model(spec: dict[str, Any], lookback: int, horizon: int) -> None:
    """State the served model's window in the documented body (after document_series_limit, which
    copied it): every history (list or columns, alone or in `series`) has at least `lookback`
    bars and `horizon` is at most the model's, the rules the route enforces for the default
    model; the examples' histories are `lookback` bars long, so each example is answered."""
    media = spec["paths"]["/forecast"]["post"]["requestBody"]["content"]["application/json"]
    schema = media["schema"]
    note = f" The served model's lookback is {lookback} bars and its horizon {horizon} steps."
    for owner in (schema, schema["$defs"]["SeriesIn"]):
        for variant in owner["properties"]["history"]["anyOf"]:
            if variant.get("type") == "array":
                variant["minItems"] = lookback
        owner["properties"]["history"]["description"] += note
    for column in schema["$defs"]["ColumnarHistory"]["properties"].values():
        column["minItems"] = lookback
    for variant in schema["properties"]["horizon"]["anyOf"]:
        if variant.get("type") == "integer":
            variant["maximum"] = horizon
    media["examples"] = request_examples(lookback, min(3, horizon))


@lru_cache(maxsize=4096)
def forecast_dates(exchange: str, after: dt.date, count: int) -> tuple[str, ...]:
    return tuple(d.isoformat() for d in next_sessions(exchange, after, count))


@router.post(
    "",
    response_model=ForecastResponse,
    dependencies=[ApiKeyDep],
    openapi_extra=REQUEST_BODY_DOC,
    responses={
        404: {"description": "Unknown model, alias or version"},
        409: {
            "description": "The version cannot serve: its artifact cannot be loaded, or it answered non-finite "
            "numbers for this request; the detail names version and cause"
        },
        413: {"description": "Body too large"},
        422: {"description": "Invalid request; `detail` lists each problem as {loc, msg, type}, msg naming the field"},
        503: {
            "description": "No model loaded yet, or the service's ticker data is unavailable or too old; "
            "retry after Retry-After seconds"
        },
    },
)
async def forecast(
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    history: HistoryDep,
    metrics: MetricsDep,
) -> Response:
    """Forecast one series (`history` or `ticker`) or many (`series`) with a registered model.

    A history is a list of bars or the same bars as columns (`{"date": [...], "open": [...], ...}`).
    Every point carries the median (`close`), the outer band (`lower`, `upper`) and every quantile
    of `levels`; every series says where its history came from (`source`) and its last date (`as_of`).
    """
    body = parse_body(await request.body(), request.headers.get("content-type"))
    if len(body.series) > settings.max_series:  # documented as the body's maxItems (document_series_limit)
        raise InvalidField("series", f"series: {len(body.series)} series, the limit is {settings.max_series}")
    metrics.series.observe(len(body.series))
    loaded = await store.get(body.model, body.alias, body.version)  # none given: the default model
    forecaster = loaded.forecaster
    horizon = body.horizon or forecaster.horizon
    if horizon > forecaster.horizon:
        raise InvalidField("horizon", f"horizon: {horizon} is larger than the model's horizon {forecaster.horizon}")

    windows, sources, stale = await series_windows(body, forecaster, history)
    names = [item.field.rstrip(".") for item in body.series]  # how a series that got NaN is named (409)
    quantiles = await loaded.forecast(np.stack([w.values for w in windows]), names)  # -> (N, H, Q) prices
    levels, median = forecaster.quantiles, forecaster.median_index
    rows_all = quantiles[:, :horizon].tolist()  # one conversion to Python floats per request, not per number
    forecasts = []
    for item, window, source, old, rows in zip(body.series, windows, sources, stale, rows_all, strict=True):
        assert window.last_date is not None  # every source gives dates
        dates = forecast_dates(settings.exchange, window.last_date, horizon)
        forecasts.append(
            {
                "id": item.id,
                "source": source,
                "as_of": window.last_date.isoformat(),
                "stale": old,
                "points": [
                    {
                        "step": h + 1,
                        "date": dates[h],
                        "close": row[median],
                        "lower": row[0],
                        "upper": row[-1],
                        "quantiles": row,
                    }
                    for h, row in enumerate(rows)
                ],
            }
        )
    ref = loaded.ref
    content: dict[str, Any] = {
        "model": {"name": ref.name, "version": ref.version, "alias": ref.alias, "run_id": ref.run_id},
        "device": str(forecaster.device),
        "levels": list(levels),
        "forecasts": forecasts,
    }
    request.app.state.ledger.record(content, body.series, windows)  # queued: written off the request path
    # Built by hand and encoded by orjson for speed (no second validation of the response); tests
    # check it against ForecastResponse.
    return Response(orjson.dumps(content), media_type="application/json")


async def series_windows(
    body: ParsedRequest, forecaster: Forecaster, history: HistoryDep
) -> tuple[list[Window], list[HistorySource], list[bool]]:
    """The window of every series in request order, the sent ones from their arrays and the
    tickers' from the service's source, all tickers in one call (one thread hop per request)."""
    tickers = [item for item in body.series if item.prices is None]
    found = iter(await history.histories([(t.ticker or "", f"{t.field}ticker") for t in tickers], forecaster.lookback))
    windows: list[Window] = []
    sources: list[HistorySource] = []
    stale: list[bool] = []
    for item in body.series:
        if item.prices is not None:
            field = f"{item.field}history"
            with named(field):
                windows.append(Window(forecaster.window(item.prices, field=field).values, item.last_date))
            sources.append("request")
            stale.append(False)
        else:
            field = f"{item.field}ticker"
            bars = next(found)
            with named(field):
                if isinstance(bars, Exception):
                    raise bars
                windows.append(forecaster.window(bars.bars, field=f"{field} '{item.ticker}' ({bars.source})"))
            sources.append(bars.source)
            stale.append(bars.stale)
    return windows, sources, stale


@contextmanager
def named(field: str) -> Iterator[None]:
    """A DataError raised inside (a short history, an unknown ticker) is the client's, at `field`."""
    try:
        yield
    except DataError as exc:
        raise InvalidField(field, str(exc)) from exc
