"""The FastAPI app: settings, model store and poller in the lifespan; routers; error mapping;
documented error statuses; Swagger UI, ReDoc and the landing page (service.pages) served offline."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from forecaster import __version__
from forecaster.errors import redact
from forecaster.registry import tracking
from service import pages
from service.errors import install_error_handlers
from service.history import HistoryProvider
from service.ledger import open_ledger
from service.logs import configure_logging
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, RequestLogMiddleware
from service.models.store import ModelStore
from service.routes import admin, forecast, health, models
from service.schemas import ErrorDetail, ValidationErrorDetail
from service.settings import Settings, get_settings
from service.workers import WorkerHeaderMiddleware, worker_exit

log = logging.getLogger(__name__)

# Statuses any operation may answer beside its own, documented once here for every route.
COMMON_ERRORS = {"500": "Unexpected error; the detail names the request id (also in X-Request-ID)"}
BODY_ERRORS = {
    "408": "Body not received within FORECASTER_REQUEST_BODY_TIMEOUT_S of the headers; the connection is closed",
    "413": "Body larger than FORECASTER_MAX_BODY_BYTES",
    "422": "Invalid request; `detail` lists each problem as {loc, msg, type}, msg naming the field first",
}
# Every path answers a method it does not have with 405 and the methods it has in Allow.
WRONG_METHOD = {
    "description": "This path does not take this method; `Allow` lists the ones it takes",
    "headers": {"Allow": {"description": "the methods of this path", "schema": {"type": "string"}}},
}
KEY_ERRORS = {"401": "Missing or wrong X-API-Key"}
# Routes that load models on demand (tag "forecast") can also answer these (service.errors).
MODEL_ERRORS = {
    "404": "Unknown model, alias or version",
    "409": "The version exists but its artifact cannot be loaded; the detail names version and cause",
    "503": "No model available now (registry down or slow, default model not loaded, data source down); "
    "retry after Retry-After seconds",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        uri = tracking.configure(settings.tracking_uri)
        store = ModelStore(settings, metrics)
        log.info("registry %s, serving %s", redact(uri), store.label(store.default_key))
        app.state.store = store
        poller = asyncio.create_task(store.poll_forever())
        app.state.poller = poller
        app.state.ledger = open_ledger(settings, uri, metrics.registry)  # answers recorded off the request path
        try:
            yield
        finally:
            # Nothing here waits on the registry: the poller is cancelled mid-call, and registry
            # calls run in daemon threads that the interpreter does not join.
            poller.cancel()
            await store.close()  # also tells the poller to stop, should the cancel be lost
            await asyncio.to_thread(app.state.ledger.close)  # writes what is queued, bounded
            await asyncio.wait({poller}, timeout=5.0)  # bounded: shutdown never hangs on the poller
            worker_exit()  # with several workers: this one's model version leaves /metrics

    # /docs (Swagger UI 5) and /redoc from files inside fastapi-offline: no CDN, reads OpenAPI 3.1
    app = FastAPIOffline(
        title="forecaster",
        version=__version__,
        lifespan=lifespan,
        description="Daily stock forecasts with prediction intervals from MLflow-registered models.",
        static_url=pages.DOCS_ASSETS,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.history = HistoryProvider(settings)
    install_error_handlers(app)
    for router in (forecast.router, models.router, health.router, admin.router, pages.router):
        app.include_router(router)
    install_docs(app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.request_body_timeout_s
    )
    app.add_middleware(RequestLogMiddleware, metrics=metrics)  # sees every answer, even a 500
    app.add_middleware(WorkerHeaderMiddleware)  # X-Worker on every answer, the catch-all 500 included
    return app


def install_docs(app: FastAPI) -> None:
    """The OpenAPI document that /docs and /redoc show: every error status has the error schema
    (a `detail` string), so clients and schema fuzzers can check answers."""

    documents: dict[tuple[int, int] | None, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        # The document states the served model's lookback and horizon, so it is built again when
        # they change (the model loads; an alias moves to a model with another window).
        store = getattr(app.state, "store", None)
        loaded = store.models.get(store.default_key) if store is not None else None
        window = None if loaded is None else (loaded.forecaster.lookback, loaded.forecaster.horizon)
        if window not in documents:
            settings = app.state.settings
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            forecast.document_series_limit(spec, settings.max_series)
            if window is not None:
                forecast.document_model(spec, *window)
            document_key(spec, settings)
            documents[window] = document_errors(spec)
        app.openapi_schema = documents[window]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_key(spec: dict[str, Any], settings: Settings) -> None:
    """X-API-Key declared only where this app asks for it (service.deps): /admin always (403
    without a configured key), /forecast when a key is set, /models when also protect_status_routes."""
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if not operation.get("security") or path.startswith("/admin"):
                continue
            if settings.api_key is None or (path == "/models" and not settings.protect_status_routes):
                del operation["security"]


def document_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the statuses every operation can answer and give each error response the ErrorDetail
    schema, a 422 the ValidationErrorDetail one (in place of FastAPI's list-shaped validation
    error, which this service never sends)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorDetail, ValidationErrorDetail):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas |= schema.pop("$defs", {})
        schemas[model.__name__] = schema
    error_ref = {"$ref": "#/components/schemas/ErrorDetail"}
    invalid_ref = {"$ref": "#/components/schemas/ValidationErrorDetail"}
    fastapi_validation = "#/components/schemas/HTTPValidationError"
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            extra = dict(COMMON_ERRORS)
            if "requestBody" in operation:
                extra |= BODY_ERRORS
            if operation.get("security"):
                extra |= KEY_ERRORS
            if "forecast" in operation.get("tags", []):
                extra |= MODEL_ERRORS
            responses = operation.setdefault("responses", {})
            for status, description in extra.items():
                responses.setdefault(status, {"description": description})
            responses.setdefault("405", dict(WRONG_METHOD))
            for status, response in responses.items():
                if not status.startswith(("4", "5")):
                    continue
                media = response.setdefault("content", {}).setdefault("application/json", {})
                if not media.get("schema") or media["schema"].get("$ref") == fastapi_validation:
                    media["schema"] = invalid_ref if status == "422" else error_ref
                if status == "503":
                    response.setdefault("headers", {})["Retry-After"] = {
                        "description": "Seconds to wait before asking again",
                        "schema": {"type": "integer"},
                    }
    if not any(fastapi_validation in str(ops) for ops in spec.get("paths", {}).values()):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return spec
