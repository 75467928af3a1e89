"""Following aliases: one pass (`sync`) loads the default model if missing, re-resolves every
followed alias and swaps in the versions that moved; the poller runs a pass every poll interval,
/admin/reload runs one at once (`force`: versions that failed before are tried again).

A pass waits on the registry for at most `registry_timeout_s` in all: the wait for a pass already
running (the poll) and every alias lookup share that one bound, the lookups run side by side.
Loading a version that moved is bounded by `load_timeout_s` each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from forecaster.errors import ForecasterError, RegistryUnavailableError
from forecaster.registry.tracking import ModelRef
from service.errors import public_reason
from service.models.failures import LoadFailure
from service.models.refs import Key, StaticRef, is_alias, label

if TYPE_CHECKING:
    from service.models.store import ModelStore

log = logging.getLogger(__name__)

# Alias lookups of one pass in flight at once: below the registry's own limit of calls in flight,
# so a pass never fills it and requests that need a lookup still get one.
PASS_LOOKUPS = 4


@dataclass
class SyncReport:
    """What one pass over the followed aliases did: swaps, failed versions, registry trouble."""

    changes: list[str] = field(default_factory=list)
    failed: list[LoadFailure] = field(default_factory=list)
    unavailable: str | None = None


class AliasPoller:
    """Runs passes over `store`'s followed aliases, one at a time."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.settings = store.settings
        self.last_refresh: dt.datetime | None = None  # when every followed alias last resolved
        self.closing = False  # set by the store's close(): the poller ends even if a cancel went astray
        self._lock = asyncio.Lock()
        self._doing = "starting"  # what the pass running now is at, for a pass that waits on it

    async def sync(self, force: bool = False) -> SyncReport:
        """One pass. A version that failed to load is tried again only when the alias moves on or
        `force` is set (an operator's /admin/reload), not on every poll."""
        budget = self.settings.registry_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        report = SyncReport()
        try:
            async with asyncio.timeout(budget):
                await self._lock.acquire()
        except TimeoutError:
            report.unavailable = (
                f"registry: the pass over the aliases already running is still at '{self._doing}' "
                f"after {budget:g} s; retry later"
            )
            return report
        try:
            await self._pass(force, deadline, report)
        finally:
            self._doing = "idle"
            self._lock.release()
        if report.unavailable is None:
            self.last_refresh = dt.datetime.now(dt.UTC)
            self.store.metrics.last_refresh.set(self.last_refresh.timestamp())
        return report

    async def _pass(self, force: bool, deadline: float, report: SyncReport) -> None:
        store = self.store
        default = store.default_key
        followed = [key for key in store.models if is_alias(key)]
        keys = followed if default in store.models else [default, *followed]
        self._doing = "resolve the followed aliases"
        refs = await self._resolve_all(keys, deadline)
        for key, ref in zip(keys, refs, strict=True):
            if isinstance(ref, ForecasterError):
                if key not in store.models:
                    store.remember(key, ref)
                else:
                    log.warning("keeping %s version %s: %s", label(key), store.models[key].ref.version, ref)
                self._note(report, key, ref)
            elif isinstance(ref, BaseException):
                raise ref  # a bug: the poller logs it, /admin/reload answers 500
            elif key not in store.models:
                await self._first_load(key, ref, report)
            else:
                await self._follow(key, ref, force, report)

    async def _resolve_all(self, keys: Iterable[Key], deadline: float) -> list[ModelRef | StaticRef | BaseException]:
        loop = asyncio.get_running_loop()
        lanes = asyncio.Semaphore(PASS_LOOKUPS)

        async def resolve(key: Key) -> ModelRef | StaticRef:
            async with lanes:
                return await self.store.loader.resolve(key, wait_s=deadline - loop.time())

        return await asyncio.gather(*(resolve(key) for key in keys), return_exceptions=True)

    async def _first_load(self, key: Key, ref: ModelRef | StaticRef, report: SyncReport) -> None:
        self._doing = f"load {label(key)} version {ref.version}"
        try:
            await self.store.get_or_load(key, remembered=False, ref=ref)
        except ForecasterError as exc:
            self._note(report, key, exc, ref.version)
            return
        report.changes.append(f"{label(key)}: loaded")

    async def _follow(self, key: Key, ref: ModelRef | StaticRef, force: bool, report: SyncReport) -> None:
        store = self.store
        loaded = store.models[key]
        if ref.version == loaded.ref.version:
            store.failed.clear(key)  # the alias is back on the loaded version
            return
        known = store.failed.get(key)
        if known is not None and known.version == ref.version and not force:
            report.failed.append(known)
            return
        self._doing = f"load {label(key)} version {ref.version}"
        try:
            fresh = await store.load(key, ref)
        except ForecasterError as exc:
            log.warning("keeping %s version %s", label(key), loaded.ref.version)
            self._note(report, key, exc, ref.version)
            return
        store.install(key, fresh)
        report.changes.append(f"{label(key)}: {loaded.ref.version} -> {ref.version}")
        log.info("swapped %s: version %s -> %s", label(key), loaded.ref.version, ref.version)

    def _note(self, report: SyncReport, key: Key, exc: ForecasterError, version: str | None = None) -> None:
        if isinstance(exc, RegistryUnavailableError):
            report.unavailable = public_reason(exc)
        else:
            report.failed.append(self.store.failed.get(key) or LoadFailure(label(key), version, public_reason(exc)))

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
