"""`forecaster serve --workers N` is ready only when every worker has loaded the default model:
each worker's /ready reads the others' `forecaster_model_version` gauges from the shared
Prometheus multiprocess folder (live workers only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from service.routes import health
from service.workers import workers_serving

GAUGE, HELP = "forecaster_model_version", "Loaded model version"


def write_gauge(folder: Path, pid: int, name: str, ref: str, version: float) -> None:
    """A live-mode gauge file as prometheus_client's multiprocess mode writes it for process `pid`."""
    values = MmapedDict(str(folder / f"gauge_liveall_{pid}.db"))
    try:
        values.write_value(mmap_key(GAUGE, GAUGE, ["name", "ref"], [name, ref], HELP), version, 0.0)
    finally:
        values.close()


@pytest.fixture()
def other_worker() -> Iterator[int]:
    """The pid of a live process that is not this one (a second worker, as far as the files say)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait(10)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(10)
    return process.pid


def test_workers_serving_counts_live_workers_that_loaded_that_reference(tmp_path: Path, other_worker: int) -> None:
    write_gauge(tmp_path, os.getpid(), "m", "champion", 3.0)
    write_gauge(tmp_path, other_worker, "m", "champion", 3.0)
    write_gauge(tmp_path, dead_pid(), "m", "champion", 3.0)  # a worker that died: not serving
    assert workers_serving(str(tmp_path), "m", "champion") == {os.getpid(), other_worker}
    assert workers_serving(str(tmp_path), "m", "challenger") == set()
    assert workers_serving(str(tmp_path), "other", "champion") == set()


def test_ready_is_503_until_every_worker_has_loaded_the_model(
    serve_app: Callable[..., AbstractContextManager[httpx.Client]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    loaded: set[int] = {1}
    seen: list[tuple[str, str, str]] = []

    def serving(folder: str, name: str, ref: str) -> set[int]:
        seen.append((folder, name, ref))
        return loaded

    monkeypatch.setattr(health, "multiprocess_dir", lambda: str(tmp_path))
    monkeypatch.setattr(health, "workers_serving", serving)
    with serve_app(wait=False, workers=2) as client:
        deadline = time.monotonic() + 60
        while "workers have loaded it" not in (waiting := client.get("/ready")).text:  # this worker loads first
            assert time.monotonic() < deadline, waiting.text
            time.sleep(0.1)
        loaded.add(2)
        ready = client.get("/ready")

    assert waiting.status_code == 503 and "1 of 2 workers have loaded it" in waiting.json()["detail"]
    assert waiting.headers["retry-after"]
    assert ready.status_code == 200, ready.text
    name, ref = seen[0][1:]
    assert seen[0][0] == str(tmp_path) and ref == "champion" and name


def test_one_process_does_not_look_for_workers(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(*args: Any) -> set[int]:
        raise AssertionError("a single process asked for workers")

    monkeypatch.setattr(health, "multiprocess_dir", lambda: str(tmp_path))
    monkeypatch.setattr(health, "workers_serving", refuse)
    assert client.get("/ready").status_code == 200
