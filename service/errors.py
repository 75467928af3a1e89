"""One place that maps errors to HTTP answers with a stable, specific `detail`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from forecaster.errors import DataError, ModelNotFoundError, RegistryUnavailableError

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


def field_path(loc: Sequence[Any]) -> str:
    """('body', 'series', 0, 'history', 3, 'close') -> 'series[0].history[3].close'."""
    parts: list[str] = []
    for item in loc:
        if item == "body" and not parts:
            continue
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]" if parts else f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts) or "body"


def validation_message(error: Mapping[str, Any]) -> str:
    where = field_path(error.get("loc", ()))
    kind = error.get("type", "")
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "json_invalid":
        return f"body: not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    return f"{where}: {message}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        messages = [validation_message(e) for e in errors]
        return JSONResponse(
            status_code=422,
            content={
                "detail": "; ".join(messages[:10]) + (f"; and {len(messages) - 10} more" if len(messages) > 10 else ""),
                "errors": [
                    {"field": field_path(e.get("loc", ())), "message": m} for e, m in zip(errors, messages, strict=True)
                ],
            },
        )

    @app.exception_handler(DataError)
    async def bad_data(_: Request, exc: DataError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(ModelNotFoundError)
    async def not_found(_: Request, exc: ModelNotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(RegistryUnavailableError)
    async def registry_down(request: Request, exc: RegistryUnavailableError) -> JSONResponse:
        retry = request.app.state.settings.retry_after_s
        return JSONResponse(
            status_code=503, content={"detail": f"no model available: {exc}"}, headers={"Retry-After": str(retry)}
        )

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse(
            status_code=503, content={"detail": exc.detail}, headers={"Retry-After": str(exc.retry_after)}
        )
