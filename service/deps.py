"""Shared request dependencies: settings, the model store, API-key checks.

All are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per dependency per request (5 on /forecast) for what is an attribute lookup.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from service.history import HistoryProvider
from service.metrics import ServiceMetrics
from service.models.store import ModelStore
from service.settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_history(request: Request) -> HistoryProvider:
    return request.app.state.history


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def _key_matches(settings: Settings, given: str | None) -> bool:
    expected = settings.api_key.get_secret_value() if settings.api_key else ""
    return given is not None and given != "" and secrets.compare_digest(given.encode(), expected.encode())


async def require_key_if_configured(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_key is not None and not _key_matches(settings, key):
        raise HTTPException(
            status_code=401, detail="X-API-Key header: missing or wrong API key", headers={"WWW-Authenticate": "APIKey"}
        )


async def require_key_for_status(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
    """/models and /metrics ask for the key (when one is set) only with FORECASTER_PROTECT_STATUS_ROUTES:
    by default a Prometheus on the private network scrapes them without it (README "Serve")."""
    if request.app.state.settings.protect_status_routes:
        await require_key_if_configured(request, key)


async def require_admin_key(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> None:
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        raise HTTPException(
            status_code=403, detail="admin endpoints are disabled: set FORECASTER_API_KEY to enable them"
        )
    if not _key_matches(settings, key):
        raise HTTPException(
            status_code=401, detail="X-API-Key header: missing or wrong API key", headers={"WWW-Authenticate": "APIKey"}
        )


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
HistoryDep = Annotated[HistoryProvider, Depends(get_history)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
ApiKeyDep = Depends(require_key_if_configured)
StatusKeyDep = Depends(require_key_for_status)
AdminKeyDep = Depends(require_admin_key)
