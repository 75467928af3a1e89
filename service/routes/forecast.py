"""POST /forecast: histories or tickers in, dated quantile forecasts out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Body, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from forecaster.calendar import next_sessions
from forecaster.predict import Forecaster, Window
from service.deps import ApiKeyDep, HistoryDep, MetricsDep, SettingsDep, StoreDep
from service.schemas import REQUEST_EXAMPLES, ForecastRequest, ForecastResponse, HistorySource, SeriesIn

router = APIRouter(prefix="/forecast", tags=["forecast"])


@lru_cache(maxsize=4096)
def forecast_dates(exchange: str, after: dt.date, count: int) -> tuple[str, ...]:
    return tuple(d.isoformat() for d in next_sessions(exchange, after, count))


@dataclass(frozen=True)
class SeriesInput:
    """One series ready for the model: its window and what the answer says about its history."""

    id: str
    window: Window
    source: HistorySource
    stale: bool = False


@router.post(
    "",
    response_model=ForecastResponse,
    dependencies=[ApiKeyDep],
    responses={
        404: {"description": "Unknown model, alias or version"},
        413: {"description": "Body too large"},
        422: {"description": "Invalid request; `detail` names the field"},
        503: {
            "description": "No model loaded yet, or the service's ticker data is unavailable or too old; "
            "retry after Retry-After seconds"
        },
    },
)
async def forecast(
    body: Annotated[ForecastRequest, Body(openapi_examples=REQUEST_EXAMPLES)],
    settings: SettingsDep,
    store: StoreDep,
    history: HistoryDep,
    metrics: MetricsDep,
) -> JSONResponse:
    """Forecast one series (`history` or `ticker`) or many (`series`) with a registered model.

    Every point carries the median (`close`), the outer band (`lower`, `upper`) and every quantile
    of `levels`; every series says where its history came from (`source`) and its last date (`as_of`).
    """
    series = body.all_series()
    if len(series) > settings.max_series:
        raise HTTPException(422, f"series: {len(series)} series, the limit is {settings.max_series}")
    metrics.series.observe(len(series))
    name = body.model or settings.model_name
    loaded = await store.get(name, None if body.version else (body.alias or settings.alias), body.version)
    forecaster = loaded.forecaster
    horizon = body.horizon or forecaster.horizon
    if horizon > forecaster.horizon:
        raise HTTPException(422, f"horizon: {horizon} is larger than the model's horizon {forecaster.horizon}")

    prefix = "series[{}]." if body.series is not None else ""
    inputs = [await series_input(item, prefix.format(i), str(i), forecaster, history) for i, item in enumerate(series)]
    quantiles = await loaded.batcher.submit(np.stack([x.window.values for x in inputs]))  # -> (N, H, Q) prices
    levels, median = forecaster.quantiles, forecaster.median_index
    forecasts = []
    for x, q in zip(inputs, quantiles, strict=True):
        assert x.window.last_date is not None  # every source gives dates
        dates = forecast_dates(settings.exchange, x.window.last_date, horizon)
        rows = q[:horizon].tolist()  # one conversion to Python floats per series, not per number
        forecasts.append(
            {
                "id": x.id,
                "source": x.source,
                "as_of": x.window.last_date.isoformat(),
                "stale": x.stale,
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
    # Built by hand for speed (no second validation of the response); tests check it against ForecastResponse.
    return JSONResponse(content)


async def series_input(
    item: SeriesIn, prefix: str, index: str, forecaster: Forecaster, history: HistoryDep
) -> SeriesInput:
    """The window of one series, from the request or the service's data source."""
    if item.history is not None:
        bars = item.history
        prices = [(b.open, b.high, b.low, b.close) for b in bars]
        window = forecaster.window(prices, [b.date for b in bars], field=f"{prefix}history")
        return SeriesInput(item.id or index, window, "request")
    assert item.ticker is not None  # guaranteed by SeriesIn.one_source
    found = await run_in_threadpool(history.history, item.ticker, forecaster.lookback, f"{prefix}ticker")
    window = forecaster.window(found.bars, field=f"{prefix}ticker '{item.ticker}' ({found.source})")
    return SeriesInput(item.id or item.ticker, window, found.source, found.stale)
