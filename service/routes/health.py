"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import MetricsDep, SettingsDep, StoreDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request, settings: SettingsDep, store: StoreDep) -> JSONResponse:
    """200 when the default model is loaded and answers a forecast; else 503."""
    loaded = store.models.get(store.key(settings.model_name, settings.alias, None))
    if loaded is None:
        reason = store.last_error or "the model is still loading"
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": str(settings.retry_after_s)},
            content={"status": "not ready", "detail": f"{settings.model_name}@{settings.alias}: {reason}"},
        )
    probe = np.ones((1, loaded.forecaster.lookback, 4), dtype=np.float32)
    result = await loaded.batcher.submit(probe)
    if not np.isfinite(result).all():
        return JSONResponse(
            status_code=503, content={"status": "not ready", "detail": "model answered non-finite values"}
        )
    return JSONResponse(
        {"status": "ready", "model": settings.model_name, "alias": settings.alias, "version": loaded.ref.version}
    )


@router.get("/metrics", include_in_schema=False)
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
