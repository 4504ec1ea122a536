"""Requests a collector takes: spans batched by their encoded size, a span too large trimmed.

A collector (or the proxy before it) refuses a request past its size limit with 413, and
refuses it again however often it is sent. So the exporter keeps every request under a limit in
bytes (before compression), splits a page into as many requests as that needs, and trims a
span that is larger than the limit on its own: its long string attributes (content) are cut
further, then its span events dropped and counted in ``runtrack.events_dropped``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.util.types import Attributes, AttributeValue

from .spans import MAX_CONTENT_CHARS

__all__ = ["MIN_REQUEST_BYTES", "Batch", "batches", "trim"]

MIN_REQUEST_BYTES = 16_384
"""The smallest request limit: a span without content or span events fits many times over."""
_SHORTEST_CUT = 256
"""Content is never cut shorter than this while trimming (ids and names are shorter)."""
TRIMMED = "runtrack.trimmed"
DROPPED_EVENTS = "runtrack.events_dropped"


@dataclass
class Batch:
    """Spans sent as one request, with their encoded body (uncompressed)."""

    spans: list[ReadableSpan]
    body: bytes
    refusals: int = 0
    """Times the collector answered this batch 400 (or 413 once it could not be trimmed)."""

    @classmethod
    def of(cls, spans: Sequence[ReadableSpan], refusals: int = 0) -> Batch:
        return cls(list(spans), encode_spans(spans).SerializeToString(), refusals)

    @property
    def size(self) -> int:
        return len(self.body)

    def halves(self) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
        middle = len(self.spans) // 2
        return self.spans[:middle], self.spans[middle:]


def size_of(span: ReadableSpan) -> int:
    """The bytes of a request holding only ``span`` (its resource and scope included)."""
    return int(encode_spans([span]).ByteSize())


def batches(spans: Sequence[ReadableSpan], limit: int) -> tuple[list[Batch], list[ReadableSpan]]:
    """``spans`` in requests of at most ``limit`` bytes each, in order; and the spans that had
    to be trimmed to fit (as trimmed). A request of single-span sizes that add up to no more
    than the limit is within it (the spans share resource and scope)."""
    whole = Batch.of(spans)
    if whole.size <= limit or not spans:
        return [whole], []
    found: list[Batch] = []
    trimmed: list[ReadableSpan] = []
    group: list[ReadableSpan] = []
    used = 0
    for span in spans:
        size = size_of(span)
        if size > limit:
            span = trim(span, limit)
            trimmed.append(span)
            size = size_of(span)
        if group and used + size > limit:
            found.append(Batch.of(group))
            group, used = [], 0
        group.append(span)
        used += size
    if group:
        found.append(Batch.of(group))
    return found, trimmed


def trim(span: ReadableSpan, limit: int) -> ReadableSpan:
    """``span`` made to fit ``limit`` bytes if it can be: long strings cut shorter and shorter,
    then span events dropped from the end (counted). Best effort: the result may still be
    larger when what is left is not content."""
    cut = MAX_CONTENT_CHARS
    trimmed = span
    while size_of(trimmed) > limit and cut > _SHORTEST_CUT:
        cut //= 4
        attributes = {**_cut(span.attributes, cut), TRIMMED: True}
        trimmed = _rebuilt(span, attributes, _cut_events(span.events, cut))
    keep = len(span.events)
    counted = (span.attributes or {}).get(DROPPED_EVENTS, 0)
    before = counted if isinstance(counted, int) else 0
    cut_events = trimmed.events
    while size_of(trimmed) > limit and keep > 0:
        keep //= 2
        trimmed = _with_events(trimmed, cut_events[:keep], before + len(span.events) - keep)
    return trimmed


def _with_events(span: ReadableSpan, events: Sequence[Event], dropped: int) -> ReadableSpan:
    """``span`` with only ``events``, ``dropped`` events counted as dropped in all."""
    attributes: dict[str, AttributeValue] = {**(span.attributes or {}), DROPPED_EVENTS: dropped}
    return _rebuilt(span, attributes, events)


def _cut(attributes: Attributes, cut: int) -> dict[str, AttributeValue]:
    found: dict[str, AttributeValue] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str) and len(value) > cut:
            value = value[:cut] + "…"
        found[key] = value
    return found


def _cut_events(events: Sequence[Event], cut: int) -> list[Event]:
    return [Event(event.name, _cut(event.attributes, cut), event.timestamp) for event in events]


def _rebuilt(
    span: ReadableSpan, attributes: dict[str, AttributeValue], events: Sequence[Event]
) -> ReadableSpan:
    return ReadableSpan(
        span.name,
        span.context,
        span.parent,
        span.resource,
        attributes,
        tuple(events),
        span.links,
        span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
