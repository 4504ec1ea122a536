"""Prometheus metrics, on a registry of the app's own (tests run many apps in one process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

StatusCounts = Callable[[], Awaitable[dict[str, int]]]


class _RunsByStatus(Collector):
    """Runs per status, read from the read model when scraped (kept fresh by ``refresh``)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("runtrack_runs", "Runs by status", labels=["status"])
        for status, count in sorted(self.counts.items()):
            family.add_metric([status], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_appended = Counter(
            "runtrack_events_appended", "Events appended through the API", registry=self.registry
        )
        self.append_latency = Histogram(
            "runtrack_append_latency_seconds",
            "Time from receiving an append to its commit",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.open_streams = Gauge(
            "runtrack_open_streams", "Open SSE streams", registry=self.registry
        )
        self.dropped_clients = Counter(
            "runtrack_dropped_slow_clients",
            "Streams dropped because the client stopped reading",
            registry=self.registry,
        )
        self._runs = _RunsByStatus()
        self.registry.register(self._runs)

    async def render(self, status_counts: StatusCounts) -> bytes:
        self._runs.counts = await status_counts()
        return generate_latest(self.registry)
