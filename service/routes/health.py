"""Liveness, readiness and Prometheus metrics.

/ready is unauthenticated: it names the model, alias and versions and says whether the registry
answers, in our own words only (no URI, no exception text).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.deps import MetricsDep, SettingsDep, StatusKeyDep, StoreDep
from service.models.store import ModelStore
from service.models.warmup import probe_window, unusable
from service.ops_schemas import ReadyStatus, failed_info
from service.settings import Settings

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def _status(settings: Settings, store: ModelStore, version: str | None, detail: str | None) -> ReadyStatus:
    return ReadyStatus(
        status="ready" if detail is None else "not ready",
        model=settings.model_name,
        alias=settings.alias,
        version=version,
        registry="unknown" if store.registry_up is None else ("up" if store.registry_up else "down"),
        last_refresh=store.last_refresh,
        failed=failed_info(store.failed.get(store.default_key)),
        detail=detail,
    )


def _not_ready(settings: Settings, status: ReadyStatus) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        headers={"Retry-After": str(settings.retry_after_s)},
        content=status.model_dump(mode="json"),
    )


@router.get(
    "/ready",
    response_model=ReadyStatus,
    responses={503: {"model": ReadyStatus, "description": "The default model is not loaded or fails a probe"}},
)
async def ready(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    """200 when the default model is loaded and its probe forecast is finite and ordered; else 503
    with Retry-After. A registry outage alone keeps it 200 (the loaded model serves) and shows as
    `registry: down`; evidence older than the registry bound is refreshed in the background."""
    store.check_registry()
    loaded = store.models.get(store.default_key)
    label = store.label(store.default_key)
    if loaded is None:
        reason = store.default_error or "the model is still loading"
        return _not_ready(settings, _status(settings, store, None, f"{label}: {reason}"))
    try:
        result = await loaded.batcher.submit(probe_window(loaded.forecaster.lookback))
    except Exception:  # noqa: BLE001 - a model that cannot forecast is not ready; the cause goes to the log
        log.exception("readiness probe of %s version %s failed", label, loaded.ref.version)
        return _not_ready(settings, _status(settings, store, loaded.ref.version, f"{label}: the probe forecast failed"))
    problem = unusable(result, loaded.forecaster.quantiles)
    if problem is not None:
        detail = f"{label}: the probe forecast has {problem}"
        return _not_ready(settings, _status(settings, store, loaded.ref.version, detail))
    return JSONResponse(_status(settings, store, loaded.ref.version, None).model_dump(mode="json"))


@router.get("/metrics", include_in_schema=False, dependencies=[StatusKeyDep])  # key: protect_status_routes
async def prometheus(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()  # one worker's registry, or the sum over workers
    return Response(body, media_type=content_type)
