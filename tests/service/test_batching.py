"""The micro-batcher: requests that arrive together share one forward pass; a lone request does
not wait for company. Driven by a forward pass the test holds and releases, never by timing: the
batch wait is set far beyond any test bound, so a solo request that waited would fail the bound."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from service.batching import MicroBatcher

NEVER_S = 600.0  # the batch wait: a request that spends it fails the test
BOUND_S = 30.0  # what a request that must not wait is given


def windows(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 2, 4), value, dtype=np.float32)


def run(scenario) -> None:  # type: ignore[no-untyped-def]
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        asyncio.run(scenario(executor))
    finally:
        executor.shutdown(wait=False)


def test_a_lone_request_runs_without_waiting_for_company():
    passes: list[int] = []

    async def scenario(executor: ThreadPoolExecutor) -> None:
        batcher = MicroBatcher(lambda x: x[:, :1, :1], NEVER_S, 64, executor, on_batch=passes.append)
        for value in (1.0, 2.0, 3.0):  # one after another, as a single client sends them
            out = await asyncio.wait_for(batcher.submit(windows(value)), BOUND_S)
            assert out.tolist() == [[[value]]]
        await batcher.stop(drain_s=1.0)

    run(scenario)
    assert passes == [1, 1, 1]


def test_requests_queued_during_a_forward_pass_share_the_next_one():
    gate = threading.Event()
    passes: list[int] = []

    def predict(x: np.ndarray) -> np.ndarray:
        if x[0, 0, 0] == 0:  # the first pass is held until the others are queued
            gate.wait(BOUND_S)
        return x[:, :1, :1]

    async def scenario(executor: ThreadPoolExecutor) -> None:
        # max_batch 2 + 3: the second pass is full as soon as both queued requests are taken,
        # so it never spends the (600 s) wait.
        batcher = MicroBatcher(predict, NEVER_S, 5, executor, on_batch=passes.append)
        first = asyncio.create_task(batcher.submit(windows(0.0)))
        while not batcher.busy:
            await asyncio.sleep(0.001)
        later = [asyncio.create_task(batcher.submit(windows(v, n))) for v, n in ((5.0, 2), (7.0, 3))]
        while batcher.queue.qsize() < 2:
            await asyncio.sleep(0.001)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *later), BOUND_S)
        assert [r[:, 0, 0].tolist() for r in results] == [[0.0], [5.0, 5.0], [7.0, 7.0, 7.0]]
        assert batcher.together  # the next request will wait for company again
        await batcher.stop(drain_s=1.0)

    run(scenario)
    assert passes == [1, 5]
