"""The loaded models, keyed by (name, alias) or (name, version), and the pieces around them: the
registry's calls and health (`registry`), loading and warm-up (`loader`), what failed
(`failures`), the alias poller (`poller`).

The default model is models:/MODEL_NAME@ALIAS, followed; or, with settings' model_uri, that one
fixed reference, loaded once and never followed (`refs.static_key`).

A new version is loaded in the background and swapped in with one dict assignment, so requests
already holding the old entry finish on it and none fail during the swap. A version is installed
only once its warm-up forecast is finite and ordered; otherwise the old one keeps serving and the
refusal shows on /admin/reload, /models, /ready and /metrics. When the registry is unreachable,
the loaded models keep serving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable

from forecaster.errors import ForecasterError, ModelLoadError
from forecaster.registry import tracking
from forecaster.registry.tracking import ModelRef
from service.errors import ServiceUnavailable, public_reason
from service.metrics import ServiceMetrics
from service.models.failures import FailedLoads, NegativeCache
from service.models.loader import LoadedModel, Loader
from service.models.poller import AliasPoller, SyncReport
from service.models.refs import Key, StaticRef, key_of, label, metric_ref, static_key
from service.models.registry import RegistryHealth
from service.settings import Settings


class ModelStore:
    def __init__(
        self, settings: Settings, metrics: ServiceMetrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.registry = RegistryHealth(metrics, settings.registry_timeout_s, clock)
        self.loader = Loader(settings, metrics, self.registry)
        self.failed = FailedLoads(metrics)
        self.remembered = NegativeCache(settings.negative_cache_s, clock)  # clock: tests pass their own
        self.poller = AliasPoller(self)
        self.models: dict[Key, LoadedModel] = {}
        self.locks: dict[Key, asyncio.Lock] = {}  # one load at a time per reference
        self.default_error: str | None = None  # why the default model is not loaded (public words)
        self._retiring: set[asyncio.Task[None]] = set()  # old models' batchers finishing after a swap

    key = staticmethod(key_of)
    label = staticmethod(label)

    @property
    def default_key(self) -> Key:
        if self.settings.model_uri is not None:
            return static_key(self.settings.model_uri)
        return key_of(self.settings.model_name, self.settings.alias, None)

    @property
    def default_name(self) -> str:
        """What answers call the default model: its registered name, or the fixed reference."""
        return self.default_key[0]

    @property
    def default_alias(self) -> str | None:
        """The alias the default model follows; None for a fixed reference."""
        return None if self.settings.model_uri is not None else self.settings.alias

    @property
    def registry_up(self) -> bool | None:
        return self.registry.up

    @property
    def last_refresh(self) -> dt.datetime | None:
        return self.poller.last_refresh

    async def get(
        self, name: str | None = None, alias: str | None = None, version: int | str | None = None
    ) -> LoadedModel:
        """The loaded model for a reference, loading it on first use; no name: settings' model_name
        with `alias` (default settings' alias) or `version`, or the default model when none is given.

        The service's own model (settings' name and alias, or its fixed reference) that cannot be
        had is 503 with Retry-After, whatever the cause: the service is not ready. Any other
        reference raises the library's error: not found (404), cannot be loaded (409), registry down (503)."""
        if name is None and alias is None and version is None:
            key = self.default_key
        elif version is not None:
            key = key_of(name or self.settings.model_name, None, version)
        else:
            key = key_of(name or self.settings.model_name, alias or self.settings.alias, None)
        loaded = self.models.get(key)
        if loaded is not None:
            return loaded
        try:
            return await self.get_or_load(key, remembered=True)
        except ForecasterError as exc:
            if key != self.default_key:
                raise
            raise ServiceUnavailable(f"no model available: {public_reason(exc)}", self.settings.retry_after_s) from exc

    async def get_or_load(self, key: Key, remembered: bool, ref: ModelRef | StaticRef | None = None) -> LoadedModel:
        """The model of `key`, loaded (from `ref` when already resolved) unless it is; a failure
        remembered for a few seconds is raised again without asking the registry when `remembered`."""
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.models:
                return self.models[key]
            if remembered:
                self.remembered.raise_if_remembered(key)
            try:
                loaded = await self.load(key, ref)
            except BaseException as exc:
                if isinstance(exc, ForecasterError):
                    self.remember(key, exc)
                self.locks.pop(key, None)  # unknown references must not accumulate locks
                raise
            self.install(key, loaded)
            return loaded

    async def load(self, key: Key, ref: ModelRef | StaticRef | None = None) -> LoadedModel:
        """Resolve `key` (unless `ref` is given) and load that version; a version that cannot serve
        is noted as the reference's failed version before its ModelLoadError goes on."""
        target = ref if ref is not None else await self.loader.resolve(key)
        try:
            return await self.loader.load(target)
        except ModelLoadError as exc:
            self.failed.add(key, target.version, exc)
            raise

    def remember(self, key: Key, exc: ForecasterError) -> None:
        if key == self.default_key:
            self.default_error = public_reason(exc)
        self.remembered.remember(key, exc)

    def install(self, key: Key, loaded: LoadedModel) -> None:
        old = self.models.get(key)
        self.models[key] = loaded  # atomic swap: new requests see the new model from here on
        # the registered version; 1 (loaded) for a fixed reference without one, so that /ready's
        # count of the workers serving it (service.workers) sees it
        version = float(loaded.ref.version) if loaded.ref.version is not None else 1.0
        self.metrics.model_version.labels(key[0], metric_ref(key)).set(version)
        self.failed.clear(key)
        self.remembered.forget(key)
        if key == self.default_key:
            self.default_error = None
        if old is not None and old is not loaded:
            task = asyncio.get_running_loop().create_task(old.batcher.stop(grace_s=5.0))
            self._retiring.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._retiring.discard)

    def check_registry(self) -> None:
        """Refresh the registry's health in the background when it is older than the registry
        bound, by looking up the default reference (/ready asks; it never waits for the answer). A
        fixed reference is not looked up again: its registry health is that of its one load."""
        if self.settings.model_uri is not None:
            return
        name, alias = self.settings.model_name, self.settings.alias
        self.registry.refresh_if_stale(lambda: tracking.resolve_version(name, alias))

    async def sync(self, force: bool = False) -> SyncReport:
        return await self.poller.sync(force)

    async def poll_forever(self) -> None:
        await self.poller.poll_forever()

    async def close(self) -> None:
        """Stop the batchers; never wait on a registry call (those threads are daemons)."""
        self.poller.closing = True
        self.registry.close()
        for task in self._retiring:
            task.cancel()
        for loaded in self.models.values():
            await loaded.batcher.stop(drain_s=2.0)
        self.loader.close()
