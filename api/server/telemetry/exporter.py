"""The leader's trace exporter: follows the log from the ``otel`` cursor and sends spans.

At least once, never ahead of the collector: a page of the log is folded into spans
(``spans.py``), sent as one OTLP/HTTP request, retried with backoff until the collector answers
2xx, and only then is the cursor moved past it. A crash between the answer and the cursor sends
the page again: the same spans with the same ids, which backends deduplicate. The folds of runs
live in memory, least recently fed first out, within a bound in bytes and in count, and any
idle for an hour go: the log is the source of truth, and a run evicted is refolded from it when
it next has an event. Whenever the folds might be ahead of the durable cursor (a failed pass,
another leader in between) they are dropped and refolded from the log too. A run whose first
events were archived is refolded from the segments (``--archive-dir``), else from its live events
only (docs/telemetry.md, "Archived runs").
"""

from __future__ import annotations

import asyncio
import enum
import gzip
import logging
import random
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan

from eventstore import (
    AgentEvent,
    ArchiveReader,
    EventFilter,
    EventStore,
    EventType,
    RunArchived,
    UnknownRun,
    is_reserved_organization,
)
from projections import RunQueries

from .sizing import MIN_REQUEST_BYTES, Batch, batches, trim
from .spans import RunTrace, SpanOptions, time_ns
from .target import OtlpTarget

__all__ = [
    "CURSOR",
    "DROP_AFTER",
    "IDLE_SECONDS",
    "MAX_FOLDS",
    "MAX_FOLD_BYTES",
    "MAX_REQUEST_BYTES",
    "ExportStopped",
    "TraceExporter",
]

CURSOR = "otel"
"""The exporter's name among the store's durable consumers."""
MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""A request's default limit before compression: within common collectors' and proxies'
limits (gRPC's default message size; the OpenTelemetry Collector's HTTP default is larger)."""
DROP_AFTER = 5
"""Refusals (400) of a span sent on its own before it is dropped: a few, against a collector
that refuses for a moment, while one span the collector cannot take holds nothing for long."""
MAX_FOLD_BYTES = 64 * 1024 * 1024
"""What the folds of runs may weigh in all (``RunTrace.weight``: their span events' and open
tool calls' text, and an overhead for each)."""
MAX_FOLDS = 10_000
IDLE_SECONDS = 3600.0
"""A fold not fed for this long (in the log's time) is evicted: a run waiting on a person for
weeks is refolded when the answer comes, instead of pinning its memory meanwhile."""
_MAX_ROOTS = 100_000
_PAGE = 1000
"""Events per read when a run is refolded from the log."""
logger = logging.getLogger("runtrack.telemetry")


class ExportStopped(Exception):
    """This server stopped being the leader while a batch waited for the collector."""


class _Outcome(enum.Enum):
    ACCEPTED = "accepted"
    TOO_LARGE = "too large"
    """413 for a request of several spans: split it, lower the limit."""
    REFUSED = "refused"
    """400 for a request of several spans: split it to find the span the collector refuses."""
    DROPPED = "dropped"
    """A single span refused ``drop_after`` times: given up."""


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
        max_request_bytes: int = MAX_REQUEST_BYTES,
        drop_after: int = DROP_AFTER,
        max_fold_bytes: int = MAX_FOLD_BYTES,
        max_folds: int = MAX_FOLDS,
        idle_seconds: float = IDLE_SECONDS,
        still_leader: Callable[[], bool] = lambda: True,
        cursor: str = CURSOR,
        archive: ArchiveReader | None = None,
    ) -> None:
        self._store = store
        self._queries = RunQueries(store, archive)
        """Where a run refolded after an archive took its first events reads them (the
        server's ``--archive-dir``; without one, what is live is folded)."""
        self._cursor = cursor
        self._target = target
        self._options = SpanOptions(content=content, service_name=target.service_name)
        self._page_size = page_size
        self._retry = (retry_base, retry_cap)
        if max_request_bytes < MIN_REQUEST_BYTES:
            raise ValueError(f"max_request_bytes must be at least {MIN_REQUEST_BYTES}")
        self._max_bytes = max_request_bytes
        """The request limit; lowered for good when the collector refuses a smaller one."""
        self._drop_after = drop_after
        self._still_leader = still_leader
        headers = {**target.headers, "content-type": "application/x-protobuf"}
        if target.gzip:
            headers["content-encoding"] = "gzip"
        self._client = httpx.AsyncClient(headers=headers, timeout=target.timeout)
        self._folds: OrderedDict[str, RunTrace] = OrderedDict()
        """The runs met lately, the least recently fed first; ended ones too, for the events
        that follow an end (a callback attempt, a resume) so that those need no refold."""
        self.fold_bytes = 0
        """The folds' weight in all (each as of when it was last fed)."""
        self._fold_limits = (max_fold_bytes, max_folds, int(idle_seconds * 1e9))
        self.folds_evicted = 0
        """Folds dropped to stay within the bounds (each refolded from the log if needed)."""
        self._roots: dict[str, str] = {}
        self._position: int | None = None
        self.spans_sent = 0
        """Spans the collector accepted (repeats after a crash counted again)."""
        self.failures = 0
        """Requests the collector did not accept (refused, unreachable, timed out)."""
        self.spans_trimmed = 0
        """Spans cut down to fit a request (content shortened, span events dropped)."""
        self.spans_dropped = 0
        """Spans given up: refused as bad (400) or too large (413) ``drop_after`` times."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def export_pending(self) -> None:
        """Send everything after the cursor, page by page, each only once accepted."""
        cursor = (await self._store.consumer_cursors()).get(self._cursor, 0)
        if cursor != self._position:  # first pass, or another leader moved it: refold
            self._folds.clear()
            self.fold_bytes = 0
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
            self._keep(event.run_id, trace, trace.last_ns or time_ns(event.created_at))
        return spans

    async def _trace_for(self, event: AgentEvent) -> RunTrace:
        trace = self._folds.pop(event.run_id, None)
        if trace is None:
            return await self._open(event)
        self.fold_bytes -= trace.weight
        return trace

    def _keep(self, run_id: str, trace: RunTrace, now: int) -> None:
        """Hold ``trace`` as the most recently fed, evicting what the bounds require."""
        self._folds[run_id] = trace
        self.fold_bytes += trace.weight
        max_bytes, max_count, idle = self._fold_limits
        while len(self._folds) > 1:
            oldest_id, oldest = next(iter(self._folds.items()))
            stale = oldest.last_ns is not None and oldest.last_ns < now - idle
            if not stale and self.fold_bytes <= max_bytes and len(self._folds) <= max_count:
                return
            del self._folds[oldest_id]
            self.fold_bytes -= oldest.weight
            self.folds_evicted += 1

    async def _open(self, event: AgentEvent) -> RunTrace:
        """The fold of ``event``'s run so far, refolded from the log when it began earlier."""
        earlier = [] if event.event_type == EventType.RUN_CREATED else await self._before(event)
        first = earlier[0] if earlier else event
        parent = (
            first.payload.get("parent_run_id")
            if first.event_type == EventType.RUN_CREATED
            else None
        )
        root = await self._root(event.run_id, parent, event.organization_id)
        trace = RunTrace(event.run_id, event.organization_id, root, self._options)
        for old in earlier:  # exported before the cursor: fold only
            trace.feed(old)
        return trace

    async def _before(self, event: AgentEvent) -> list[AgentEvent]:
        """``event``'s run before it: the live log's events, after those archived when the run's
        first events left the log (the fold needs its start, its agent, its open tool calls)."""
        live = await self._live_before(event.run_id, event.sequence)
        first = live[0].sequence if live else event.sequence
        if first == 1:
            return live
        archived = await self._archived(event.organization_id, event.run_id)
        return [old for old in archived if old.sequence < first] + live

    async def _live_before(self, run_id: str, sequence: int) -> list[AgentEvent]:
        """The run's live events before ``sequence``, paged by the last sequence read (a run's
        live sequences start past 1 once its first events are archived)."""
        found: list[AgentEvent] = []
        after = 0
        while True:
            batch = await self._store.read_run(None, run_id, after_sequence=after, limit=_PAGE)
            found += [old for old in batch if old.sequence < sequence]
            if len(batch) < _PAGE or batch[-1].sequence >= sequence:
                return found
            after = batch[-1].sequence

    async def _archived(self, organization_id: str, run_id: str) -> list[AgentEvent]:
        """The run's archived events from the segments; none where this server cannot read
        them (no ``--archive-dir``, a missing segment): the fold then starts at what is live,
        so its spans miss what came before (logged), and the export goes on."""
        try:
            state = await self._queries.get(organization_id, run_id)
            archived = await self._queries.archived_events(state)
        except (RunArchived, UnknownRun) as exc:
            logger.warning("run %s folded from its live events only: %s", run_id, exc)
            return []
        return [] if archived is None else archived[0]

    async def _created(self, organization_id: str, run_id: str) -> AgentEvent | None:
        """``run_id``'s ``run_created`` event, live or archived (None: neither can be read)."""
        live = await self._store.read_run(None, run_id, limit=1)
        if live and live[0].sequence == 1:
            return live[0]
        archived = await self._archived(organization_id, run_id)
        return archived[0] if archived and archived[0].sequence == 1 else None

    async def _root(self, run_id: str, parent: str | None, organization_id: str) -> str:
        """The root of ``run_id``'s tree of runs: its trace id is derived from it."""
        root = run_id if parent is None else self._roots.get(parent)
        if root is None:
            assert parent is not None
            created = await self._created(organization_id, parent)
            grand = created.payload.get("parent_run_id") if created else None
            grand = grand if isinstance(grand, str) else None
            root = await self._root(parent, grand, organization_id)
        if len(self._roots) >= _MAX_ROOTS:
            self._roots.clear()
        self._roots[run_id] = root
        return root

    # -- sending -------------------------------------------------------------------------------

    async def _deliver(self, spans: list[ReadableSpan]) -> None:
        """Send ``spans`` in requests within the limit; each retried until accepted, split
        when refused as too large (413) or bad (400), a single span refused so too often
        dropped (``drop_after``)."""
        pending = deque(self._batches(spans))
        while pending:
            batch = pending.popleft()
            outcome = await self._send(batch)
            if outcome is _Outcome.ACCEPTED:
                self.spans_sent += len(batch.spans)
            elif outcome is _Outcome.DROPPED:
                self._drop(batch)
            else:
                pending.extendleft(reversed(self._split(batch, outcome)))

    def _batches(self, spans: list[ReadableSpan]) -> list[Batch]:
        found, trimmed = batches(spans, self._max_bytes)
        for span in trimmed:
            logger.warning(
                "span %r of run %s was larger than a request may be (%d bytes): trimmed",
                span.name,
                (span.attributes or {}).get("runtrack.run.id"),
                self._max_bytes,
            )
        self.spans_trimmed += len(trimmed)
        return found

    def _split(self, batch: Batch, outcome: _Outcome) -> list[Batch]:
        """The requests that replace a refused one of several spans: its halves (each within
        the lowered limit after a 413)."""
        if outcome is _Outcome.TOO_LARGE:
            lowered = max(MIN_REQUEST_BYTES, batch.size // 2)
            if lowered < self._max_bytes:
                logger.warning(
                    "collector refused %d bytes as too large: requests are now at most %d",
                    batch.size,
                    lowered,
                )
                self._max_bytes = lowered
            return [part for half in batch.halves() for part in self._batches(half)]
        return [Batch.of(half) for half in batch.halves()]

    async def _send(self, batch: Batch) -> _Outcome:
        """Post ``batch`` until the collector accepts it, or it must be split or dropped."""
        attempt = 0
        while True:
            status, retry_after = await self._attempt(self._encoded(batch.body))
            if status is None:
                return _Outcome.ACCEPTED
            self.failures += 1
            if status == 413 and len(batch.spans) > 1:
                return _Outcome.TOO_LARGE
            if status == 413 and self._shrunk(batch):
                continue
            if status in (400, 413):
                batch.refusals += 1
                if len(batch.spans) == 1 and 0 < self._drop_after <= batch.refusals:
                    return _Outcome.DROPPED
            await self._pause(attempt, retry_after)
            if status == 400 and len(batch.spans) > 1:
                return _Outcome.REFUSED
            attempt += 1

    def _shrunk(self, batch: Batch) -> bool:
        """Trim the one span of ``batch`` to half its size; False when it cannot shrink."""
        [span] = batch.spans
        smaller = Batch.of([trim(span, batch.size // 2)], batch.refusals)
        if smaller.size >= batch.size:
            return False
        logger.warning(
            "collector refused span %r of run %s (%d bytes) as too large: trimmed to %d",
            span.name,
            (span.attributes or {}).get("runtrack.run.id"),
            batch.size,
            smaller.size,
        )
        self.spans_trimmed += 1
        batch.spans, batch.body = smaller.spans, smaller.body
        return True

    def _drop(self, batch: Batch) -> None:
        [span] = batch.spans
        self.spans_dropped += 1
        logger.error(
            "collector refused span %r of run %s (trace %032x, span %016x) %d times: dropped "
            "(the log still holds its events)",
            span.name,
            (span.attributes or {}).get("runtrack.run.id"),
            span.context.trace_id if span.context else 0,
            span.context.span_id if span.context else 0,
            batch.refusals,
        )

    def _encoded(self, body: bytes) -> bytes:
        return gzip.compress(body) if self._target.gzip else body

    async def _pause(self, attempt: int, retry_after: str | None) -> None:
        await asyncio.sleep(self._backoff(attempt, retry_after))
        if not self._still_leader():
            raise ExportStopped("no longer the leader; the next leader sends this batch")

    async def _attempt(self, body: bytes) -> tuple[int | None, str | None]:
        """One POST: ``(None, None)`` once accepted, else the answer's status (0 for none)
        and its ``Retry-After``."""
        try:
            response = await self._client.post(self._target.endpoint, content=body)
        except httpx.HTTPError as exc:
            logger.warning("collector unreachable (%s); retrying", type(exc).__name__)
            return 0, None
        if response.is_success:
            self._note_rejections(response)
            return None, None
        logger.warning(
            "collector answered %d (%s)", response.status_code, response.text[:200].strip()
        )
        return response.status_code, response.headers.get("retry-after")

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
