"""How long a client may take to send a request's headers: uvicorn's HTTP protocol with a deadline.

uvicorn (0.54) bounds only the idle time of a kept-alive connection between requests
(`timeout_keep_alive`): a connection that opens and sends nothing, or sends half its headers, is
held until the client leaves (h11_max_incomplete_event_size bounds the headers' size, not their
time). So `forecaster serve` runs uvicorn's httptools protocol with one addition: from the moment a
connection opens, or a new request on it starts, its headers must be complete within
`request_header_timeout_s`; else the connection is closed, after a 408 when part of a request came.
The body's deadline is the app's (service.middleware.BodyLimitMiddleware: a 408 the access log
sees); a connection idle after an answer is uvicorn's keep-alive timeout's.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """httptools' protocol whose requests must finish their headers within `header_timeout_s`."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._deadline: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a request came, its headers are not complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is bounded too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._partial = True
        if self._deadline is None:  # a new request on a kept-alive connection
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self._partial = False
        super().on_headers_complete()

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._partial:  # no app saw this request: answered here, as uvicorn answers a malformed one
            body = json.dumps({"detail": f"request headers not received within {self.header_timeout_s:g} s"})
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body.encode())
            )
        self.transport.close()


def http_protocol(header_timeout_s: float) -> Callable[..., asyncio.Protocol]:
    """uvicorn's `http` option: the protocol with this deadline (a partial of a module-level class,
    so it pickles into `--workers` processes)."""
    return functools.partial(HeaderDeadlineProtocol, header_timeout_s=header_timeout_s)
