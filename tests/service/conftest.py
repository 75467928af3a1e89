"""Service fixtures: a temporary MLflow store with a tiny registered model, and apps served
over real HTTP by uvicorn in a background thread.

Everything heavy (the store, the trained model, the default app) is built once per session.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
import uvicorn
from factories import random_ohlc

from forecaster.config import DataConfig, ModelConfig, TrainConfig
from forecaster.registry import tracking
from forecaster.run.tracked import RunResult, tracked_training
from service.main import create_app
from service.settings import Settings

MODEL = "svc"
LOOKBACK = 20
HORIZON = 3
TICKERS = ("AAA", "BBB", "CCC")
READY_TIMEOUT_S = 60.0


def make_ohlc(
    tickers: tuple[str, ...] = TICKERS, days: int = 220, end: str = "2023-12-22", seed: int = 0
) -> pd.DataFrame:
    """Random-walk daily bars (long format) ending on `end`, prices rounded to cents."""
    return random_ohlc(tickers, days=days, seed=seed, end=end, base=50.0, decimals=2)


def history_payload(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One ticker's bars as the wire `history` list."""
    return [
        {
            "date": f"{r.date:%Y-%m-%d}",
            "open": float(r.open),
            "high": float(r.high),
            "low": float(r.low),
            "close": float(r.close),
        }
        for r in frame.itertuples()
    ]


def train_tiny(
    frame: pd.DataFrame, source: str, seed: int, register_as: str | None, alias: str | None = None
) -> RunResult:
    """A seconds-long fit of a hidden-8, one-layer LSTM; registered when asked."""
    data_config = DataConfig(lookback=LOOKBACK, horizon=HORIZON, test_fraction=0.0)
    model_config = ModelConfig(arch="lstm", hidden_size=8, num_layers=1, dropout=0.0)
    train_config = TrainConfig(epochs=1, batch_size=64, patience=1, seed=seed, device="cpu", warmup_steps=2)
    return tracked_training(
        frame, source, data_config, model_config, train_config, register_as=register_as, alias=alias
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on a free local port in a thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "uvicorn did not shut down"


def wait_ready(client: httpx.Client, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/ready")
        if response.status_code == 200:
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout}s: {response.status_code} {response.text}")
        time.sleep(0.1)


@dataclass
class Registry:
    """The temporary MLflow store of this session and what was trained into it."""

    root: Path
    uri: str
    data_path: Path
    frame: pd.DataFrame
    run: RunResult

    lookback: int = LOOKBACK
    horizon: int = HORIZON
    model: str = MODEL

    def history(self, ticker: str = "AAA", bars: int = 30) -> list[dict[str, Any]]:
        """The last `bars` bars of a ticker of the data file, as the wire `history` list."""
        return history_payload(self.frame[self.frame["ticker"] == ticker].tail(bars))

    def train(self, seed: int, register_as: str | None, alias: str | None = None) -> RunResult:
        tracking.configure(self.uri)  # a module fixture may call this before the per-test autouse one
        return train_tiny(self.frame, str(self.data_path), seed, register_as, alias)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "model_name": MODEL,
            "tracking_uri": self.uri,
            "poll_interval_s": 0.0,
            "data_source": "file",
            "data_path": str(self.data_path),
            "device": "cpu",
            "max_body_bytes": 100_000,
            "cache_dir": str(self.root / "cache"),
            # no access lines by default: a server thread writes them after the answer, and one
            # written between two tests would reach the terminal (tests that read them set INFO)
            "log_level": "warning",
        }
        values.update(overrides)
        return Settings(**values)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("svc_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    torch.set_num_threads(1)  # two shared cores: no oversubscription
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a dead server fails fast, not after minutes
        mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        mp.chdir(root)
        tracking.configure(uri)
        frame = make_ohlc()
        data_path = root / "bars.csv"
        frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_csv(data_path, index=False)
        run = train_tiny(frame, str(data_path), seed=1, register_as=MODEL, alias="champion")
        assert run.version == "1"
        yield Registry(root, uri, data_path, frame, run)


@pytest.fixture(autouse=True)
def _service_store(registry: Registry) -> None:
    """Point MLflow (process-global) at this session's store, whatever ran before."""
    tracking.configure(registry.uri)


@pytest.fixture(scope="session", name="free_port")
def free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture(scope="session")
def serve_app(
    registry: Registry, serve_built: Callable[..., AbstractContextManager[httpx.Client]]
) -> Callable[..., AbstractContextManager[httpx.Client]]:
    """`with serve_app(**settings) as client:` an app over real HTTP, ready to answer."""

    def run(wait: bool = True, **overrides: Any) -> AbstractContextManager[httpx.Client]:
        return serve_built(create_app(registry.settings(**overrides)), wait=wait)

    return run


@pytest.fixture(scope="session")
def client(serve_app: Callable[..., AbstractContextManager[httpx.Client]]) -> Iterator[httpx.Client]:
    """The default app: model svc@champion, no API key, loaded once for the session."""
    with serve_app() as http:
        yield http


@pytest.fixture(scope="session")
def history(registry: Registry) -> list[dict[str, Any]]:
    """30 bars of AAA ending Friday 2023-12-22 (next NYSE sessions: 12-26, 12-27, 12-28)."""
    bars = registry.history("AAA", 30)
    assert bars[-1]["date"] == "2023-12-22"
    return bars


@pytest.fixture(scope="session")
def baseline(client: httpx.Client, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The default app's answer for `history`, taken once: later answers must equal it."""
    response = client.post("/forecast", json={"history": history})
    assert response.status_code == 200, response.text
    return response.json()


def assert_same_points(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Same steps and dates; prices equal to float tolerance (a batched pass may differ in the last bits)."""
    assert [(p["step"], p["date"]) for p in got] == [(p["step"], p["date"]) for p in expected]
    for key in ("close", "lower", "upper"):
        np.testing.assert_allclose([p[key] for p in got], [p[key] for p in expected], rtol=1e-5, err_msg=key)


def assert_same_forecast(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert {k: v for k, v in got.items() if k != "forecasts"} == {k: v for k, v in expected.items() if k != "forecasts"}
    assert [f["id"] for f in got["forecasts"]] == [f["id"] for f in expected["forecasts"]]
    for mine, theirs in zip(got["forecasts"], expected["forecasts"], strict=True):
        assert_same_points(mine["points"], theirs["points"])


@pytest.fixture(scope="session")
def same_points() -> Callable[[list[dict[str, Any]], list[dict[str, Any]]], None]:
    return assert_same_points


@pytest.fixture(scope="session")
def same_forecast() -> Callable[[dict[str, Any], dict[str, Any]], None]:
    return assert_same_forecast


@pytest.fixture()
def assert_unchanged(
    client: httpx.Client, history: list[dict[str, Any]], baseline: dict[str, Any]
) -> Callable[[], None]:
    """A good request still succeeds with the same forecast (a bad one changed no state)."""

    def check() -> None:
        response = client.post("/forecast", json={"history": history})
        assert response.status_code == 200, response.text
        assert_same_forecast(response.json(), baseline)

    return check


class RegistryProxy:
    """A local TCP port in front of a registry that a test switches between `forward` (pass
    bytes to `target_port`), `hang` (accept, never answer: a stuck server) and `refuse` (accept
    and reset at once: a dead one). Switching away from `forward` cuts the connections open
    through it, as a dying server would. With no target it can only hang or refuse."""

    def __init__(self, target_port: int | None = None, mode: str = "forward") -> None:
        self.target_port = target_port
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, name="registry-proxy", daemon=True).start()

    def uri(self, userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        assert mode in ("forward", "hang", "refuse")
        assert mode != "forward" or self.target_port is not None, "nothing to forward to"
        with self.lock:
            self.mode = mode
            sockets, self.open = self.open, []
        for sock in sockets:
            self._drop(sock)

    def close(self) -> None:
        self.closed = True
        self.set("refuse")
        self.listener.close()

    @staticmethod
    def _drop(sock: socket.socket) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                mode = self.mode
                if mode != "refuse":
                    self.open.append(client)
            if mode == "refuse":
                self._drop(client)
            elif mode == "forward":
                threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        assert self.target_port is not None
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            self._drop(client)
            return
        upstream.settimeout(None)
        with self.lock:
            self.open.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            self._drop(sock)


@pytest.fixture()
def registry_proxy() -> Iterator[Callable[..., RegistryProxy]]:
    """`registry_proxy(target_port=None, mode="forward")`: proxies closed after the test."""
    made: list[RegistryProxy] = []

    def make(target_port: int | None = None, mode: str = "forward") -> RegistryProxy:
        made.append(RegistryProxy(target_port, mode))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


@pytest.fixture(scope="session")
def serve_built(registry: Registry) -> Callable[..., AbstractContextManager[httpx.Client]]:
    """`with serve_built(app) as client:` an app the test built (and patched) over real HTTP."""

    @contextmanager
    def run(app: Any, wait: bool = True) -> Iterator[httpx.Client]:
        try:
            with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
                if wait:
                    wait_ready(client)
                yield client
        finally:
            tracking.configure(registry.uri)  # an app's lifespan points MLflow (process-global) at its URI

    return run


@pytest.fixture(scope="session")
def make_version(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[str, str]]:
    """`make_version(name, damage=None)`: a new version of registered model `name` whose artifact
    is a copy of svc/1 in its own folder, damaged by `damage(bundle_dir) -> expected cause` when
    given (truncated weights, garbled config...); returns (version, that cause)."""
    import shutil

    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=registry.uri, registry_uri=registry.uri)
    source = tmp_path_factory.mktemp("svc_v1")
    good = Path(mlflow.artifacts.download_artifacts("models:/svc/1", dst_path=str(source), tracking_uri=registry.uri))

    def make(name: str, damage: Callable[[Path], str] | None = None) -> tuple[str, str]:
        copy = tmp_path_factory.mktemp("version") / "model"
        shutil.copytree(good, copy)
        cause = damage(copy / "artifacts" / tracking.BUNDLE_ARTIFACT) if damage is not None else ""
        if not client.search_registered_models(f"name='{name}'"):
            client.create_registered_model(name)
        return str(client.create_model_version(name, source=copy.as_uri()).version), cause

    return make
