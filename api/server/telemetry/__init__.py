"""OTLP export of the log as OpenTelemetry GenAI traces (docs/telemetry.md).

``spans.py`` maps a run's events to spans (pure), ``target.py`` reads where they go from the
standard variables, ``exporter.py`` follows the log from its durable cursor and sends them in
requests ``sizing.py`` keeps within the collector's limit.
"""

from __future__ import annotations

from .exporter import CURSOR, DROP_AFTER, MAX_REQUEST_BYTES, ExportStopped, TraceExporter
from .sizing import MIN_REQUEST_BYTES
from .spans import RunTrace, SpanOptions, span_id, trace_id
from .target import OtlpTarget, otlp_target

__all__ = [
    "CURSOR",
    "DROP_AFTER",
    "MAX_REQUEST_BYTES",
    "MIN_REQUEST_BYTES",
    "ExportStopped",
    "OtlpTarget",
    "RunTrace",
    "SpanOptions",
    "TraceExporter",
    "otlp_target",
    "span_id",
    "trace_id",
]
