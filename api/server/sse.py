"""The SSE streams: cursor rules, visibility caps, framing, the stream cap and slow clients.

Framing: each event is ``id: <id>`` / ``event: <type>`` / ``data: <json>`` and a blank line. A
page of events becomes one chunk of bytes (one socket write for up to a thousand events). A page
whose position is past its last event (the rest was filtered out) ends with an id-only block,
so the client's ``Last-Event-ID`` moves past what it may not see. Idle streams get a
``: heartbeat`` comment. A run channel ends with ``event: end`` once its run reaches a terminal
status; reconnecting at or past that point while the run is still terminal gets ``204``, which
tells ``EventSource`` to stop.

``EventSourceResponse`` (sse-starlette) sends the response's start and end and does the
disconnect watch and the shutdown drain; the body chunks, pre-encoded bytes, we send ourselves,
and their timeouts are ours (see ``_Stream`` and ``StreamGate``). Its keep-alive ping is off:
our heartbeat comes from the subscription's idle ticks, so it is sent only when nothing else is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator
from contextlib import aclosing
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from api.server.auth import Principal
from api.server.errors import ApiError
from api.server.input_limits import bounded_int
from api.server.metrics import Metrics
from api.server.replay import Replay
from eventstore import (
    CursorExpired,
    EventFilter,
    EventPage,
    EventStore,
    EventType,
    Visibility,
    cancel_and_wait,
    encode_event,
    id_block,
)
from projections import TERMINAL, RunState

__all__ = [
    "RAW_SEND",
    "QuietDrops",
    "StreamGate",
    "TenantStreamCaps",
    "encode_page",
    "open_stream",
    "resolve_cursor",
    "resolve_visibility",
]

logger = logging.getLogger("runtrack.sse")
_T = TypeVar("_T")
_TERMINAL_LABELS = frozenset(status.value for status in TERMINAL)
RAW_SEND: ContextVar[Send | None] = ContextVar("runtrack_raw_send", default=None)
"""The ASGI server's own ``send`` for the request being handled (set by the app), used for
stream chunks. A context variable, not a scope key: the scope is held by the server's request
object, which the ``send`` method holds in turn, and that cycle would outlive every request."""


@dataclass(frozen=True)
class Channel:
    """What one stream carries: a filter, where it starts, and the run it ends with (if any)."""

    filter: EventFilter
    cursor: int
    run_id: str | None = None


class StreamGate:
    """Counts open streams, refuses new ones past the cap, and drops the stalled ones.

    A cancel scope and a timer around every send would cost more than the send itself at
    thousands of streams (docs/benchmarks.md, "Send timeouts"). Instead each stream notes when
    its pending send began, and one watchdog, running while any stream is open, drops those
    whose send has been pending longer than ``send_timeout``.
    """

    def __init__(
        self,
        limit: int,
        metrics: Metrics,
        send_timeout: float = 30.0,
        *,
        per_organization: int | None = None,
        per_key: int | None = None,
    ) -> None:
        self.limit = limit
        self.open = 0
        self.tenant_caps = TenantStreamCaps(
            per_organization=limit if per_organization is None else per_organization,
            per_key=limit if per_key is None else per_key,
        )
        self.send_timeout = send_timeout
        self._metrics = metrics
        self._watched: set[_Stream] = set()
        self._watchdog: asyncio.Task[None] | None = None

    def watch(self, stream: _Stream) -> None:
        self._watched.add(stream)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._drop_stalled())

    def unwatch(self, stream: _Stream) -> None:
        self._watched.discard(stream)

    async def _drop_stalled(self) -> None:
        period = min(1.0, max(0.05, self.send_timeout / 4))
        try:
            while self._watched:
                await asyncio.sleep(period)
                now = time.monotonic()
                for stream in [s for s in self._watched if s.is_stalled(now, self.send_timeout)]:
                    stream.drop()
        finally:
            self._watchdog = None

    async def aclose(self) -> None:
        if self._watchdog is not None:
            await cancel_and_wait([self._watchdog])

    def reserve(self, principal: Principal) -> None:
        """Count a new stream of ``principal``: 429 past its key's or organization's cap (its
        own doing), 503 past the server's (everyone's)."""
        self.tenant_caps.check(principal)
        if self.open >= self.limit:
            raise ApiError(
                503,
                "too_many_streams",
                f"the server holds {self.limit} streams already",
                headers={"Retry-After": _STREAM_RETRY_AFTER},
            )
        self.tenant_caps.add(principal)
        self.open += 1
        self._metrics.open_streams.inc()

    def release(self, principal: Principal) -> None:
        self.tenant_caps.remove(principal)
        self.open -= 1
        self._metrics.open_streams.dec()


class TenantStreamCaps:
    """Open streams per organization and per key, so that one tenant cannot take the server's
    whole stream cap; open mode (no key) counts as one key."""

    def __init__(self, *, per_organization: int, per_key: int) -> None:
        self.per_organization = per_organization
        self.per_key = per_key
        self._by_organization: Counter[str] = Counter()
        self._by_key: Counter[tuple[str, str | None]] = Counter()

    def check(self, principal: Principal) -> None:
        if self._by_key[_key_of(principal)] >= self.per_key:
            raise _tenant_refusal("key", "this key", self.per_key)
        if self._by_organization[principal.organization_id] >= self.per_organization:
            raise _tenant_refusal("organization", "this organization", self.per_organization)

    def add(self, principal: Principal) -> None:
        self._by_key[_key_of(principal)] += 1
        self._by_organization[principal.organization_id] += 1

    def remove(self, principal: Principal) -> None:
        _decrement(self._by_key, _key_of(principal))
        _decrement(self._by_organization, principal.organization_id)


_STREAM_RETRY_AFTER = "5"


def _key_of(principal: Principal) -> tuple[str, str | None]:
    return principal.organization_id, principal.key_id


def _decrement(counts: Counter[_T], name: _T) -> None:
    """One fewer; a name at zero is forgotten, so the counters hold only open streams."""
    counts[name] -= 1
    if counts[name] <= 0:
        del counts[name]


def _tenant_refusal(cap: str, holder: str, limit: int) -> ApiError:
    return ApiError(
        429,
        f"too_many_streams_per_{cap}",
        f"{holder} holds {limit} open streams already (the per-{cap} stream cap); close one "
        "or retry later",
        headers={"Retry-After": _STREAM_RETRY_AFTER},
        cap=f"per_{cap}",
        limit=limit,
    )


def resolve_visibility(request: Request, principal: Principal) -> Visibility:
    """The requested visibility (default operator), capped by the key's role.

    A key asking for more than its role allows gets what its role allows (see docs/api.md): an
    ``EventSource`` cannot read an error body, so a silent cap serves dashboards better than 403.
    """
    raw = request.query_params.get("visibility")
    try:
        wanted = Visibility.OPERATOR if raw is None else Visibility.parse(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_visibility", str(exc)) from exc
    return min(wanted, principal.role.max_visibility)


def resolve_cursor(
    request: Request,
    head: int,
    *,
    run: RunState | None = None,
    sequence_ids: dict[int, int] | None = None,
) -> int:
    """Cursor priority: ``Last-Event-ID`` > ``after_event_id`` > ``after_sequence`` (runs only)."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        return _event_cursor(header, "Last-Event-ID", head)
    param = request.query_params.get("after_event_id")
    if param is not None:
        return _event_cursor(param, "after_event_id", head)
    sequence = request.query_params.get("after_sequence")
    if sequence is not None and run is not None and sequence_ids is not None:
        return _sequence_cursor(sequence, run, sequence_ids)
    return 0


def _event_cursor(raw: str, name: str, head: int) -> int:
    value = _non_negative(raw, name)
    if value > head:
        raise ApiError(
            400,
            "invalid_cursor",
            f"{name} {value} is beyond the head of the log ({head})",
            cursor=value,
            head=head,
        )
    return value


def _sequence_cursor(raw: str, run: RunState, sequence_ids: dict[int, int]) -> int:
    value = _non_negative(raw, "after_sequence")
    if value > run.last_sequence:
        raise ApiError(
            400,
            "invalid_cursor",
            f"after_sequence {value} is beyond the run's last sequence ({run.last_sequence})",
            cursor=value,
            last_sequence=run.last_sequence,
        )
    return sequence_ids.get(value, 0)


def _non_negative(raw: str, name: str) -> int:
    return bounded_int(raw, name, code="invalid_cursor")


def encode_page(page: EventPage) -> bytes:
    """One chunk for a whole page; an id-only block when the page scanned past its last event.

    The chunk is kept on the page: live pages are shared by every stream woken at the same
    cursor on the same channel (see ``Broadcaster.since``), so it is built once for all.
    """
    chunk: bytes | None = page.__dict__.get("_chunk")
    if chunk is None:
        parts = [encode_event(event) for event in page.events]
        if not page.events or page.events[-1].id < page.position:
            parts.append(id_block(page.position))
        chunk = page.__dict__["_chunk"] = "".join(parts).encode("utf-8")
    return chunk


def _last_status(page: EventPage) -> str | None:
    """The status the page's last status change moved to, if it has one."""
    for event in reversed(page.events):
        if event.event_type == EventType.RUN_STATUS_CHANGED:
            return str(event.payload["to"])
    return None


async def frames(
    store: EventStore, channel: Channel, *, retry_ms: int, heartbeat: float
) -> AsyncGenerator[bytes, None]:
    """The stream's bytes: the prelude, a replay framed by the database, then the live tail.

    The replay stops as soon as the live tail's buffer covers the cursor; ``subscribe`` then
    carries on from that cursor, so the hand-off neither skips nor repeats an event.
    """
    yield f"retry: {retry_ms}\n: stream open at {channel.cursor}\n\n".encode()
    cursor = channel.cursor
    run_id = channel.run_id
    async with aclosing(Replay(store, channel.filter, cursor).pages()) as replay:
        async for replayed in replay:
            if run_id is None and await _archived_since(store, cursor):
                return  # the client reconnects from its cursor and is told (410)
            cursor = replayed.position
            yield replayed.chunk
            if run_id and (end := await _end_of_run(store, channel, replayed.last_status, cursor)):
                yield end
                return
    subscription = store.subscribe(channel.filter, after=cursor, idle_timeout=heartbeat)
    try:
        async for page in subscription:
            if not page.events and page.position == cursor:
                yield b": heartbeat\n\n"
                continue
            cursor = page.position
            yield encode_page(page)
            if run_id and (end := await _end_of_run(store, channel, _last_status(page), cursor)):
                yield end
                return
    finally:
        await subscription.aclose()


async def _archived_since(store: EventStore, cursor: int) -> bool:
    """Whether an archive has taken events after ``cursor`` (checked after each replayed page
    was read, so a page read before the archive is whole and one read after it is never
    sent with a gap). Not for run channels: a run's cursor may be older than the cut while
    none of the run's events were archived (``streams._check_run_cursor`` decides at open)."""
    try:
        await store.check_cursor(cursor)
    except CursorExpired:
        return True
    return False


async def _end_of_run(
    store: EventStore, channel: Channel, seen: str | None, position: int
) -> bytes | None:
    """The ``end`` event, when a run channel that has sent up to ``position`` is at the run's
    end: the run's latest status change is at or before ``position``, to a terminal status.

    ``seen`` is the status the last status change the stream sent moved to. A stream that
    sees every event and has seen no terminal status cannot be at the end; any other asks the
    log: a run that failed may have been resumed since (its stream goes on, wherever its pages
    happen to break), and a status change above the stream's visibility still ends the run
    (docs/design.md's own example event has one at ``operator``).
    """
    run_id = channel.run_id
    sees_all = channel.filter.visibility is Visibility.INTERNAL
    if run_id is None or (sees_all and seen not in _TERMINAL_LABELS):
        return None
    latest = await store.last_status_change(run_id)
    if latest is None or latest[0] > position or latest[1] not in _TERMINAL_LABELS:
        return None
    return _end(run_id, latest[1], position)


def _end(run_id: str, status: str, cursor: int) -> bytes:
    end = json.dumps({"run_id": run_id, "status": status, "last_event_id": cursor})
    return f"event: end\ndata: {end}\n\n".encode()


_NOTHING: tuple[bytes, ...] = ()
_DROPPED: ContextVar[bool] = ContextVar("runtrack_dropped_stream", default=False)
_UNFINISHED = "ASGI callable returned without completing response"


class QuietDrops(logging.Filter):
    """Hides uvicorn's error for a response ended unfinished, when it is a stream we dropped.

    A stalled client cannot be sent the end of the response, so uvicorn logs each drop as an
    application error. The drop is deliberate and logged (``runtrack.sse``, at INFO) and counted
    (``runtrack_dropped_slow_clients_total``); the request's context says whether it was one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_DROPPED.get() and record.getMessage().startswith(_UNFINISHED))


class _Stream(EventSourceResponse):
    """An EventSourceResponse whose body chunks we send ourselves, timed by the gate.

    sse-starlette sends the response start, watches for the client's disconnect and for the
    server's shutdown, and sends the response end; the chunks between are ours. It is handed
    an iterator that sends each chunk and yields nothing, so no chunk passes through its
    per-send timeout (a cancel scope, and a timer, around every write) and no private method
    of it is replaced: the watchdog's timing cannot vanish with a release that lacks one.
    """

    def __init__(
        self,
        gate: StreamGate,
        metrics: Metrics,
        principal: Principal,
        chunks: AsyncGenerator[bytes, None],
        **kwargs: object,
    ) -> None:
        super().__init__(self._send_all(chunks), **kwargs)  # type: ignore[arg-type]
        self._gate = gate
        self._principal = principal
        self._metrics = metrics
        self._sending_since: float | None = None
        self._scope = anyio.CancelScope()
        self._send: Send | None = None

    async def _send_all(self, chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """Sends every chunk, each timed for the watchdog; yields nothing (see the class)."""
        async with aclosing(chunks):
            async for chunk in chunks:
                await self._send_chunk(chunk)
        for nothing in _NOTHING:  # an async generator, as sse-starlette iterates one
            yield nothing

    async def _send_chunk(self, chunk: bytes) -> None:
        """One body chunk, straight to the server's ``send`` when the app left it
        (``RAW_SEND``): Starlette's middleware wrappers only watch for the response start,
        which goes through them, and their two calls per chunk would cost a share of every
        stream's sending."""
        assert self._send is not None, "a chunk is sent only while the response runs"
        self._sending_since = time.monotonic()
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            self._sending_since = None

    def is_stalled(self, now: float, limit: float) -> bool:
        return self._sending_since is not None and now - self._sending_since > limit

    def drop(self) -> None:
        self._scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = RAW_SEND.get() or send
        self._gate.watch(self)
        try:
            with self._scope:
                await super().__call__(scope, receive, send)
            if self._scope.cancelled_caught:
                _DROPPED.set(True)  # seen by QuietDrops when uvicorn logs the unfinished response
                self._metrics.dropped_clients.inc()
                logger.info("dropped a client that stopped reading")
        finally:
            self._gate.unwatch(self)
            self._gate.release(self._principal)


def open_stream(
    request: Request, store: EventStore, channel: Channel, principal: Principal
) -> Response:
    state = request.app.state
    settings = state.settings
    state.streams.reserve(principal)
    stream = _Stream(
        state.streams,
        state.metrics,
        principal,
        frames(store, channel, retry_ms=settings.retry_ms, heartbeat=settings.heartbeat_seconds),
        ping=0,
        headers={
            "Cache-Control": "no-cache, no-store",
            "X-Runtrack-Visibility": channel.filter.visibility.label,
        },
    )
    return state.open_streams.guard(stream, principal.key_id)  # type: ignore[no-any-return]
