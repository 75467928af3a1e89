"""Prometheus metrics of one app instance (its own registry, so tests can make many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.model_version = Gauge(
            "forecaster_model_version", "Loaded model version", ["name", "ref"], registry=self.registry
        )
        self.batch_size = Histogram(
            "forecaster_batch_windows",
            "Windows per forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.series = Histogram(
            "forecaster_request_series",
            "Series per forecast request",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
