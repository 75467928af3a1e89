"""Coalesce concurrent requests into one batched forward pass.

Each request hands over its windows X[n,T,4] and awaits its slice of the result. A single
worker per model takes whatever is queued, waits up to `wait_s` for more (up to
`max_batch` windows), runs one forward pass in a thread and hands back the slices.

The wait is spent only while requests arrive together: when the previous forward pass served a
single request and nothing else is queued, a request runs at once (a lone client never pays
`wait_s` for company that does not come). Under concurrency, requests queue up during a forward
pass, the next pass takes more than one, and the wait is spent again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Job:
    windows: np.ndarray
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        wait_s: float,
        max_batch: int,
        executor: ThreadPoolExecutor,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.predict = predict
        self.wait_s = wait_s
        self.max_batch = max_batch
        self.executor = executor
        self.on_batch = on_batch
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.busy = False
        self.stopped = False
        self.together = False  # did the last forward pass serve more than one request?

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace_s: float = 0.0, drain_s: float = 5.0) -> None:
        """After `grace_s` (requests already holding this model may still submit), finish what
        is queued or in a forward pass (for at most `drain_s`), then stop the worker. Bounded on
        purpose: shutdown must never wait on a worker forever."""
        await asyncio.sleep(grace_s)
        self.stopped = True  # from here on, a late request runs its own forward pass (submit)
        task, self.task = self.task, None
        if task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_s
        while (not self.queue.empty() or self.busy) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        task.cancel()
        # asyncio.wait, not `await task`: the task's CancelledError stays out of this coroutine,
        # and a worker stuck in a forward pass cannot hold the stop up.
        await asyncio.wait({task}, timeout=1.0)
        left = [self.queue.get_nowait() for _ in range(self.queue.qsize())]
        _fail(left, RuntimeError("the model was unloaded before its forward pass"))  # answered, never left waiting

    async def submit(self, windows: np.ndarray) -> np.ndarray:
        if self.stopped:  # a request that took this model just before a swap: answer it, unbatched
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.predict, windows)
        self.start()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(windows, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0].windows)
            wait_s = self.wait_s if self.together or not self.queue.empty() else 0.0
            deadline = loop.time() + wait_s
            while size < self.max_batch:
                if self.queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    # Sleep out the window, then take what came. Not wait_for(queue.get()): on 3.11
                    # it can swallow a cancel that lands as the get completes, and stop() would
                    # then never end this worker.
                    await asyncio.sleep(remaining)
                    continue
                job = self.queue.get_nowait()
                jobs.append(job)
                size += len(job.windows)
            self.together = len(jobs) > 1
            self.busy = True
            try:
                await self._forward(loop, jobs)
            finally:
                self.busy = False

    async def _forward(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job]) -> None:
        batch = np.concatenate([job.windows for job in jobs]) if len(jobs) > 1 else jobs[0].windows
        if self.on_batch:
            self.on_batch(len(batch))
        try:
            result = await loop.run_in_executor(self.executor, self.predict, batch)
        except asyncio.CancelledError:  # stopped mid-pass: its requests get an answer, not a hang
            _fail(jobs, RuntimeError("the model was unloaded during its forward pass"))
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request, never swallowed
            _fail(jobs, exc)
            return
        offset = 0
        for job in jobs:
            n = len(job.windows)
            if not job.future.done():
                job.future.set_result(result[offset : offset + n])
            offset += n


def _fail(jobs: list[_Job], error: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)
