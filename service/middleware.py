"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): body size limit and metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException

from service.metrics import ServiceMetrics

Scope = dict[str, Any]


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, by Content-Length or while streaming."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._reject(send)
        received = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": _limit_detail(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _limit_detail(max_bytes: int) -> str:
    return f"request body is larger than the limit of {max_bytes} bytes"


class _TooLarge(HTTPException):
    """Raised from receive() while streaming. An HTTPException, because FastAPI turns any other
    error while reading the body into a 400 and re-raises only HTTPExceptions."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=_limit_detail(max_bytes))


class MetricsMiddleware:
    """Counts and times every request by route template and status."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            code = str(status["code"])
            self.metrics.requests.labels(path, scope.get("method", ""), code).inc()
            self.metrics.latency.labels(path, code).observe(time.perf_counter() - started)
