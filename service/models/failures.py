"""What failed, remembered: per reference the version that could not be loaded and why (shown on
/ready, /models, /admin/reload and in /metrics until the reference loads or moves back), why the
default model is not loaded, and failed lookups answered from memory for `negative_cache_s`."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from forecaster.errors import ForecasterError, ModelLoadError
from service.errors import public_reason
from service.metrics import ServiceMetrics
from service.models.refs import Key, label, metric_ref

log = logging.getLogger(__name__)

NEGATIVE_CACHE_SIZE = 1024  # remembered failures, so unknown names cannot grow memory without bound


@dataclass(frozen=True)
class LoadFailure:
    """A reference's version that could not be loaded, and why (words safe to show anyone)."""

    label: str
    version: str | None
    reason: str
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


class FailedLoads:
    """Per reference, the last version that failed to load (the previous one keeps serving)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics
        self.by_key: dict[Key, LoadFailure] = {}

    def get(self, key: Key) -> LoadFailure | None:
        return self.by_key.get(key)

    def add(self, key: Key, version: str | None, exc: ModelLoadError) -> LoadFailure:
        """`version`: None for a fixed reference that is no registered version (its gauge shows 1)."""
        failure = self.by_key[key] = LoadFailure(label(key), version, public_reason(exc))
        self.metrics.load_failures.labels(key[0], metric_ref(key)).inc()
        self.metrics.failed_version.labels(key[0], metric_ref(key)).set(float(version) if version is not None else 1.0)
        log.error("%s: version %s failed to load: %s", label(key), version, exc)
        return failure

    def clear(self, key: Key) -> None:
        if self.by_key.pop(key, None) is not None:
            self.metrics.failed_version.labels(key[0], metric_ref(key)).set(0.0)


class NegativeCache:
    """Failed lookups and loads, raised again from memory until they expire (`clock` is injectable)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.entries: dict[Key, tuple[float, type[ForecasterError], str]] = {}  # expiry, error to raise again

    def raise_if_remembered(self, key: Key) -> None:
        entry = self.entries.get(key)
        if entry is not None and entry[0] > self.clock():
            raise entry[1](entry[2])  # a new exception each time: re-raising one object grows its traceback

    def remember(self, key: Key, exc: ForecasterError) -> None:
        if self.ttl_s <= 0:
            return
        now = self.clock()
        if len(self.entries) >= NEGATIVE_CACHE_SIZE:
            self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
        if len(self.entries) < NEGATIVE_CACHE_SIZE:
            self.entries[key] = (now + self.ttl_s, type(exc), str(exc))

    def forget(self, key: Key) -> None:
        self.entries.pop(key, None)
