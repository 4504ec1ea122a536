"""The leader's trace exporter: follows the log from the ``otel`` cursor and sends spans.

At least once, never ahead of the collector: a page of the log is folded into spans
(``spans.py``), sent as one OTLP/HTTP request, retried with backoff until the collector answers
2xx, and only then is the cursor moved past it. A crash between the answer and the cursor sends
the page again: the same spans with the same ids, which backends deduplicate. The folds of runs
in progress live in memory; whenever they might be ahead of the durable cursor (a failed pass,
another leader in between) they are dropped and refolded from the log.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan

from eventstore import (
    AgentEvent,
    EventFilter,
    EventStore,
    EventType,
    RunStatus,
    is_reserved_organization,
)

from .spans import RunTrace, SpanOptions
from .target import OtlpTarget

__all__ = ["CURSOR", "ExportStopped", "TraceExporter"]

CURSOR = "otel"
"""The exporter's name among the store's durable consumers."""
_ENDED = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMED_OUT}
)
_MAX_ROOTS = 100_000
_RECENTLY_ENDED = 4096
logger = logging.getLogger("runtrack.telemetry")


class ExportStopped(Exception):
    """This server stopped being the leader while a batch waited for the collector."""


class TraceExporter:
    """Exports the log as traces, one page at a time; ``export_pending`` is one pass."""

    def __init__(
        self,
        store: EventStore,
        target: OtlpTarget,
        *,
        content: bool = False,
        page_size: int = 512,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
        still_leader: Callable[[], bool] = lambda: True,
        cursor: str = CURSOR,
    ) -> None:
        self._store = store
        self._cursor = cursor
        self._target = target
        self._options = SpanOptions(content=content, service_name=target.service_name)
        self._page_size = page_size
        self._retry = (retry_base, retry_cap)
        self._still_leader = still_leader
        headers = {**target.headers, "content-type": "application/x-protobuf"}
        if target.gzip:
            headers["content-encoding"] = "gzip"
        self._client = httpx.AsyncClient(headers=headers, timeout=target.timeout)
        self._traces: dict[str, RunTrace] = {}
        self._ended: OrderedDict[str, RunTrace] = OrderedDict()
        """Runs ended lately, kept for the events that follow an end (a callback attempt,
        a resume) so that those need no refold from the log."""
        self._roots: dict[str, str] = {}
        self._position: int | None = None
        self.spans_sent = 0
        """Spans the collector accepted (repeats after a crash counted again)."""
        self.failures = 0
        """Requests the collector did not accept (refused, unreachable, timed out)."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def export_pending(self) -> None:
        """Send everything after the cursor, page by page, each only once accepted."""
        cursor = (await self._store.consumer_cursors()).get(self._cursor, 0)
        if cursor != self._position:  # first pass, or another leader moved it: refold
            self._traces.clear()
            self._ended.clear()
            self._position = cursor
        try:
            while await self._export_page(cursor):
                cursor = self._position
        except ExportStopped:
            self._position = None  # the folds may be past the cursor now
            logger.info("trace export paused: this server is no longer the leader")
        except BaseException:
            self._position = None
            raise

    async def _export_page(self, cursor: int) -> bool:
        page = await self._store.read(EventFilter(), after=cursor, limit=self._page_size)
        if not page.events:
            return False
        spans = await self._fold(page.events)
        if spans:
            await self._deliver(spans)
        await self._store.set_consumer_cursor(self._cursor, page.position)
        self._position = page.position
        return True

    # -- folding -------------------------------------------------------------------------------

    async def _fold(self, events: Sequence[AgentEvent]) -> list[ReadableSpan]:
        spans: list[ReadableSpan] = []
        for event in events:
            if is_reserved_organization(event.organization_id):
                continue  # the server's own bookkeeping (chain heads): no agent's run
            trace = await self._trace_for(event)
            try:
                spans += trace.feed(event)
            except Exception:  # a bug here must not hold back every later span
                logger.exception("event %d not exported as a span", event.id)
            if trace.status in _ENDED:
                self._end(event.run_id)
        return spans

    async def _trace_for(self, event: AgentEvent) -> RunTrace:
        trace = self._traces.get(event.run_id) or self._ended.pop(event.run_id, None)
        if trace is None:
            trace = await self._open(event)
        self._traces[event.run_id] = trace
        return trace

    async def _open(self, event: AgentEvent) -> RunTrace:
        """The fold of ``event``'s run so far, refolded from the log when it began earlier."""
        earlier = [] if event.event_type == EventType.RUN_CREATED else await self._before(event)
        first = earlier[0] if earlier else event
        parent = (
            first.payload.get("parent_run_id")
            if first.event_type == EventType.RUN_CREATED
            else None
        )
        root = await self._root(event.run_id, parent)
        trace = RunTrace(event.run_id, event.organization_id, root, self._options)
        for old in earlier:  # exported before the cursor: fold only
            trace.feed(old)
        return trace

    def _end(self, run_id: str) -> None:
        self._ended[run_id] = self._traces.pop(run_id)
        if len(self._ended) > _RECENTLY_ENDED:
            self._ended.popitem(last=False)

    async def _before(self, event: AgentEvent) -> list[AgentEvent]:
        found: list[AgentEvent] = []
        while len(found) < event.sequence - 1:
            batch = await self._store.read_run(
                None, event.run_id, after_sequence=len(found), limit=1000
            )
            found += [old for old in batch if old.sequence < event.sequence]
            if len(batch) < 1000:
                break
        return found

    async def _root(self, run_id: str, parent: str | None) -> str:
        """The root of ``run_id``'s tree of runs: its trace id is derived from it."""
        root = run_id if parent is None else self._roots.get(parent)
        if root is None:
            assert parent is not None
            created = await self._store.read_run(None, parent, limit=1)
            grand = created[0].payload.get("parent_run_id") if created else None
            root = await self._root(parent, grand if isinstance(grand, str) else None)
        if len(self._roots) >= _MAX_ROOTS:
            self._roots.clear()
        self._roots[run_id] = root
        return root

    # -- sending -------------------------------------------------------------------------------

    async def _deliver(self, spans: list[ReadableSpan]) -> None:
        body = encode_spans(spans).SerializeToString()
        if self._target.gzip:
            body = gzip.compress(body)
        attempt = 0
        while True:
            wait = await self._attempt(body, attempt)
            if wait is None:
                self.spans_sent += len(spans)
                return
            attempt += 1
            self.failures += 1
            await asyncio.sleep(wait)
            if not self._still_leader():
                raise ExportStopped("no longer the leader; the next leader sends this batch")

    async def _attempt(self, body: bytes, attempt: int) -> float | None:
        """One POST: None once accepted, else the seconds to wait before the next."""
        try:
            response = await self._client.post(self._target.endpoint, content=body)
        except httpx.HTTPError as exc:
            logger.warning("collector unreachable (%s); retrying", type(exc).__name__)
            return self._backoff(attempt, None)
        if response.is_success:
            self._note_rejections(response)
            return None
        logger.warning("collector answered %d; retrying", response.status_code)
        return self._backoff(attempt, response.headers.get("retry-after"))

    def _note_rejections(self, response: httpx.Response) -> None:
        """A 2xx may still say some spans were rejected (OTLP partial success): log it; sending
        the same spans again would be rejected again."""
        try:
            answer = ExportTraceServiceResponse.FromString(response.content)
        except Exception:  # protobuf's DecodeError: a collector that answers no protobuf
            return
        rejected = answer.partial_success.rejected_spans
        if rejected:
            message = answer.partial_success.error_message
            logger.warning("collector rejected %d spans: %s", rejected, message)

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """The usual backoff, or a longer ``Retry-After`` (up to the cap): never shorter, so a
        collector answering ``Retry-After: 0`` is not sent a request per millisecond."""
        base, cap = self._retry
        wait = min(cap, base * 2.0 ** min(attempt, 30)) * random.uniform(0.5, 1.0)
        if retry_after is not None and retry_after.isdigit():
            return max(wait, min(float(retry_after), cap))
        return wait
