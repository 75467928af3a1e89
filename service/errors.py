"""One place that maps errors to HTTP answers with a stable, specific `detail`.

Statuses (README "Serve"): 404 an unknown model, alias or version named in the request; 409 a
version that resolves but whose artifact cannot be loaded; 422 a bad request; 503 with
Retry-After when the registry or the data source cannot answer now, or while the service's own
model is not loaded. Unexpected errors become a JSON 500 in `service.middleware`. No answer
quotes a URI, a password or an exception text from the store: only our own wording.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from forecaster.errors import (
    DataError,
    ModelLoadError,
    ModelNotFoundError,
    RegistryUnavailableError,
    SourceError,
    redact,
)
from service.history import HistoryUnavailable

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """503 with Retry-After and a detail safe to show anyone."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class InvalidField(DataError):
    """422 for a rule the schema cannot state (the model's lookback and horizon, the service's
    limits, the data source's tickers): `field` is the field at fault; the message names it first,
    as every 422 message does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RegistryTimeout(RegistryUnavailableError):
    """The registry did not answer within the service's bound (our wording, safe to show)."""


def public_reason(exc: BaseException) -> str:
    """What an anonymous caller may read about a failed model lookup or load: our own messages
    (they name the model, version and cause), never the store's text (URIs, SQL, paths)."""
    if isinstance(exc, ModelNotFoundError | ModelLoadError | RegistryTimeout):
        return redact(str(exc))
    if isinstance(exc, RegistryUnavailableError):
        return "registry: unavailable"  # also said while no model is loaded: no claim that any serves
    return "internal error while loading the model"


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


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def field_loc(path: str) -> tuple[str | int, ...]:
    """'series[0].history[3].close' -> ('body', 'series', 0, 'history', 3, 'close'): the inverse of
    field_path, for the errors found after parsing (InvalidField), which name their field by path."""
    if path == "body":
        return ("body",)
    return ("body", *(name or int(index) for name, index in _STEP.findall(path)))


def error_field(error: Mapping[str, Any]) -> str:
    """The field a validation error names; the body itself when it is not JSON (pydantic's loc
    then holds the character position, not a field)."""
    return "body" if error.get("type") == "json_invalid" else field_path(error.get("loc", ()))


def validation_message(error: Mapping[str, Any]) -> str:
    where = error_field(error)
    kind = error.get("type", "")
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "json_invalid":
        return f"body: not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    return f"{where}: {message}"


def invalid_request(problems: Sequence[Mapping[str, Any]]) -> JSONResponse:
    """The one 422 body, FastAPI's own shape: `detail` lists every problem as `{loc, msg, type}`,
    `loc` the path to the field at fault (`["body", "series", 1, "history"]`), `msg` the human
    message, which names the field first (README "Serve", schemas.ValidationErrorDetail)."""
    return JSONResponse(status_code=422, content={"detail": list(problems)})


def _problem(error: Mapping[str, Any]) -> dict[str, Any]:
    """One of pydantic's (or fastpath's) errors as the 422 lists it: no `input` (a whole history
    could come back) and no `ctx` (its values need not be JSON); the message is ours."""
    loc = [part if isinstance(part, int) else str(part) for part in error.get("loc", ("body",))]
    return {"loc": loc, "msg": validation_message(error), "type": str(error.get("type", "value_error"))}


def invalid_field(field: str, message: str) -> dict[str, Any]:
    return {"loc": list(field_loc(field)), "msg": message, "type": "value_error"}


def _count(request: Request, kind: str) -> None:
    request.app.state.metrics.errors.labels(kind).inc()


def _unavailable(request: Request, detail: str) -> JSONResponse:
    retry = request.app.state.settings.retry_after_s
    return JSONResponse(status_code=503, content={"detail": detail}, headers={"Retry-After": str(retry)})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request([_problem(e) for e in exc.errors()])

    @app.exception_handler(DataError)
    async def bad_data(_: Request, exc: DataError) -> JSONResponse:
        # the routes name the field of every DataError they expect (InvalidField); any other is the body's
        return invalid_request([invalid_field(exc.field if isinstance(exc, InvalidField) else "body", str(exc))])

    @app.exception_handler(ModelNotFoundError)
    async def not_found(_: Request, exc: ModelNotFoundError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(ModelLoadError)
    async def cannot_load(request: Request, exc: ModelLoadError) -> JSONResponse:
        # 409: the version exists but its artifact is broken; asking again will not help until
        # the registry changes, so this is neither a 404 nor a retryable 503.
        _count(request, "model_load")
        return JSONResponse(status_code=409, content={"detail": public_reason(exc)})

    @app.exception_handler(RegistryUnavailableError)
    async def registry_down(request: Request, exc: RegistryUnavailableError) -> JSONResponse:
        _count(request, "registry")
        return _unavailable(request, f"no model available: {public_reason(exc)}")

    @app.exception_handler(SourceError)
    async def source_down(request: Request, exc: SourceError) -> JSONResponse:
        _count(request, "source")
        log.warning("data source failed: %s", redact(str(exc)))
        source = request.app.state.settings.data_source
        cause = f": {redact(str(exc))}" if isinstance(exc, HistoryUnavailable) else ""  # others: the log only
        return _unavailable(request, f"data source '{source}' unavailable{cause}; retry later")

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        _count(request, "unavailable")
        return JSONResponse(
            status_code=503, content={"detail": exc.detail}, headers={"Retry-After": str(exc.retry_after)}
        )
