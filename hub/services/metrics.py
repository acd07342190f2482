"""Prometheus metrics of one hub instance, on its own CollectorRegistry (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Counters and histograms the services and the API update; exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("loom_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("loom_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry)
        self.publishes = Counter("loom_publishes", "Adapter versions published", registry=self.registry)
        self.downloads = Counter("loom_downloads", "Adapter files downloaded", ["file"], registry=self.registry)
        self.searches = Counter("loom_searches", "Search queries", registry=self.registry)
        self.adapters = Gauge("loom_adapters", "Adapters in the registry", registry=self.registry)
        self.workers = Gauge("loom_workers", "Job workers by lane: up (heart-beating), down, expected (supervised)",
                             ["lane", "state"], registry=self.registry)
        self.worker_restarts = Gauge("loom_worker_restarts", "Dead job workers replaced by this process's supervisor",
                                     registry=self.registry)
