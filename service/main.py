"""The FastAPI app: settings, model store and poller in the lifespan; routers; error mapping."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI

from forecaster import __version__, tracking
from service.errors import install_error_handlers
from service.history import HistoryProvider
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.model_store import LoadedModel, ModelStore
from service.routes import admin, forecast, health, models
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = ServiceMetrics()

    def on_swap(loaded: LoadedModel) -> None:
        metrics.model_version.labels(loaded.ref.name, loaded.ref.alias or "version").set(float(loaded.ref.version))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracking.configure(settings.tracking_uri)
        store = ModelStore(settings, on_batch=metrics.batch_size.observe, on_swap=on_swap)
        app.state.store = store
        poller = asyncio.create_task(store.poll_forever((settings.model_name, settings.alias)))
        app.state.poller = poller
        try:
            yield
        finally:
            poller.cancel()
            with suppress(asyncio.CancelledError):
                await poller
            await store.close()

    app = FastAPI(
        title="forecaster",
        version=__version__,
        lifespan=lifespan,
        description="Daily stock forecasts with prediction intervals from MLflow-registered models.",
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.history = HistoryProvider(settings)
    install_error_handlers(app)
    for router in (forecast.router, models.router, health.router, admin.router):
        app.include_router(router)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
