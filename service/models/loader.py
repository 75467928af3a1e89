"""Loading one model version: resolve the reference, download and build it (both bounded registry
calls), warm it up and check its forecast (`warmup`), and give it a micro-batcher on the one
forward thread. A loaded model's answers are checked again on every request: never a NaN on the wire.
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
from forecaster.registry.tracking import ModelRef
from service.batching import MicroBatcher
from service.metrics import ServiceMetrics
from service.models.refs import Key, label
from service.models.registry import RegistryHealth
from service.models.warmup import warm_up
from service.settings import Settings

log = logging.getLogger(__name__)


class UnservableForecast(ModelLoadError):
    """A loaded version answered non-finite numbers for a request: answered as the 409 of a version
    that cannot serve (asking again will not help until the alias moves), never as nulls."""


@dataclass
class LoadedModel:
    forecaster: Forecaster
    ref: ModelRef
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
                f"model '{self.ref.name}' version {self.ref.version} cannot forecast {where}: "
                "it answered non-finite values (NaN or inf)"
            )
        return quantiles


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

    async def resolve(self, key: Key, wait_s: float | None = None) -> ModelRef:
        name, kind, value = key
        alias, version = (value, None) if kind == "alias" else (None, value)
        return await self.registry.call(
            f"resolve {label(key)}",
            self.settings.registry_timeout_s,
            lambda: tracking.resolve_version(name, alias, version),
            wait_s,
        )

    async def load(self, target: ModelRef) -> LoadedModel:
        """The version `target`, loaded and warmed up; ModelLoadError when it cannot serve (broken
        artifact, failed or non-finite or unordered warm-up forecast)."""
        what = f"model '{target.name}' version {target.version}"
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
        log.info("loaded %s version %s on %s", resolved.name, resolved.version, forecaster.device)
        return LoadedModel(forecaster, resolved, batcher)

    @staticmethod
    def _predict_fn(forecaster: Forecaster) -> Callable[[np.ndarray], np.ndarray]:
        return lambda X: forecaster.predict_windows(X).quantiles

    def close(self) -> None:
        self.predict_executor.shutdown(wait=False, cancel_futures=True)
