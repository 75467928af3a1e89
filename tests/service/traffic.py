"""Background request traffic for swap tests: threads that send requests back to back until
stopped, bounded in time (and in count where asked), each result recorded under one lock."""

from __future__ import annotations

import threading
import time
from typing import Any


class Traffic:
    """Subclasses write `_run` (one thread's loop: `while self.running(): ...`, appending to
    `self.results` under `self.lock`); this class starts, stops and joins the threads."""

    def __init__(self, threads: int, max_seconds: float, max_requests: int | None = None, join_s: float = 30.0) -> None:
        self.deadline = time.monotonic() + max_seconds
        self.max_requests, self.join_s = max_requests, join_s
        self.results: list[Any] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        raise NotImplementedError

    def running(self) -> bool:
        within = self.max_requests is None or len(self.results) < self.max_requests
        return not self.stop.is_set() and within and time.monotonic() < self.deadline

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.join_s)
