"""Calls to the model registry: each one bounded in time and in number, and the registry's health
as those calls show it (/ready's `registry`, the `forecaster_registry_up` gauge).

Health is the outcome of the latest call *asked*: a failure shows as soon as it happens, and an
answer to a call asked before it (a slow one still in flight when the registry hung) does not hide
it. Evidence older than the registry bound is refreshed by a background probe when /ready asks
(`refresh_if_stale`), so a registry that hangs between two alias polls shows as down within about
one bound of the next /ready, not after a poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from forecaster.errors import ForecasterError, RegistryUnavailableError
from service.errors import RegistryTimeout
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# Registry calls in flight at once. A call stuck in MLflow's HTTP client holds its thread until
# MLflow's own timeout; past this many, new lookups fail at once (503) instead of piling up threads.
MAX_REGISTRY_CALLS = 8


async def call_bounded(
    what: str, timeout_s: float, slots: threading.BoundedSemaphore, fn: Callable[[], T], wait_s: float | None = None
) -> T:
    """`fn()` in a daemon thread, awaited for at most `timeout_s` (then RegistryTimeout), or
    `wait_s` when that is shorter: a pass over several aliases whose lookups share one bound of
    `timeout_s` (/admin/reload), so the message still names that bound.

    A daemon thread, not an executor: the interpreter joins executor threads at exit, so one
    call stuck in MLflow's HTTP retries would hold up shutdown, and a one-thread executor would
    queue every later call behind it. The thread ends on its own when MLflow gives up.
    """
    bound = timeout_s if wait_s is None else min(timeout_s, wait_s)
    if bound <= 0:  # the caller's deadline has passed: no thread started for an answer nobody awaits
        raise RegistryTimeout(f"registry: {what}: no answer within {timeout_s:g} s")
    if not slots.acquire(blocking=False):
        raise RegistryTimeout(f"registry: {what}: too many registry calls in flight; retry later")
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return  # the caller stopped waiting
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            result, error = None, exc
        finally:
            slots.release()
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:
            pass  # the loop has closed: nobody is waiting any more

    threading.Thread(target=run, name=f"registry: {what}"[:60], daemon=True).start()
    # asyncio.wait, not wait_for: on 3.11 wait_for returns the result instead of raising when a
    # cancel lands just as the thread answers, and the cancelled poller then runs on forever.
    try:
        done, _ = await asyncio.wait({future}, timeout=bound)
    finally:
        future.cancel()  # no-op when answered; otherwise the thread's late answer is dropped
    if not done:
        raise RegistryTimeout(f"registry: {what}: no answer within {timeout_s:g} s")
    return future.result()


class RegistryHealth:
    """Every registry call of one store goes through `call`, which bounds it and notes the answer."""

    def __init__(self, metrics: ServiceMetrics, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.timeout_s = timeout_s  # also how old evidence may get before /ready refreshes it
        self.clock = clock
        self.up: bool | None = None  # None until the first call finishes
        self.slots = threading.BoundedSemaphore(MAX_REGISTRY_CALLS)
        self._asked = 0  # calls started so far; each call's number orders its evidence
        self._shown = 0  # the number of the call whose outcome `up` shows
        self._last_asked: float | None = None  # clock() when the latest call started
        self.probe: asyncio.Task[None] | None = None  # the background probe, while one runs

    async def call(self, what: str, timeout_s: float, fn: Callable[[], T], wait_s: float | None = None) -> T:
        """`fn()` bounded (see call_bounded); registry trouble is logged and marks it down, any
        other answer (a model not found, a version that cannot load) marks it up."""
        self._asked += 1
        number, self._last_asked = self._asked, self.clock()
        try:
            result = await call_bounded(what, timeout_s, self.slots, fn, wait_s)
        except RegistryUnavailableError as exc:
            self._note(number, up=False)
            log.warning("%s", exc)  # our message, redacted by tracking
            raise
        except ForecasterError:
            self._note(number, up=True)  # not found / cannot load: the registry did answer
            raise
        self._note(number, up=True)
        return result

    def _note(self, number: int, up: bool) -> None:
        if number < self._shown:
            return  # asked before the call already shown: older evidence
        self._shown = number
        self.up = up
        self.metrics.registry_up.set(1.0 if up else 0.0)

    def refresh_if_stale(self, probe: Callable[[], object]) -> None:
        """Start `probe` (a cheap lookup) in the background when no call was asked within the
        registry bound and none is probing; returns at once (/ready never waits on the registry)."""
        if self.probe is not None and not self.probe.done():
            return
        if self._last_asked is not None and self.clock() - self._last_asked < self.timeout_s:
            return
        self.probe = asyncio.get_running_loop().create_task(self._probe(probe))

    async def _probe(self, probe: Callable[[], object]) -> None:
        try:
            await self.call("probe", self.timeout_s, probe)
        except ForecasterError:
            pass  # noted (and a registry failure logged) by `call`
        except Exception:  # noqa: BLE001 - a background task: nobody else would see it
            log.exception("registry probe failed")

    def close(self) -> None:
        if self.probe is not None:
            self.probe.cancel()
