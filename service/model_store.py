"""Loaded models, keyed by (name, alias) or (name, version); aliases followed by polling.

A new version is loaded in the background and swapped in with one dict assignment, so
requests already holding the old entry finish on it and none fail during the swap. When
the registry is unreachable, the loaded models keep serving.

Every registry call is bounded (`registry_timeout_s`, `load_timeout_s`) and runs in a daemon
thread; a failed lookup or load is answered from memory for `negative_cache_s`; the version that
failed to load and why is kept per reference for /ready, /models, /metrics and /admin/reload.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from forecaster.errors import ForecasterError, ModelLoadError, RegistryUnavailableError
from forecaster.model.predictor import Forecaster
from forecaster.registry import tracking
from forecaster.registry.tracking import ModelRef
from service.batching import MicroBatcher
from service.errors import RegistryTimeout, ServiceUnavailable, public_reason
from service.metrics import ServiceMetrics
from service.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (name, "alias" | "version", value)
T = TypeVar("T")

# Registry calls in flight at once. A call stuck in MLflow's HTTP client holds its thread until
# MLflow's own timeout; past this many, new lookups fail at once (503) instead of piling up threads.
MAX_REGISTRY_CALLS = 8
NEGATIVE_CACHE_SIZE = 1024  # remembered failures, so unknown names cannot grow memory without bound


def _set_torch_threads(threads: int) -> None:
    """Intra-op threads of the forward thread. The LSTM runs one small matmul per time step, so
    with several OpenMP threads every step ends in a barrier: on a small or shared CPU that costs
    far more (threads spinning or waiting to be scheduled) than it saves, and takes cores from
    the event loop that parses requests."""
    if threads > 0:
        torch.set_num_threads(threads)


@dataclass
class LoadedModel:
    forecaster: Forecaster
    ref: ModelRef
    batcher: MicroBatcher
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class LoadFailure:
    """A reference's version that could not be loaded, and why (words safe to show anyone)."""

    label: str
    version: str | None
    reason: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass
class SyncReport:
    """What one pass over the followed aliases did: swaps, failed versions, registry trouble."""

    changes: list[str] = field(default_factory=list)
    failed: list[LoadFailure] = field(default_factory=list)
    unavailable: str | None = None


async def call_bounded(what: str, timeout_s: float, slots: threading.BoundedSemaphore, fn: Callable[[], T]) -> T:
    """`fn()` in a daemon thread, awaited for at most `timeout_s` (then RegistryTimeout).

    A daemon thread, not an executor: the interpreter joins executor threads at exit, so one
    call stuck in MLflow's HTTP retries would hold up shutdown, and a one-thread executor would
    queue every later call behind it. The thread ends on its own when MLflow gives up.
    """
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
        done, _ = await asyncio.wait({future}, timeout=timeout_s)
    finally:
        future.cancel()  # no-op when answered; otherwise the thread's late answer is dropped
    if not done:
        raise RegistryTimeout(f"registry: {what}: no answer within {timeout_s:g} s")
    return future.result()


class ModelStore:
    def __init__(
        self, settings: Settings, metrics: ServiceMetrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock  # for the negative cache; tests pass their own
        self.models: dict[Key, LoadedModel] = {}
        self.locks: dict[Key, asyncio.Lock] = {}
        self.failures: dict[Key, LoadFailure] = {}  # last version that failed to load, per reference
        self.negative: dict[Key, tuple[float, type[ForecasterError], str]] = {}  # expiry, error to raise again
        self.default_error: str | None = None  # why the default model is not loaded (public words)
        self.registry_up: bool | None = None  # None until the first call
        self.last_refresh: dt.datetime | None = None
        self._slots = threading.BoundedSemaphore(MAX_REGISTRY_CALLS)
        self._sync_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()  # old models' batchers finishing after a swap
        self.closing = False  # set by close(): the poller ends even if a cancel went astray
        self.predict_executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="forward",
            initializer=_set_torch_threads,
            initargs=(settings.torch_threads,),
        )

    @staticmethod
    def key(name: str, alias: str | None, version: int | str | None) -> Key:
        return (name, "version", str(version)) if version is not None else (name, "alias", alias or "champion")

    @staticmethod
    def label(key: Key) -> str:
        name, kind, value = key
        return f"{name}@{value}" if kind == "alias" else f"{name}/{value}"

    @property
    def default_key(self) -> Key:
        return self.key(self.settings.model_name, self.settings.alias, None)

    async def get(self, name: str, alias: str | None = None, version: int | str | None = None) -> LoadedModel:
        """The loaded model for a reference, loading it on first use.

        The service's own model (settings' name and alias) that cannot be had is 503 with
        Retry-After, whatever the cause: the service is not ready. Any other reference raises
        the library's error: not found (404), cannot be loaded (409), registry down (503)."""
        key = self.key(name, alias, version)
        loaded = self.models.get(key)
        if loaded is not None:
            return loaded
        try:
            return await self._get_or_load(key, remembered=True)
        except ForecasterError as exc:
            if key != self.default_key:
                raise
            raise ServiceUnavailable(f"no model available: {public_reason(exc)}", self.settings.retry_after_s) from exc

    async def _get_or_load(self, key: Key, remembered: bool) -> LoadedModel:
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.models:
                return self.models[key]
            if remembered:
                self._raise_remembered(key)
            try:
                loaded = await self._load(key)
            except BaseException as exc:
                if isinstance(exc, ForecasterError):
                    self._remember(key, exc)
                self.locks.pop(key, None)  # unknown references must not accumulate locks
                raise
            self._install(key, loaded)
            return loaded

    def _raise_remembered(self, key: Key) -> None:
        entry = self.negative.get(key)
        if entry is not None and entry[0] > self.clock():
            raise entry[1](entry[2])  # a new exception each time: re-raising one object grows its traceback

    def _remember(self, key: Key, exc: ForecasterError) -> None:
        if key == self.default_key:
            self.default_error = public_reason(exc)
        if self.settings.negative_cache_s <= 0:
            return
        now = self.clock()
        if len(self.negative) >= NEGATIVE_CACHE_SIZE:
            self.negative = {k: v for k, v in self.negative.items() if v[0] > now}
        if len(self.negative) < NEGATIVE_CACHE_SIZE:
            self.negative[key] = (now + self.settings.negative_cache_s, type(exc), str(exc))

    async def _call(self, what: str, timeout_s: float, fn: Callable[[], T]) -> T:
        """A registry call, bounded; notes whether the registry answered."""
        try:
            result = await call_bounded(what, timeout_s, self._slots, fn)
        except RegistryUnavailableError as exc:
            self._registry_state(False)
            log.warning("%s", exc)  # our message, redacted by tracking
            raise
        except ForecasterError:
            self._registry_state(True)  # not found / cannot load: the registry did answer
            raise
        self._registry_state(True)
        return result

    def _registry_state(self, up: bool) -> None:
        self.registry_up = up
        self.metrics.registry_up.set(1.0 if up else 0.0)

    async def _resolve(self, key: Key) -> ModelRef:
        name, kind, value = key
        alias, version = (value, None) if kind == "alias" else (None, value)
        return await self._call(
            f"resolve {self.label(key)}",
            self.settings.registry_timeout_s,
            lambda: tracking.resolve_version(name, alias, version),
        )

    async def _load(self, key: Key, ref: ModelRef | None = None) -> LoadedModel:
        target = ref if ref is not None else await self._resolve(key)
        what = f"model '{target.name}' version {target.version}"
        try:
            forecaster, resolved = await self._call(
                f"load {what}",
                self.settings.load_timeout_s,
                lambda: tracking.load_forecaster(device=self.settings.device, ref=target),
            )
            try:
                await asyncio.get_running_loop().run_in_executor(self.predict_executor, self._warm_up, forecaster)
            except Exception as exc:  # noqa: BLE001 - a version that cannot forecast is a failed load
                raise ModelLoadError(f"{what} cannot be loaded: warm-up forecast failed: {exc}") from exc
        except ModelLoadError as exc:
            self._failed(key, target.version, exc)
            raise
        batcher = MicroBatcher(
            self._predict_fn(forecaster),
            self.settings.batch_wait_ms / 1000.0,
            self.settings.max_batch_size,
            self.predict_executor,
            self.metrics.batch_size.observe,
        )
        log.info("loaded %s version %s on %s", resolved.name, resolved.version, forecaster.device)
        return LoadedModel(forecaster, resolved, batcher)

    def _failed(self, key: Key, version: str, exc: ModelLoadError) -> None:
        name, kind, value = key
        ref = value if kind == "alias" else "version"
        self.failures[key] = LoadFailure(self.label(key), version, public_reason(exc))
        self.metrics.load_failures.labels(name, ref).inc()
        self.metrics.failed_version.labels(name, ref).set(float(version))
        log.error("%s: version %s failed to load: %s", self.label(key), version, exc)

    @staticmethod
    def _warm_up(forecaster: Forecaster) -> None:
        """One forward pass before serving, so the first request does not pay for it."""
        window = np.ones((1, forecaster.lookback, 4), dtype=np.float32)
        forecaster.predict(window)

    @staticmethod
    def _predict_fn(forecaster: Forecaster) -> Callable[[np.ndarray], np.ndarray]:
        return lambda X: forecaster.predict(X).quantiles

    def _install(self, key: Key, loaded: LoadedModel) -> None:
        old = self.models.get(key)
        self.models[key] = loaded  # atomic swap: new requests see the new model from here on
        name, kind, value = key
        ref = value if kind == "alias" else "version"
        self.metrics.model_version.labels(name, ref).set(float(loaded.ref.version))
        self._clear_failure(key)
        self.negative.pop(key, None)
        if key == self.default_key:
            self.default_error = None
        if old is not None and old is not loaded:
            task = asyncio.get_running_loop().create_task(old.batcher.stop(grace_s=5.0))
            self._retiring.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._retiring.discard)

    def _clear_failure(self, key: Key) -> None:
        if self.failures.pop(key, None) is not None:
            name, kind, value = key
            self.metrics.failed_version.labels(name, value if kind == "alias" else "version").set(0.0)

    async def sync(self, force: bool = False) -> SyncReport:
        """Load the default model if missing, re-resolve every followed alias and swap in the
        versions that moved. A version that failed to load is tried again only when the alias
        moves on or `force` is set (an operator's /admin/reload), not on every poll."""
        async with self._sync_lock:
            report = SyncReport()
            fresh: set[Key] = set()
            if self.default_key not in self.models:
                try:
                    await self._get_or_load(self.default_key, remembered=False)
                    report.changes.append(f"{self.label(self.default_key)}: loaded")
                    fresh.add(self.default_key)
                except ForecasterError as exc:
                    self._note(report, self.default_key, exc)
            for key, loaded in list(self.models.items()):
                if key[1] == "alias" and key not in fresh:
                    await self._follow(key, loaded, force, report)
            if report.unavailable is None:
                self.last_refresh = dt.datetime.now(dt.UTC)
                self.metrics.last_refresh.set(self.last_refresh.timestamp())
            return report

    async def _follow(self, key: Key, loaded: LoadedModel, force: bool, report: SyncReport) -> None:
        label = self.label(key)
        try:
            ref = await self._resolve(key)
        except ForecasterError as exc:
            log.warning("keeping %s version %s: %s", label, loaded.ref.version, exc)
            self._note(report, key, exc)
            return
        if ref.version == loaded.ref.version:
            self._clear_failure(key)  # the alias is back on the loaded version
            return
        known = self.failures.get(key)
        if known is not None and known.version == ref.version and not force:
            report.failed.append(known)
            return
        try:
            fresh = await self._load(key, ref)
        except ForecasterError as exc:
            log.warning("keeping %s version %s", label, loaded.ref.version)
            self._note(report, key, exc, ref.version)
            return
        self._install(key, fresh)
        report.changes.append(f"{label}: {loaded.ref.version} -> {ref.version}")
        log.info("swapped %s: version %s -> %s", label, loaded.ref.version, ref.version)

    def _note(self, report: SyncReport, key: Key, exc: ForecasterError, version: str | None = None) -> None:
        if isinstance(exc, RegistryUnavailableError):
            report.unavailable = public_reason(exc)
        else:
            report.failed.append(self.failures.get(key) or LoadFailure(self.label(key), version, public_reason(exc)))

    async def poll_forever(self) -> None:
        """Load the default model when possible, then follow the aliases every poll interval,
        until cancelled or the store closes."""
        interval = self.settings.poll_interval_s
        while not self.closing:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the poller must outlive anything a pass runs into
                log.exception("model poll failed")
            if interval <= 0 or self.closing:
                return
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Stop the batchers; never wait on a registry call (those threads are daemons)."""
        self.closing = True
        for task in self._retiring:
            task.cancel()
        for loaded in self.models.values():
            await loaded.batcher.stop(drain_s=2.0)
        self.predict_executor.shutdown(wait=False, cancel_futures=True)
