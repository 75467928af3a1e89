"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): the request's log line, metrics and
catch-all; the body's size and time limits."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException

from service.logs import ACCESS_LOGGER, RequestContext, current_request
from service.metrics import ServiceMetrics

Scope = dict[str, Any]
log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)
# A caller's X-Request-ID is kept when it is short and plain (it goes into log lines as is).
_CALLER_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, by Content-Length or while streaming; 408 (and the
    connection closed) for a body not received within `timeout_s` of its headers, whether it
    stalls (`Content-Length: 100` and nothing sent) or trickles. A route that never reads its
    body is not timed here: uvicorn's keep-alive timeout closes the connection after the answer."""

    def __init__(self, app: Any, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(send)
        received, complete = 0, False
        deadline = asyncio.get_running_loop().time() + self.timeout_s

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, complete
            if complete:  # after the body, receive() waits for a disconnect: not a read to bound
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _SlowBody(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
                complete = not message.get("more_body", False)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Any) -> None:
        await _send_json(send, 413, {"detail": _limit_detail(self.max_bytes)})


def _limit_detail(max_bytes: int) -> str:
    return f"request body is larger than the limit of {max_bytes} bytes"


class _SlowBody(HTTPException):
    """Raised from receive() when the body's deadline passes: answered 408 by FastAPI's handler for
    HTTPExceptions, with `Connection: close`, since the rest of the body may still come."""

    def __init__(self, timeout_s: float) -> None:
        detail = f"request body not received within {timeout_s:g} s of its headers"
        super().__init__(status_code=408, detail=detail, headers={"Connection": "close"})


class _TooLarge(HTTPException):
    """Raised from receive() while streaming. An HTTPException, because FastAPI turns any other
    error while reading the body into a 400 and re-raises only HTTPExceptions."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_limit_detail(max_bytes))


class RequestLogMiddleware:
    """Outermost: gives every request an id (the caller's X-Request-ID or a new one, echoed in
    the response), turns any unhandled error into a JSON 500 naming that id, and writes one
    access-log line and one metrics sample (count and latency by route template and status) per
    request, whatever answered it: the route, the body limit's 413 or this catch-all's 500.

    The 500 is sent here, not by Starlette's ServerErrorMiddleware: that one re-raises after
    answering, and the server then closes the keep-alive connection.
    """

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        context = RequestContext(_request_id(scope))
        token = current_request.set(context)
        response = {"status": 500, "started": False}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"], response["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", context.request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            self.metrics.errors.labels("internal").inc()
            log.exception("internal error (id %s) on %s %s", context.request_id, scope.get("method"), scope["path"])
            if response["started"]:
                raise  # the answer is half sent: nothing valid is left to say
            await _send_json(send_with_id, 500, {"detail": f"internal error (id {context.request_id})"})
        finally:
            current_request.reset(token)
            seconds, status = time.perf_counter() - started, int(response["status"])
            self._count(scope, status, seconds)
            self._log(scope, status, seconds, context)

    def _count(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")  # set on this same scope by the router, when one matched
        path, code = getattr(route, "path", None) or "unmatched", str(status)
        self.metrics.requests.labels(path, scope.get("method", ""), code).inc()
        self.metrics.latency.labels(path, code).observe(seconds)

    @staticmethod
    def _log(scope: Scope, status: int, seconds: float, context: RequestContext) -> None:
        method, path = scope.get("method", ""), _printable(scope["path"])
        duration_ms = round(seconds * 1000, 2)
        series = "" if context.series is None else f" series={context.series}"
        access_log.info(
            "%s %s %d %.2fms%s id=%s",
            method,
            path,
            status,
            duration_ms,
            series,
            context.request_id,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "series": context.series,
                "request_id": context.request_id,
            },
        )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _CALLER_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


def _printable(path: str) -> str:
    """The path with control characters escaped: a decoded %0A must not start a new log line."""
    return path if path.isprintable() else path.encode("unicode_escape").decode("ascii")


async def _send_json(send: Any, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
