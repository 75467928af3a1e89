"""Closed-loop HTTP load generator for the serving benchmark (run as its own process).

C clients, each with one keep-alive HTTP/1.1 connection, send the next pre-serialised body as
soon as the previous response has been read in full. A warm-up (same concurrency, not
reported) runs first; the measured phase stops at `--requests` requests or `--time-limit`
seconds, whichever comes first (requests in flight at the deadline still complete).

The client is a minimal HTTP/1.1 implementation on asyncio streams (uvloop when installed)
so that it spends as little CPU as possible on the 2 cores it shares with the servers. It
reports its own CPU time and, given `--server-pid`, the servers' CPU time and the machine's
busy time over the measured window (from /proc), so a saturated client is visible.

    python benchmarks/loadgen.py --port 8000 --path /forecast --bodies bodies.ndjson \
        --concurrency 32 --requests 3000 --time-limit 20 --expect '{"model"'

`--bodies`: one JSON body per line, used round-robin. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class HttpError(Exception):
    pass


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    issued: int = 0

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if self.first_error is None:
            self.first_error = f"{kind}: {detail[:300]}"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one HTTP/1.1 response."""
    line = await reader.readline()
    if not line:
        raise HttpError("connection closed by server")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {line!r}")
    status = int(parts[1])
    length = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    if chunked:
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body = await reader.read()
        keep_alive = False
    return status, body, keep_alive


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(raw)
        status, body, keep_alive = await read_response(self.reader)
        if not keep_alive:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Bodies:
    """Pre-built request bytes, handed out round-robin across all clients."""

    def __init__(self, host: str, port: int, path: str, bodies: list[bytes]) -> None:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        self.raw = [(head + f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in bodies]
        self.next = 0

    def take(self) -> bytes:
        raw = self.raw[self.next % len(self.raw)]
        self.next += 1
        return raw


async def run_phase(conns: list[Connection], bodies: Bodies, requests: int, time_limit: float,
                    expect: bytes) -> tuple[Tally, float]:
    """Closed loop over all connections until `requests` are issued or `time_limit` passes."""
    tally = Tally()
    started = time.perf_counter()
    deadline = started + time_limit

    async def client(conn: Connection) -> None:
        while tally.issued < requests and time.perf_counter() < deadline:
            tally.issued += 1
            raw = bodies.take()
            t0 = time.perf_counter()
            try:
                status, body = await conn.request(raw)
            except (OSError, HttpError, asyncio.IncompleteReadError, ValueError) as exc:
                conn.close()
                tally.error("transport", repr(exc))
                continue
            elapsed = time.perf_counter() - t0
            if status != 200:
                tally.error(f"http_{status}", body.decode(errors="replace"))
            elif not body.startswith(expect):
                tally.error("unexpected_body", body.decode(errors="replace"))
            else:
                tally.ok += 1
                tally.latencies.append(elapsed)

    await asyncio.gather(*(client(c) for c in conns))
    return tally, time.perf_counter() - started


def proc_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (0 for any that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan")
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / CLK_TCK


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    lines = [ln.strip() for ln in Path(args.bodies).read_bytes().splitlines() if ln.strip()]
    if not lines:
        raise SystemExit(f"{args.bodies}: no bodies")
    bodies = Bodies(args.host, args.port, args.path, lines)
    expect = args.expect.encode()
    conns = [Connection(args.host, args.port) for _ in range(args.concurrency)]
    try:
        warm, _ = await run_phase(conns, bodies, args.warmup, args.warmup_time_limit, expect)
        if args.pause:
            await asyncio.sleep(args.pause)
        load_before = os.getloadavg()
        cpu0, server0, busy0 = time.process_time(), proc_cpu_s(args.server_pid), machine_busy_s()
        tally, elapsed = await run_phase(conns, bodies, args.requests, args.time_limit, expect)
        cpu1, server1, busy1 = time.process_time(), proc_cpu_s(args.server_pid), machine_busy_s()
        load_after = os.getloadavg()
    finally:
        for conn in conns:
            conn.close()
    lat = sorted(tally.latencies)
    client_cpu, server_cpu, busy = cpu1 - cpu0, server1 - server0, busy1 - busy0
    return {
        "label": args.label,
        "concurrency": args.concurrency,
        "series_per_request": args.series_per_request,
        "warmup_ok": warm.ok,
        "warmup_errors": sum(warm.errors.values()),
        "ok": tally.ok,
        "errors": tally.errors,
        "first_error": tally.first_error or warm.first_error,
        "elapsed_s": elapsed,
        "hit_time_limit": tally.issued < args.requests,
        "req_per_s": tally.ok / elapsed if elapsed > 0 else float("nan"),
        "series_per_s": tally.ok * args.series_per_request / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": percentile(lat, 50) * 1e3,
        "p90_ms": percentile(lat, 90) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "max_ms": (lat[-1] if lat else float("nan")) * 1e3,
        "mean_ms": (sum(lat) / len(lat) if lat else float("nan")) * 1e3,
        "client_cpu_s": client_cpu,
        "client_cores": client_cpu / elapsed if elapsed > 0 else float("nan"),
        "server_cpu_s": server_cpu,
        "server_cores": server_cpu / elapsed if elapsed > 0 else float("nan"),
        "other_cpu_s": busy - client_cpu - server_cpu,
        "machine_busy_cores": busy / elapsed if elapsed > 0 else float("nan"),
        "load1_before": load_before[0],
        "load1_after": load_after[0],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True, help="e.g. /forecast or /invocations")
    p.add_argument("--bodies", required=True, help="file with one JSON body per line")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--requests", type=int, default=3000, help="most measured requests")
    p.add_argument("--time-limit", type=float, default=20.0, help="most seconds of measurement")
    p.add_argument("--warmup", type=int, default=100, help="warm-up requests (not reported)")
    p.add_argument("--warmup-time-limit", type=float, default=5.0)
    p.add_argument("--pause", type=float, default=0.0, help="seconds between warm-up and measurement")
    p.add_argument("--expect", default="{", help="a 200 body must start with this")
    p.add_argument("--series-per-request", type=int, default=1)
    p.add_argument("--server-pid", type=int, action="append", default=[], help="count this pid's CPU (repeatable)")
    p.add_argument("--label", default="")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        result = asyncio.run(main_async(args))
    else:
        result = uvloop.run(main_async(args))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
