"""Prometheus metrics, on a registry of the app's own (tests run many apps in one process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["FIRST_TOKEN_BUCKETS", "RUN_DURATION_BUCKETS", "Metrics"]

RUN_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
"""Seconds: agent runs last from a second to a day (a human's answer included)."""
FIRST_TOKEN_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
"""Seconds: one model call, or a few tools before it."""

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


class ExportCounts(Protocol):
    """What the trace exporter counts (``api/server/telemetry/exporter.py``)."""

    spans_sent: int
    spans_trimmed: int
    spans_dropped: int
    failures: int


_EXPORT_FAMILIES = (
    ("runtrack_otel_spans_sent", "Spans the OTLP collector accepted", "spans_sent"),
    ("runtrack_otel_spans_trimmed", "Spans cut down to fit a request", "spans_trimmed"),
    ("runtrack_otel_spans_dropped", "Spans the collector refused, given up", "spans_dropped"),
    ("runtrack_otel_requests_failed", "OTLP requests not accepted (retried or not)", "failures"),
)


class _TraceExport(Collector):
    """The trace exporter's counts, read from it when scraped (nothing without export)."""

    def __init__(self) -> None:
        self.counts: ExportCounts | None = None

    def collect(self) -> Iterable[Metric]:
        if self.counts is None:
            return
        for name, documentation, attribute in _EXPORT_FAMILIES:
            yield CounterMetricFamily(name, documentation, getattr(self.counts, attribute))


class Metrics:
    """The server's families. Runs, durations and callbacks are counted where this server's
    writer commits the events (``api/server/run_metrics.py``); docs/operations.md, "Metrics"."""

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
        self.run_duration = Histogram(
            "runtrack_run_duration_seconds",
            "From a run's creation to its ending (queue time included), by the ending's status",
            ["status"],
            buckets=RUN_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "runtrack_time_to_first_token_seconds",
            "From a run's first start (running) to its first step_completed",
            buckets=FIRST_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.callback_attempts_failed = Counter(
            "runtrack_callback_attempts_failed",
            "Callback attempts that got no 2xx answer (retried or not)",
            registry=self.registry,
        )
        self.callbacks_failed = Counter(
            "runtrack_callbacks_failed",
            "Callback deliveries given up: their last attempt got no 2xx answer",
            registry=self.registry,
        )
        self._runs = _RunsByStatus()
        self.registry.register(self._runs)
        self._export = _TraceExport()
        self.registry.register(self._export)

    def watch_export(self, counts: ExportCounts | None) -> None:
        """Serve the trace exporter's counts (when this server has one)."""
        self._export.counts = counts

    async def render(self, status_counts: StatusCounts) -> bytes:
        self._runs.counts = await status_counts()
        return generate_latest(self.registry)
