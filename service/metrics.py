"""Prometheus metrics of one app instance (its own registry, so tests can make many apps).

With several workers (`forecaster serve --workers N`) prometheus_client writes every value to
per-process files instead, and /metrics reads all workers' files: counters and histograms are
summed; each gauge says how it combines (`multiprocess_mode`, ignored with one process).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from service.logs import note_series
from service.workers import exposition_registry, multiprocess_dir, prune_dead_workers


class _SeriesHistogram:
    """Series per forecast request; the count also goes on the request's access-log line."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def observe(self, value: float) -> None:
        self.histogram.observe(value)
        note_series(int(value))


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "forecaster_requests_total", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "forecaster_request_latency_seconds",
            "Request latency",
            ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.errors = Counter(
            "forecaster_errors_total",
            "Server-side failures answered: internal (500), registry, model_load, source, unavailable",
            ["kind"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "forecaster_model_version",
            "Loaded model version",
            ["name", "ref"],
            registry=self.registry,
            multiprocess_mode="liveall",  # one series per live worker (pid label): a swap shows worker by worker
        )
        self.load_failures = Counter(
            "forecaster_model_load_failures_total",
            "Model versions that failed to load (the previous one keeps serving)",
            ["name", "ref"],
            registry=self.registry,
        )
        self.failed_version = Gauge(
            "forecaster_model_failed_version",
            "Version that last failed to load for a reference (0: none pending); the reason is on /ready and /models",
            ["name", "ref"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        # The worst live worker: 0 if any worker lost the registry, the oldest refresh of all.
        self.registry_up = Gauge(
            "forecaster_registry_up",
            "1 when the last registry call got an answer, else 0",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.last_refresh = Gauge(
            "forecaster_registry_last_refresh_timestamp_seconds",
            "Unix time of the last refresh that resolved every followed alias",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.batch_size = Histogram(
            "forecaster_batch_windows",
            "Windows per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.series = _SeriesHistogram(
            Histogram(
                "forecaster_request_series",
                "Series per forecast request",
                buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                registry=self.registry,
            )
        )

    def render(self) -> tuple[bytes, str]:
        """The /metrics body and its content type: this app's registry, or with several workers
        the sum over every worker's files (live gauges of dead workers dropped first)."""
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        prune_dead_workers(folder)
        return generate_latest(exposition_registry(folder)), CONTENT_TYPE_LATEST
