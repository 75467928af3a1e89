"""POST /forecast: histories or tickers in, dated median forecasts with intervals out."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service.deps import ApiKeyDep, HistoryDep, MetricsDep, SettingsDep, StoreDep
from service.schemas import ForecastRequest, ForecastResponse, SeriesIn
from service.trading_calendar import next_sessions

router = APIRouter(prefix="/forecast", tags=["forecast"])


@lru_cache(maxsize=4096)
def forecast_dates(exchange: str, after: dt.date, count: int) -> tuple[str, ...]:
    return tuple(d.isoformat() for d in next_sessions(exchange, after, count))


@router.post(
    "",
    response_model=ForecastResponse,
    dependencies=[ApiKeyDep],
    responses={
        404: {"description": "Unknown model, alias or version"},
        413: {"description": "Body too large"},
        422: {"description": "Invalid request"},
        503: {"description": "No model loaded yet; retry after Retry-After seconds"},
    },
)
async def forecast(
    body: ForecastRequest, settings: SettingsDep, store: StoreDep, history: HistoryDep, metrics: MetricsDep
) -> JSONResponse:
    """Forecast one series (`history` or `ticker`) or many (`series`) with a registered model."""
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

    windows = np.empty((len(series), forecaster.lookback, 4), dtype=np.float32)
    last_dates, ids = [], []
    for i, item in enumerate(series):
        where = f"series[{i}]" if body.series is not None else ""
        windows[i], last = await window_of(item, where, forecaster.lookback, history)
        last_dates.append(last)
        ids.append(item.id or item.ticker or str(i))
    quantiles = await loaded.batcher.submit(windows)  # -> (N, H, Q) prices
    median = forecaster.quantiles.index(0.5)
    forecasts = []
    for i, series_id in enumerate(ids):
        dates = forecast_dates(settings.exchange, last_dates[i], horizon)
        q = quantiles[i]
        forecasts.append(
            {
                "id": series_id,
                "points": [
                    {
                        "step": h + 1,
                        "date": dates[h],
                        "close": float(q[h, median]),
                        "lower": float(q[h, 0]),
                        "upper": float(q[h, -1]),
                    }
                    for h in range(horizon)
                ],
            }
        )
    ref = loaded.ref
    return JSONResponse(
        {
            "model": {"name": ref.name, "version": ref.version, "alias": ref.alias, "run_id": ref.run_id},
            "device": str(forecaster.device),
            "forecasts": forecasts,
        }
    )


async def window_of(item: SeriesIn, where: str, lookback: int, history: HistoryDep) -> tuple[np.ndarray, dt.date]:
    """The last `lookback` bars of one series, from the request or the data source."""
    if item.history is not None:
        if len(item.history) < lookback:
            field = f"{where}.history" if where else "history"
            raise HTTPException(
                422, f"{field}: {len(item.history)} bars, the model needs at least lookback = {lookback}"
            )
        bars = item.history[-lookback:]
        return np.array([[b.open, b.high, b.low, b.close] for b in bars], dtype=np.float32), bars[-1].date
    assert item.ticker is not None  # guaranteed by SeriesIn.one_source
    return await run_in_threadpool(history.bars, item.ticker, lookback)
