"""Loaded models, keyed by (name, alias) or (name, version); aliases followed by polling.

A new version is loaded in the background and swapped in with one dict assignment, so
requests already holding the old entry finish on it and none fail during the swap. When
the registry is unreachable, the loaded models keep serving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from forecaster import tracking
from forecaster.errors import ModelNotFoundError, RegistryUnavailableError
from forecaster.predict import Forecaster
from forecaster.tracking import ModelRef
from service.batching import MicroBatcher
from service.settings import Settings

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (name, "alias" | "version", value)


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


class ModelStore:
    def __init__(
        self,
        settings: Settings,
        on_batch: Callable[[int], None] | None = None,
        on_swap: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self.settings = settings
        self.models: dict[Key, LoadedModel] = {}
        self.locks: dict[Key, asyncio.Lock] = {}
        self.load_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self.predict_executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="forward",
            initializer=_set_torch_threads,
            initargs=(settings.torch_threads,),
        )
        self.on_batch = on_batch
        self.on_swap = on_swap
        self.last_error: str | None = None

    @staticmethod
    def key(name: str, alias: str | None, version: int | str | None) -> Key:
        return (name, "version", str(version)) if version is not None else (name, "alias", alias or "champion")

    async def get(self, name: str, alias: str | None = None, version: int | str | None = None) -> LoadedModel:
        """The loaded model for a reference, loading it on first use."""
        key = self.key(name, alias, version)
        loaded = self.models.get(key)
        if loaded is not None:
            return loaded
        lock = self.locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.models:
                return self.models[key]
            try:
                loaded = await self._load(key)
            except Exception:
                self.locks.pop(key, None)  # unknown references must not accumulate locks
                raise
            self._install(key, loaded)
            return loaded

    async def _load(self, key: Key, ref: ModelRef | None = None) -> LoadedModel:
        name, kind, value = key
        loop = asyncio.get_running_loop()
        if ref is None:
            ref = await loop.run_in_executor(
                self.load_executor,
                tracking.resolve_version,
                name,
                value if kind == "alias" else None,
                value if kind == "version" else None,
            )
        resolved: ModelRef = ref
        forecaster, resolved = await loop.run_in_executor(
            self.load_executor, lambda: tracking.load_forecaster(device=self.settings.device, ref=resolved)
        )
        await loop.run_in_executor(self.predict_executor, self._warm_up, forecaster)
        batcher = MicroBatcher(
            self._predict_fn(forecaster),
            self.settings.batch_wait_ms / 1000.0,
            self.settings.max_batch_size,
            self.predict_executor,
            self.on_batch,
        )
        log.info("loaded %s version %s on %s", name, resolved.version, forecaster.device)
        return LoadedModel(forecaster, resolved, batcher)

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
        if self.on_swap:
            self.on_swap(loaded)
        if old is not None and old is not loaded:
            asyncio.get_running_loop().create_task(old.batcher.stop(grace_s=5.0))

    async def refresh(self) -> list[str]:
        """Re-resolve every alias now; load and swap in versions that moved. Returns changes."""
        changes = []
        for key, loaded in list(self.models.items()):
            name, kind, alias = key
            if kind != "alias":
                continue
            loop = asyncio.get_running_loop()
            try:
                ref = await loop.run_in_executor(self.load_executor, tracking.resolve_version, name, alias, None)
            except (ModelNotFoundError, RegistryUnavailableError) as exc:
                self.last_error = str(exc)
                log.warning("keeping %s@%s version %s: %s", name, alias, loaded.ref.version, exc)
                continue
            if ref.version == loaded.ref.version:
                continue
            try:
                fresh = await self._load(key, ref)
            except Exception as exc:  # noqa: BLE001 - a failed load keeps the old model serving
                self.last_error = str(exc)
                log.error("could not load %s version %s, keeping %s: %s", name, ref.version, loaded.ref.version, exc)
                continue
            self._install(key, fresh)
            changes.append(f"{name}@{alias}: {loaded.ref.version} -> {ref.version}")
            log.info("swapped %s@%s: version %s -> %s", name, alias, loaded.ref.version, ref.version)
        return changes

    async def poll_forever(self, default: tuple[str, str]) -> None:
        """Load the default model when possible, then follow its alias."""
        interval = self.settings.poll_interval_s
        while True:
            try:
                if self.key(default[0], default[1], None) not in self.models:
                    await self.get(default[0], default[1])
                else:
                    await self.refresh()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the poller must outlive registry hiccups
                self.last_error = str(exc)
                log.warning("model poll: %s", exc)
            if interval <= 0:
                return
            await asyncio.sleep(interval)

    async def close(self) -> None:
        for loaded in self.models.values():
            await loaded.batcher.stop()
        self.load_executor.shutdown(wait=False)
        self.predict_executor.shutdown(wait=False)
