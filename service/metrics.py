"""Prometheus metrics of one app instance (its own registry, so tests can make many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.logs import note_series


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
            "forecaster_model_version", "Loaded model version", ["name", "ref"], registry=self.registry
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
        )
        self.registry_up = Gauge(
            "forecaster_registry_up", "1 when the last registry call got an answer, else 0", registry=self.registry
        )
        self.last_refresh = Gauge(
            "forecaster_registry_last_refresh_timestamp_seconds",
            "Unix time of the last refresh that resolved every followed alias",
            registry=self.registry,
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
