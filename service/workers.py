"""Several uvicorn worker processes on one host: how they listen, the environment they share,
Prometheus multiprocess mode, and the `X-Worker` header that says which process answered.

How they listen: by default (Linux) each worker binds its own listening socket to the address
with SO_REUSEPORT, and the kernel hashes every new connection to one of them, so a load's
keep-alive connections spread over the workers. uvicorn's own supervisor (which starts,
health-checks and restarts the workers) hands every worker the sockets it was given; a
`ReusePortListener` is a socket that, handed to a worker, arrives there as a fresh socket of its
own on the same address. Without it (`reuse_port=false`, or no SO_REUSEPORT) all workers accept
from one shared socket, and whichever wakes first takes a whole burst of connections.

uvicorn starts workers with `spawn`, so a worker knows only its environment: the CLI writes its
overrides as FORECASTER_* variables and each worker builds its settings, app, model store and
alias poller from them (`APP_FACTORY`). Counters and histograms of all workers are summed by
prometheus_client from per-process files in PROMETHEUS_MULTIPROC_DIR; that variable must be set
before a worker imports prometheus_client, which is why the CLI sets it before starting them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess
from uvicorn.config import STARTUP_FAILURE

from service.settings import Settings

log = logging.getLogger(__name__)

# Read by prometheus_client itself (its own contract); named once here for the service.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Import string uvicorn calls in each worker: create_app() with settings from the environment.
APP_FACTORY = "service.main:create_app"
WORKER_HEADER = b"x-worker"
# Files of live-mode gauges are per pid: gauge_liveall_1234.db, gauge_livemin_1234.db, ...
_LIVE_FILE = re.compile(r"gauge_live\w+?_(?P<pid>\d+)\.db")


def reuse_port_supported() -> bool:
    """SO_REUSEPORT that balances connections among the sockets sharing an address: Linux's."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _socket(host: str, port: int, reuse_addr: bool, reuse_port: bool) -> socket.socket:
    """A TCP socket bound to (host, port) with the given options; OSError as the bind raised it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if reuse_addr:  # connections of an earlier server left in TIME_WAIT do not block the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class ReusePortListener(socket.socket):
    """The address the workers listen on, reserved here with SO_REUSEPORT: a taken port or a bad
    host fails before any worker starts, and the port stays reserved while the server runs. This
    socket never listens (the kernel gives connections only to listening sockets). Pickled into a
    worker, it arrives as a new socket bound there to the same address: one per worker.

    SO_REUSEPORT lets any process of the same user join the address, so a second server started
    on the port by mistake would silently take half the connections. `reserve` refuses that: it
    first binds the address without SO_REUSEPORT (which fails while any socket listens on it, or
    while another server's reservation holds it), and the reservation itself leaves SO_REUSEADDR
    off, so a second server's probe fails even before the first one's workers listen."""

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        host, port = self.getsockname()[:2]
        return _bind_in_worker, (host, port)

    @classmethod
    def reserve(cls, host: str, port: int) -> ReusePortListener:
        """OSError (address in use, unknown host) as the bind raised it."""
        if port != 0:  # port 0: the kernel picks a free port, for the reservation alone
            _socket(host, port, reuse_addr=True, reuse_port=False).close()  # nothing else on the address
        try:
            sock = _socket(host, port, reuse_addr=False, reuse_port=True)
        except OSError:  # TIME_WAIT connections of an earlier server without SO_REUSEPORT: the
            sock = _socket(host, port, reuse_addr=True, reuse_port=True)  # probe saw no listener
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())


def _bind_in_worker(host: str, port: int) -> socket.socket:
    """A worker's own socket for the listener's address (called as the worker unpickles its
    arguments). A failure ends the worker as a startup failure, which stops the supervisor
    instead of restarting the worker for ever."""
    try:
        return _socket(host, port, reuse_addr=True, reuse_port=True)
    except OSError as error:
        log.error("worker %d: cannot listen on %s:%d: %s", os.getpid(), host, port, error)
        sys.exit(STARTUP_FAILURE)


def run_workers(app: str, workers: int, options: Mapping[str, Any], reuse_port: bool) -> None:
    """Serve the app factory `app` from `workers` processes under uvicorn's supervisor, each on its
    own SO_REUSEPORT socket when `reuse_port` (and supported), else all on one shared socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if not (reuse_port and reuse_port_supported()):
        uvicorn.run(app, factory=True, workers=workers, **options)
        return
    config = uvicorn.Config(app, factory=True, workers=workers, **options)
    server_log = logging.getLogger("uvicorn.error")
    try:
        listener = ReusePortListener.reserve(config.host, config.port)
    except OSError as error:  # as uvicorn reports a bind failure: one line, the startup-failure code
        server_log.error("cannot listen on %s:%d: %s", config.host, config.port, error)
        sys.exit(STARTUP_FAILURE)
    with listener:
        host, port = listener.getsockname()[:2]
        server_log.info(
            "Uvicorn running on http://%s:%d with %d workers, one SO_REUSEPORT socket each (Press CTRL+C to quit)",
            f"[{host}]" if ":" in host else host,  # an IPv6 address in a URL
            port,
            workers,
        )
        try:
            Multiprocess(config, sockets=[listener]).run()
        except KeyboardInterrupt:
            pass


def multiprocess_dir() -> str | None:
    """The folder of per-process metric files when workers share metrics, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


def settings_env(settings: Settings, overrides: Mapping[str, Any]) -> dict[str, str]:
    """The FORECASTER_* variables that give a worker the same settings as `overrides` (CLI
    flags) on top of the environment; the prefix is the one Settings reads."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper(): str(value) for name, value in overrides.items()}


@contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """PROMETHEUS_MULTIPROC_DIR for one server start: the operator's folder emptied (files of a
    previous run would add their counts to this one's), or a fresh temporary folder removed at
    exit. Set in os.environ for the workers to inherit; restored afterwards."""
    given = multiprocess_dir()
    folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="forecaster-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        if given:
            os.environ[MULTIPROC_ENV] = given
        else:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(folder, ignore_errors=True)


def worker_exit() -> None:
    """Drop this process's live gauges (loaded version, registry up...) as it stops, so /metrics
    of the other workers no longer reports them; counters it made keep counting in the sum."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def prune_dead_workers(folder: str) -> None:
    """Live gauges of workers that died without a clean exit (killed, crashed and restarted by
    uvicorn's supervisor): a worker that never ran `worker_exit` would otherwise report its
    model version for ever."""
    for path in Path(folder).glob("gauge_live*.db"):
        found = _LIVE_FILE.fullmatch(path.name)
        if found and not _alive(int(found.group("pid"))):
            multiprocess.mark_process_dead(int(found.group("pid")), folder)


def exposition_registry(folder: str) -> CollectorRegistry:
    """A registry that reads every worker's metric files: what /metrics serves with workers."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry


def workers_serving(folder: str, name: str, ref: str) -> set[int]:
    """Pids of the live workers whose `forecaster_model_version{name, ref}` gauge says they have a
    version of that reference loaded: how one worker's /ready knows about the others."""
    prune_dead_workers(folder)
    return {
        int(sample.labels["pid"])
        for family in exposition_registry(folder).collect()
        if family.name == "forecaster_model_version"
        for sample in family.samples
        if sample.labels.get("name") == name and sample.labels.get("ref") == ref and sample.value > 0
        if _alive(int(sample.labels["pid"]))
    }


def worker_id() -> str:
    """host:pid of this process: tells workers apart, and replicas behind a load balancer."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerHeaderMiddleware:
    """Adds `X-Worker: host:pid` to every answer, so a client or a test sees which process (and
    which replica) served it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.value = worker_id().encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_worker(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (WORKER_HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, send_with_worker)
