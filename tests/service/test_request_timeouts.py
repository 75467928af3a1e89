"""A request is read within bounded time: a client that stalls or trickles its headers or its
body is answered 408 and its connection closed, on a bare `forecaster serve` (no proxy in front).

Slow clients are raw sockets. The limits are 1 s, and each test asserts the server closed the
connection well before a generous bound (without the limits the server held such connections for
as long as the client kept them), so a busy machine cannot make them fail.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from test_serve_process import serve_process, wait_for

LIMIT_S = 1.0
BOUND_S = 20.0  # far above the limit, far below "held until the client leaves"


@pytest.fixture(scope="module")
def server(registry, free_port) -> Iterator[tuple[str, int]]:
    port = free_port()
    limits = {"FORECASTER_REQUEST_HEADER_TIMEOUT_S": str(LIMIT_S), "FORECASTER_REQUEST_BODY_TIMEOUT_S": str(LIMIT_S)}
    with serve_process(registry, port, FORECASTER_LOG_LEVEL="warning", **limits) as (process, log):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wait_for(http, process, log, "/ready", 200)
        yield "127.0.0.1", port


def until_closed(sock: socket.socket, trickle: bytes = b"") -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took; sends
    `trickle` one byte every 0.1 s meanwhile. Fails if the connection is still open after BOUND_S."""
    started, received = time.monotonic(), b""
    sock.settimeout(0.1)
    while time.monotonic() - started < BOUND_S:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle[:1])
                except OSError:  # the server closed it while we wrote
                    pass
                trickle = trickle[1:]
            continue
        except ConnectionResetError:
            return received, time.monotonic() - started
        if not chunk:
            return received, time.monotonic() - started
        received += chunk
    raise AssertionError(f"the connection was still open after {BOUND_S} s; received {received!r}")


def connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=10)


def status_and_detail(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)["detail"]


HEADERS = b"POST /forecast HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"


@pytest.mark.slow
def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as sock:
        answer, took = until_closed(sock)
    assert answer == b""  # nothing asked, nothing answered
    assert took >= LIMIT_S * 0.5


@pytest.mark.slow
@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickled"])
def test_headers_not_finished_in_time_get_408_and_the_connection_closed(server, trickle):
    with connect(server) as sock:
        sock.sendall(HEADERS + b"X-Slow: ")
        answer, _ = until_closed(sock, b"a" * 200 if trickle else b"")  # a header line that never ends
    assert status_and_detail(answer) == (408, f"request headers not received within {LIMIT_S:g} s")
    assert b"connection: close" in answer.lower()


@pytest.mark.slow
@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickled"])
def test_a_body_not_received_in_time_gets_408_and_the_connection_closed(server, trickle):
    body = b'{"ticker": "AAA"}' + b" " * 183  # 200 bytes, announced in full, sent slowly or not at all
    with connect(server) as sock:
        sock.sendall(HEADERS + b"Content-Length: %d\r\n\r\n" % len(body))
        answer, _ = until_closed(sock, body if trickle else b"")
    assert status_and_detail(answer) == (408, f"request body not received within {LIMIT_S:g} s of its headers")
    assert b"connection: close" in answer.lower()


@pytest.mark.slow
def test_requests_sent_in_time_are_served_on_a_kept_alive_connection(server, history):
    with httpx.Client(base_url=f"http://{server[0]}:{server[1]}", timeout=10) as http:
        for _ in range(3):
            response = http.post("/forecast", json={"history": history})
            assert response.status_code == 200, response.text
            time.sleep(LIMIT_S * 1.2)  # idle between requests longer than the limits: the keep-alive's to bound
        assert http.get("/ready").status_code == 200
