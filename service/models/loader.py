"""Loading one model version: resolve the reference, download and build it (both bounded registry
calls), warm it up and check its forecast (`warmup`), and give it a micro-batcher on the one
forward thread. A loaded model's answers are checked again on every request: never a NaN on the wire.

A fixed reference (settings' model_uri) that names a registered version or alias resolves to that
version once; any other (a logged model, a run's model, a folder) loads as a `StaticRef`, a
folder without asking the registry (bounded all the same).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from forecaster.errors import ModelLoadError
from forecaster.model.predictor import Forecaster
from forecaster.registry import tracking
from forecaster.registry.tracking import ModelRef, parse_reference
from service.batching import MicroBatcher
from service.metrics import ServiceMetrics
from service.models.refs import Key, StaticRef, label
from service.models.registry import RegistryHealth, call_bounded
from service.models.warmup import warm_up
from service.settings import Settings

log = logging.getLogger(__name__)


class UnservableForecast(ModelLoadError):
    """A loaded version answered non-finite numbers for a request: answered as the 409 of a version
    that cannot serve (asking again will not help until the alias moves), never as nulls."""


@dataclass
class LoadedModel:
    forecaster: Forecaster
    ref: ModelRef | StaticRef
    batcher: MicroBatcher
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    async def forecast(self, windows: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """windows[N,T,4] -> quantiles[N,H,Q] prices, batched with other requests; every number
        finite, else UnservableForecast naming the first series at fault (`names`, one per window)."""
        quantiles = await self.batcher.submit(windows)
        finite = np.isfinite(quantiles).reshape(len(quantiles), -1).all(axis=1)
        if not finite.all():
            where = names[int(np.argmin(finite))] or "the series"
            raise UnservableForecast(
                f"{describe(self.ref)} cannot forecast {where}: it answered non-finite values (NaN or inf)"
            )
        return quantiles


def describe(ref: ModelRef | StaticRef) -> str:
    """How messages name a loaded model: ``model 'prices' version 3``, or the fixed reference."""
    return f"model '{ref.name}'" + (f" version {ref.version}" if ref.version is not None else "")


def _set_torch_threads(threads: int) -> None:
    """Intra-op threads of the forward thread. The LSTM runs one small matmul per time step, so
    with several OpenMP threads every step ends in a barrier: on a small or shared CPU that costs
    far more (threads spinning or waiting to be scheduled) than it saves, and takes cores from
    the event loop that parses requests."""
    if threads > 0:
        torch.set_num_threads(threads)


class Loader:
    """Resolves references and loads versions through `registry`; owns the forward thread that
    every loaded model's batcher (and its warm-up) runs on."""

    def __init__(self, settings: Settings, metrics: ServiceMetrics, registry: RegistryHealth) -> None:
        self.settings = settings
        self.metrics = metrics
        self.registry = registry
        self.predict_executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="forward",
            initializer=_set_torch_threads,
            initargs=(settings.torch_threads,),
        )

    async def resolve(self, key: Key, wait_s: float | None = None) -> ModelRef | StaticRef:
        name, kind, value = key
        if kind == "uri":
            reference = parse_reference(value)
            if reference.kind not in ("alias", "version") or reference.name is None:
                return StaticRef(name, value)  # nothing to resolve: loaded as it is
            name, alias, version = reference.name, reference.alias, reference.version
        else:
            alias, version = (value, None) if kind == "alias" else (None, value)
        return await self.registry.call(
            f"resolve {label(key)}",
            self.settings.registry_timeout_s,
            lambda: tracking.resolve_version(name, alias, version),
            wait_s,
        )

    async def load(self, target: ModelRef | StaticRef) -> LoadedModel:
        """The version `target`, loaded and warmed up; ModelLoadError when it cannot serve (broken
        artifact, failed or non-finite or unordered warm-up forecast)."""
        what = describe(target)
        resolved: ModelRef | StaticRef
        if isinstance(target, StaticRef):
            forecaster, resolved = await self._load_static(target)
        else:
            forecaster, resolved = await self.registry.call(
                f"load {what}",
                self.settings.load_timeout_s,
                lambda: tracking.load_forecaster(device=self.settings.device, ref=target),
            )
        try:
            problem = await asyncio.get_running_loop().run_in_executor(self.predict_executor, warm_up, forecaster)
        except Exception as exc:  # noqa: BLE001 - a version that cannot forecast is a failed load
            raise ModelLoadError(f"{what} cannot be loaded: warm-up forecast failed: {exc}") from exc
        if problem is not None:
            raise ModelLoadError(f"{what} cannot be loaded: its warm-up forecast has {problem}")
        batcher = MicroBatcher(
            self._predict_fn(forecaster),
            self.settings.batch_wait_ms / 1000.0,
            self.settings.max_batch_size,
            self.predict_executor,
            self.metrics.batch_size.observe,
        )
        log.info("loaded %s on %s", describe(resolved), forecaster.device)
        return LoadedModel(forecaster, resolved, batcher)

    async def _load_static(self, target: StaticRef) -> tuple[Forecaster, StaticRef]:
        """A logged model or a run's model through the registry (its health noted); a folder read
        here, bounded by load_timeout_s like any load, without touching the registry's health."""

        def load() -> tuple[Forecaster, StaticRef]:
            forecaster, source = tracking.load_forecaster(target.uri, device=self.settings.device)
            return forecaster, StaticRef(target.name, target.uri, run_id=source.run_id)

        what = f"load {describe(target)}"
        if parse_reference(target.uri).kind == "path":
            return await call_bounded(what, self.settings.load_timeout_s, self.registry.slots, load)
        return await self.registry.call(what, self.settings.load_timeout_s, load)

    @staticmethod
    def _predict_fn(forecaster: Forecaster) -> Callable[[np.ndarray], np.ndarray]:
        return lambda X: forecaster.predict_windows(X).quantiles

    def close(self) -> None:
        self.predict_executor.shutdown(wait=False, cancel_futures=True)
