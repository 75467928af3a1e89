"""POST /admin/reload: re-resolve aliases now (key required; disabled without one).

200: every followed alias resolved and every moved one loaded. 409: some version could not be
loaded or failed its warm-up check (a forecast that is not finite or not ordered), or an alias no
longer resolves; the previous version keeps serving and `failed` says which and why. 503 with
Retry-After: the registry did not answer, or a pass over the aliases already running (the poll)
still held after REGISTRY_TIMEOUT_S; the wait for it and every alias lookup share that one bound.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import AdminKeyDep, SettingsDep, StoreDep
from service.ops_schemas import ReloadResult, failed_info
from service.schemas import ErrorDetail

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminKeyDep])


@router.post(
    "/reload",
    response_model=ReloadResult,
    responses={
        401: {"model": ErrorDetail, "description": "Missing or wrong X-API-Key"},
        403: {"model": ErrorDetail, "description": "Admin endpoints disabled (no FORECASTER_API_KEY)"},
        409: {"model": ReloadResult, "description": "A version failed to load; the previous one keeps serving"},
        503: {"model": ReloadResult, "description": "The registry did not answer; retry after Retry-After"},
    },
)
async def reload(settings: SettingsDep, store: StoreDep) -> JSONResponse:
    """Load the default model if missing and swap in every alias that moved, retrying versions
    that failed before."""
    report = await store.sync(force=True)
    failed = [info for info in map(failed_info, report.failed) if info is not None]
    result = ReloadResult(
        changes=report.changes,
        failed=failed,
        models={store.label(key): loaded.ref.version for key, loaded in store.models.items()},
    )
    headers = {}
    if report.unavailable is not None:
        status, result.detail = 503, report.unavailable
        headers["Retry-After"] = str(settings.retry_after_s)
    elif failed:
        status = 409
        result.detail = "; ".join(f"{f.model} version {f.version or '?'}: {f.reason}" for f in failed)
    else:
        status = 200
    return JSONResponse(result.model_dump(mode="json"), status_code=status, headers=headers)
