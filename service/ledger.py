"""The service's side of the forecast ledger: every answered forecast is handed to a bounded queue
on the request path (a lock, a counter and a put: no I/O, no conversion) and a background thread
turns the answers into ledger rows (one per series forecast) and appends them in batches
(forecaster.monitor.store). The writer lingers up to LINGER_S after the first answer it finds, so
that under load one transaction carries many requests: the writer shares the process (and its GIL)
with the event loop, and its cost is per transaction and per row far more than per value.

Serving never waits for the ledger and never fails because of it: when the queue is full, or the
store cannot be reached or written, the forecasts are dropped and counted by reason in
`forecaster_ledger_dropped_total`; the next batch tries the store again.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from forecaster.config import CLOSE
from forecaster.errors import one_line
from forecaster.model.predictor import Window
from forecaster.monitor.schema import ForecastRecord, fingerprint
from forecaster.monitor.store import LedgerStore, resolve_uri
from service.fastpath import SeriesBody
from service.logs import current_request
from service.settings import Settings

log = logging.getLogger(__name__)

QUEUE_FORECASTS = 50_000  # most series forecasts waiting for the writer (about 2 kB each); more are dropped
BATCH_FORECASTS = 2_000  # most series forecasts per insert transaction
LINGER_S = 0.05  # longest wait for more answers once one is queued (a forecast is ledgered within it)
CLOSE_TIMEOUT_S = 10.0  # longest shutdown waits for the writer to write what is queued
ERROR_LOG_EVERY_S = 60.0  # a failing store is logged at most this often (every drop is counted)


class LedgerMetrics:
    """The ledger's Prometheus series, one set per app registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.written = Counter(
            "forecaster_ledger_written_total", "Series forecasts written to the ledger", registry=registry
        )
        self.dropped = Counter(
            "forecaster_ledger_dropped_total",
            "Series forecasts answered but not ledgered: queue_full (the writer is behind) or store_error",
            ["reason"],
            registry=registry,
        )
        self.backlog = Gauge(
            "forecaster_ledger_backlog",
            "Series forecasts waiting for the ledger writer",
            registry=registry,
            multiprocess_mode="livesum",
        )


_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, LedgerMetrics] = weakref.WeakKeyDictionary()


def ledger_metrics(registry: CollectorRegistry) -> LedgerMetrics:
    """The ledger's series on `registry`, made once (an app's lifespan may run more than once)."""
    if registry not in _METRICS:
        _METRICS[registry] = LedgerMetrics(registry)
    return _METRICS[registry]


@dataclass(frozen=True)
class _Answer:
    """One answered /forecast request, as the route had it."""

    request_id: str | None
    served_at: float  # time.time()
    content: dict[str, Any]  # the response body before encoding
    series: list[SeriesBody]
    windows: list[Window]

    def rows(self) -> list[dict[str, Any]]:
        """Its ledger_forecasts rows, one per series."""
        return [record.row() for record in self.records()]

    def records(self) -> list[ForecastRecord]:
        model = self.content["model"]
        served_at = dt.datetime.fromtimestamp(self.served_at, dt.UTC)
        levels = list(self.content["levels"])
        return [
            ForecastRecord(
                served_at=served_at,
                origin="service",
                role="served",
                model=model["name"],
                version=str(model["version"]),
                alias=model["alias"],
                run_id=model["run_id"],
                request_id=self.request_id,
                series_id=forecast["id"],
                ticker=item.ticker,
                source=forecast["source"],
                fingerprint=fingerprint(window.values),
                as_of=dt.date.fromisoformat(forecast["as_of"]),
                last_close=float(window.values[-1, CLOSE]),
                levels=levels,
                target_dates=[dt.date.fromisoformat(p["date"]) for p in forecast["points"]],
                quantiles=[p["quantiles"] for p in forecast["points"]],
            )
            for forecast, item, window in zip(self.content["forecasts"], self.series, self.windows, strict=True)
        ]


_STOP = object()


class Ledger:
    """The queue and its writer thread (started here, stopped by `close`)."""

    def __init__(
        self,
        store: LedgerStore,
        metrics: LedgerMetrics,
        capacity: int = QUEUE_FORECASTS,
        batch: int = BATCH_FORECASTS,
        linger: float = LINGER_S,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.capacity = capacity
        self.batch = batch
        self.linger = linger
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0  # series forecasts queued or being written
        self._last_error_log = -ERROR_LOG_EVERY_S
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def record(self, content: dict[str, Any], series: list[SeriesBody], windows: list[Window]) -> None:
        """Queue one answered request (the route's body `content`, its series and their windows);
        dropped and counted when the queue is full. Never blocks, never raises for the ledger."""
        count = len(series)
        with self._lock:
            full = self._waiting + count > self.capacity
            if not full:
                self._waiting += count
        if full:
            self.metrics.dropped.labels("queue_full").inc(count)
            return
        context = current_request.get()
        request_id = context.request_id if context is not None else None
        self._queue.put(_Answer(request_id, time.time(), content, series, windows))

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until everything queued before this call is written (or dropped); False on timeout."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued (bounded by `timeout`), stop the writer and release the store."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "ledger: the writer did not finish within %.0f s; %d forecasts not written", timeout, self._waiting
            )
            return
        self.store.close()

    def _run(self) -> None:
        while True:
            answers: list[_Answer] = []
            done: list[threading.Event] = []
            stop, count = False, 0
            item = self._queue.get()
            until = time.monotonic() + self.linger
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    done.append(item)  # someone waits: write now
                else:
                    answers.append(item)
                    count += len(item.series)
                if stop or done or count >= self.batch:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
            if answers:
                self._write(answers)
            for event in done:
                event.set()
            if stop:
                return

    def _write(self, answers: list[_Answer]) -> None:
        count = sum(len(a.series) for a in answers)
        self.metrics.backlog.set(self._waiting)
        try:
            self.store.append([row for answer in answers for row in answer.rows()])
            self.metrics.written.inc(count)
        except Exception as exc:  # whatever the store or a row does, the writer must live on
            self.metrics.dropped.labels("store_error").inc(count)
            now = time.monotonic()
            if now - self._last_error_log >= ERROR_LOG_EVERY_S:
                self._last_error_log = now
                log.warning("ledger: %d forecasts not written: %s", count, one_line(exc))
        finally:
            with self._lock:
                self._waiting -= count
            self.metrics.backlog.set(self._waiting)


class NoLedger:
    """FORECASTER_LEDGER=off: nothing is recorded."""

    def record(self, content: dict[str, Any], series: list[SeriesBody], windows: list[Window]) -> None:
        return None

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        return True

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        return None


def open_ledger(settings: Settings, tracking_uri: str, registry: CollectorRegistry) -> Ledger | NoLedger:
    """The app's ledger as its settings say (started; `close` it at shutdown). A store that cannot
    be reached now is no error here: its batches are counted as dropped until it can be."""
    if settings.ledger == "off":
        log.info("ledger: off")
        return NoLedger()
    store = LedgerStore(resolve_uri(settings.ledger_uri, tracking_uri))  # the URI was checked with the settings
    log.info("ledger %s", store.name)
    return Ledger(store, ledger_metrics(registry))
