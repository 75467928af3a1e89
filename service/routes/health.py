"""Liveness, readiness and Prometheus metrics.

/ready is unauthenticated: it names the model, alias and versions and says whether the registry
answers, in our own words only (no URI, no exception text).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.deps import MetricsDep, SettingsDep, StatusKeyDep, StoreDep
from service.models.refs import metric_ref
from service.models.store import ModelStore
from service.models.warmup import probe_window, unusable
from service.ops_schemas import ReadyStatus, failed_info
from service.settings import Settings
from service.workers import multiprocess_dir, workers_serving

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def _status(settings: Settings, store: ModelStore, version: str | None, detail: str | None) -> ReadyStatus:
    return ReadyStatus(
        status="ready" if detail is None else "not ready",
        model=store.default_name,
        alias=store.default_alias,
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
    """200 when the default model is loaded, its probe forecast is finite and ordered and, with
    `--workers N`, every worker has loaded it; else 503 with Retry-After. A registry outage alone
    keeps it 200 (the loaded model serves) and shows as `registry: down`; evidence older than the
    registry bound is refreshed in the background."""
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
    waiting = _workers_waiting(settings, store)
    if waiting:
        return _not_ready(settings, _status(settings, store, loaded.ref.version, f"{label}: {waiting}"))
    return JSONResponse(_status(settings, store, loaded.ref.version, None).model_dump(mode="json"))


def _workers_waiting(settings: Settings, store: ModelStore) -> str | None:
    """With `--workers N`, ready only when every worker has loaded the default model (the load
    balancer or the client may reach any of them): None then, else how many have."""
    folder = multiprocess_dir()
    if settings.workers <= 1 or folder is None:
        return None
    name, _, _ = store.default_key
    serving = len(workers_serving(folder, name, metric_ref(store.default_key)))
    return None if serving >= settings.workers else f"{serving} of {settings.workers} workers have loaded it"


@router.get("/metrics", include_in_schema=False, dependencies=[StatusKeyDep])  # key: protect_status_routes
async def prometheus(metrics: MetricsDep) -> Response:
    body, content_type = metrics.render()  # one worker's registry, or the sum over workers
    return Response(body, media_type=content_type)
