"""What an append is: the caller-side preparation and the algorithm run inside the transaction.

``prepare_append`` runs in the caller's task (validation, canonical payload JSON), so the writer
thread only does what must be serialised: sequence checks, id and hash assignment, inserts.
``WriteContext`` is one group transaction as a write unit sees it; it is backend-neutral and
speaks the ``Transaction`` protocol, so SQLite and PostgreSQL share this code.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

from .chain import V2_LINK_PREFIX, canonical_json
from .errors import (
    ConcurrencyConflict,
    IdempotencyMismatch,
    InvalidEvent,
    StoreUnavailable,
    UnknownRun,
)
from .payloads import EventType, default_visibility, normal_json, normalise_payload
from .protocol import Projection, Transaction
from .records import AgentEvent, NewEvent, Visibility, quote_json

__all__ = [
    "CONTROL_CHARACTER",
    "EVENT_COLUMNS",
    "INSERT_EVENT",
    "AppendRequest",
    "AppendUnit",
    "Head",
    "PlainAppend",
    "PreparedEvent",
    "RunHeads",
    "WriteContext",
    "event_columns",
    "format_timestamp",
    "prepare_append",
]

MAX_EVENTS_PER_APPEND = 5000
MAX_ID_LENGTH = 200
CONTROL_CHARACTER = re.compile("[\\x00-\\x1f\\x7f-\\x9f]")
EVENT_COLUMNS = (
    "id, organization_id, run_id, conversation_id, sequence, event_type, visibility, payload, "
    "created_at, prev_hash, hash"
)


INSERT_EVENT = (
    f"INSERT INTO events ({EVENT_COLUMNS}, plain_names) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
"""One stored event: ``EVENT_COLUMNS``, then ``plain_names`` (see ``records.plain_names``)."""


def event_columns(alias: str) -> str:
    """``EVENT_COLUMNS`` qualified by a table alias, for joins."""
    return ", ".join(f"{alias}.{column.strip()}" for column in EVENT_COLUMNS.split(","))


@dataclass(frozen=True)
class PreparedEvent:
    event_type: str
    visibility: str
    payload_json: str


@dataclass(frozen=True)
class AppendRequest:
    organization_id: str
    run_id: str
    events: tuple[PreparedEvent, ...]
    expected_sequence: int | None = None
    idempotency_key: str | None = None
    conversation_id: str | None = None
    sent_fingerprint: str | None = None
    """The fingerprint of the events as the client sent them, when the server filled fields in
    (a status change's ``from``): a retry must match what was sent, not what it became."""

    def fingerprint(self) -> str:
        """What a retry under the same idempotency key must repeat exactly."""
        if self.sent_fingerprint is not None:
            return self.sent_fingerprint
        body = canonical_json(
            [self.run_id, [[e.event_type, e.visibility, e.payload_json] for e in self.events]]
        )
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


R = TypeVar("R", covariant=True)


@dataclass(frozen=True)
class PlainAppend(abc.ABC, Generic[R]):
    """A write unit that appends ``request`` and otherwise only reads, and fails only before
    its append or by it: the writer reads its run's head with the group's and gives it no
    savepoint of its own (when the projections allow, see ``writer``)."""

    request: AppendRequest

    @abc.abstractmethod
    def __call__(self, context: WriteContext) -> R: ...


@dataclass(frozen=True)
class AppendUnit(PlainAppend[list[AgentEvent]]):
    """The write unit of a plain append."""

    def __call__(self, context: WriteContext) -> list[AgentEvent]:
        return context.append(self.request)


def prepare_append(
    organization_id: str,
    run_id: str,
    events: Sequence[NewEvent],
    *,
    expected_sequence: int | None = None,
    idempotency_key: str | None = None,
    conversation_id: str | None = None,
) -> AppendRequest:
    """Validate an append and put its events in normal form; raises InvalidEvent."""
    _check_identifier("organization_id", organization_id)
    _check_identifier("run_id", run_id)
    if conversation_id is not None:
        _check_identifier("conversation_id", conversation_id)
    if idempotency_key is not None:
        _check_identifier("idempotency_key", idempotency_key)
    if expected_sequence is not None and (
        not isinstance(expected_sequence, int) or expected_sequence < 0
    ):
        raise InvalidEvent("expected_sequence must be a non-negative integer")
    if not events:
        raise InvalidEvent("an append needs at least one event")
    if len(events) > MAX_EVENTS_PER_APPEND:
        raise InvalidEvent(f"an append holds at most {MAX_EVENTS_PER_APPEND} events")
    prepared = tuple([_prepare_event(event) for event in events])
    return _frozen(
        AppendRequest,
        {
            "organization_id": organization_id,
            "run_id": run_id,
            "events": prepared,
            "expected_sequence": expected_sequence,
            "idempotency_key": idempotency_key,
            "conversation_id": conversation_id,
            "sent_fingerprint": None,
        },
    )


F = TypeVar("F")


def _frozen(cls: type[F], fields: dict[str, Any]) -> F:
    """An instance of the frozen dataclass ``cls`` with exactly ``fields`` (every field, none
    with a ``__post_init__``): its ``__init__`` without a ``object.__setattr__`` per field,
    half the cost, and ``prepare_append`` builds two per append."""
    instance = _new_instance(cls)
    _set_attribute(instance, "__dict__", fields)
    return instance


def _prepare_event(event: NewEvent) -> PreparedEvent:
    if not isinstance(event.event_type, str) or not event.event_type:
        raise InvalidEvent("event_type must be a non-empty string")
    payload_json = normal_json(event.event_type, event.payload)
    if payload_json is None:
        payload_json = _normal_form(event)
    if event.visibility is None:
        visibility = default_visibility(event.event_type)
    else:
        try:
            visibility = Visibility.parse(event.visibility)
        except ValueError as exc:
            raise InvalidEvent(str(exc), event_type=event.event_type) from exc
    return _frozen(
        PreparedEvent,
        {
            "event_type": event.event_type,
            "visibility": visibility.label,
            "payload_json": payload_json,
        },
    )


def _normal_form(event: NewEvent) -> str:
    """The payload validated by its model, in canonical JSON."""
    payload = normalise_payload(event.event_type, event.payload)
    try:
        return canonical_json(payload)
    except (TypeError, ValueError) as exc:  # NaN, infinities, or values JSON cannot hold
        raise InvalidEvent(
            f"payload of {event.event_type} is not plain JSON: {exc}", event_type=event.event_type
        ) from exc


def _check_identifier(name: str, value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(
            f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} characters"
        )
    if CONTROL_CHARACTER.search(value):
        raise InvalidEvent(
            f"{name} must not contain control characters (U+0000-U+001F, U+007F-U+009F)"
        )


class Head(NamedTuple):
    """The last event of the log as the writer sees it inside its transaction."""

    id: int
    hash: str
    created_at: str


class _Stream(NamedTuple):
    """A run's head as the writer sees it (named tuples: built once per append on the hot path)."""

    organization_id: str
    conversation_id: str
    last_sequence: int
    last_event_id: int
    exists: bool  # already in run_streams when the group began


class _Mark(NamedTuple):
    head: Head
    committed: int
    streams: int
    keys: int


_RUN_CREATED = EventType.RUN_CREATED.value
_quote = quote_json
_ESCAPED = json.encoder.ESCAPE
"""What ``records.plain_names`` looks for: a name with none of these is written as stored."""
_sha256 = hashlib.sha256
_V2_LINK = V2_LINK_PREFIX
_new_instance = object.__new__
_set_attribute = object.__setattr__
_tuple_new = tuple.__new__
"""Named tuples built without their ``__new__``'s Python frame (one of each per append)."""
_MISSING = _Stream("", "", 0, 0, exists=False)


class WriteContext:
    """One group transaction, as a write unit sees it.

    Appends are checked against an in-memory copy of the run heads they touch and their rows are
    buffered; ``flush`` writes the whole group with one ``executemany`` per table. A unit that
    reads the ``events`` table itself must call ``flush`` first.
    """

    def __init__(
        self,
        tx: Transaction,
        head: Head,
        projections: Sequence[Projection] = (),
        chain_v2_from: int = 1,
        streams: dict[str, _Stream] | None = None,
    ) -> None:
        self.tx = tx
        self.head = head
        self.chain_v2_from = chain_v2_from
        """The first id hashed with chain v2: the migration recorded the id after the head, so
        every event this writer appends is past it (``_build``)."""
        self.projections = tuple(projections)
        self.committed: list[AgentEvent] = []
        self._now = max(_utc_now(), head.created_at)
        self._quoted_now = _quote(self._now)
        self._rows: list[tuple[Any, ...]] = []
        """The ``INSERT_EVENT`` row of each event of ``committed``, in the same order."""
        self._streams: dict[str, _Stream] = {} if streams is None else streams
        """Run heads as of this transaction: ``RunHeads`` fills it with the heads the last group
        committed when nobody else has written since."""
        self._keys: dict[tuple[str, str], tuple[str, list[AgentEvent]]] = {}
        self._stream_undo: list[tuple[str, _Stream]] = []
        """Each run head replaced in ``_streams``, with the head it replaced (for ``reset``)."""
        self._key_undo: list[tuple[str, str]] = []
        self._flushed = 0

    def append(self, request: AppendRequest) -> list[AgentEvent]:
        """Append one request's events; raises a StoreError and changes nothing when refused."""
        if request.idempotency_key is not None:
            prior = self._prior_result(request)
            if prior is not None:
                return prior
        stream = self._stream_for(request)
        _check_expected_sequence(request, stream)
        events = self._build(request, stream)
        for projection in self.projections:
            projection.apply(self.tx, events)
        self._remember(request, stream, events)
        return events

    def run_sequence(self, run_id: str) -> int:
        """The run's last sequence in this transaction (0: no such run), read under the write
        lock: what a cached state of the run must have reached to be current."""
        if run_id not in self._streams:
            self.preload([run_id])
        return self._streams[run_id].last_sequence

    def run_last_event_id(self, run_id: str) -> int:
        """The id of the run's last event in this transaction (0: no such run)."""
        if run_id not in self._streams:
            self.preload([run_id])
        return self._streams[run_id].last_event_id

    def preload(self, run_ids: Sequence[str]) -> None:
        """Read the heads of many runs in one query (the writer calls this for each group)."""
        wanted = sorted({r for r in run_ids if r not in self._streams})
        for chunk in range(0, len(wanted), 500):
            part = wanted[chunk : chunk + 500]
            rows = self.tx.fetchall(
                "SELECT run_id, organization_id, conversation_id, last_sequence, last_event_id "
                f"FROM run_streams WHERE run_id IN ({', '.join('?' for _ in part)})",
                part,
            )
            found = {row[0]: _Stream(row[1], row[2], row[3], row[4], exists=True) for row in rows}
            for run_id in part:
                self._streams[run_id] = found.get(run_id, _MISSING)

    def run_heads(self) -> dict[str, _Stream]:
        """Every run head this transaction has read or written (for ``RunHeads``)."""
        return self._streams

    def flush(self) -> None:
        """Write every buffered event, run head and idempotency key of this group."""
        pending = self.committed[self._flushed :]
        if not pending:
            return
        self.tx.executemany(INSERT_EVENT, self._rows[self._flushed :])
        self._write_streams(pending)
        self._write_keys(pending)
        self._flushed = len(self.committed)

    def mark(self) -> _Mark:
        return _tuple_new(
            _Mark, (self.head, len(self.committed), len(self._stream_undo), len(self._key_undo))
        )

    def reset(self, mark: _Mark) -> None:
        """Forget everything a unit did after ``mark`` (its savepoint was rolled back)."""
        self.head = mark.head
        del self.committed[mark.committed :]
        del self._rows[mark.committed :]
        self._flushed = min(self._flushed, mark.committed)
        while len(self._stream_undo) > mark.streams:
            run_id, stream = self._stream_undo.pop()
            self._streams[run_id] = stream
        while len(self._key_undo) > mark.keys:
            self._keys.pop(self._key_undo.pop(), None)

    def _prior_result(self, request: AppendRequest) -> list[AgentEvent] | None:
        key = (request.organization_id, request.idempotency_key or "")
        known = self._keys.get(key)
        if known is None:
            known = self._stored_result(request)
        if known is None:
            return None
        fingerprint, events = known
        if fingerprint != request.fingerprint():
            raise IdempotencyMismatch(
                "this idempotency key was used for a different append",
                idempotency_key=request.idempotency_key,
            )
        return events

    def _stored_result(self, request: AppendRequest) -> tuple[str, list[AgentEvent]] | None:
        row = self.tx.fetchone(
            "SELECT run_id, fingerprint, first_event_id, last_event_id FROM idempotency_keys "
            "WHERE organization_id = ? AND idempotency_key = ?",
            (request.organization_id, request.idempotency_key),
        )
        if row is None:
            return None
        fingerprint = row[1] if row[0] == request.run_id else ""
        rows = self.tx.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id >= ? AND id <= ? ORDER BY id",
            (row[2], row[3]),
        )
        return fingerprint, [AgentEvent.from_row(r) for r in rows]

    def _stream_for(self, request: AppendRequest) -> _Stream:
        if request.run_id not in self._streams:
            self.preload([request.run_id])
        stream = self._streams[request.run_id]
        events = request.events
        creates = events[0].event_type == _RUN_CREATED
        if len(events) > 1 and any(e.event_type == _RUN_CREATED for e in events[1:]):
            raise InvalidEvent("run_created can only be the first event of a new run")
        if stream.last_sequence > 0:
            if stream.organization_id != request.organization_id:
                raise UnknownRun(f"run {request.run_id} not found", run_id=request.run_id)
            if creates:
                raise ConcurrencyConflict(
                    f"run {request.run_id} already exists",
                    run_id=request.run_id,
                    current_sequence=stream.last_sequence,
                )
            return stream
        if not creates:
            raise UnknownRun(f"run {request.run_id} not found", run_id=request.run_id)
        if request.conversation_id is None:
            raise InvalidEvent("creating a run needs a conversation_id")
        return _Stream(request.organization_id, request.conversation_id, 0, 0, stream.exists)

    def _build(self, request: AppendRequest, stream: _Stream) -> list[AgentEvent]:
        """The request's events with ids, sequences and hashes; their rows go to ``_rows``.

        The hashed texts are ``chain.event_hash``'s (chain v2: the content, then the link),
        written here with the parts every event of the request shares quoted once (a test in
        tests/eventstore/test_contract.py holds the two equal); the row is built at the same
        time, so ``flush`` walks no event again.
        """
        org, run, conversation, now = (
            stream.organization_id,
            request.run_id,
            stream.conversation_id,
            self._now,
        )
        names = f"{run}{conversation}{org}"
        plain = _ESCAPED.search(names) is None
        head = f'{{"conversation_id":{_quote(conversation)},"created_at":{self._quoted_now},'
        middle = f',"organization_id":{_quote(org)},"payload":'
        run_part = f',"run_id":{_quote(run)},"sequence":'
        prev_hash, event_id, seq = self.head.hash, self.head.id, stream.last_sequence
        if event_id < self.chain_v2_from - 1:
            raise StoreUnavailable(
                f"the log's head (event {event_id}) is before chain v2's first event "
                f"({self.chain_v2_from}): the log was truncated; run 'runtrack audit verify'"
            )
        events: list[AgentEvent] = []
        rows = self._rows
        for new in request.events:
            event_id += 1
            seq += 1
            event_type, visibility, payload_json = new.event_type, new.visibility, new.payload_json
            text = (
                f'{head}"event_type":{_quote(event_type)},"id":{event_id}{middle}{payload_json}'
                f'{run_part}{seq},"visibility":{_quote(visibility)}}}'
            )
            content = _sha256(text.encode("utf-8")).hexdigest()
            digest = _sha256(f"{_V2_LINK}{prev_hash}\n{content}".encode("ascii")).hexdigest()
            event = _new_instance(AgentEvent)
            _set_attribute(
                event,
                "__dict__",
                {
                    "id": event_id,
                    "organization_id": org,
                    "run_id": run,
                    "conversation_id": conversation,
                    "sequence": seq,
                    "event_type": event_type,
                    "visibility": visibility,
                    "payload_json": payload_json,
                    "created_at": now,
                    "prev_hash": prev_hash,
                    "hash": digest,
                },
            )
            events.append(event)
            rows.append(
                (
                    event_id,
                    org,
                    run,
                    conversation,
                    seq,
                    event_type,
                    visibility,
                    payload_json,
                    now,
                    prev_hash,
                    digest,
                    plain and _ESCAPED.search(event_type) is None,
                )
            )
            prev_hash = digest
        return events

    def _remember(self, request: AppendRequest, stream: _Stream, events: list[AgentEvent]) -> None:
        last = events[-1]
        self._stream_undo.append((request.run_id, self._streams[request.run_id]))
        self._streams[request.run_id] = _tuple_new(
            _Stream,
            (stream.organization_id, stream.conversation_id, last.sequence, last.id, stream.exists),
        )
        if request.idempotency_key is not None:
            key = (request.organization_id, request.idempotency_key)
            self._keys[key] = (request.fingerprint(), events)
            self._key_undo.append(key)
        self.head = _tuple_new(Head, (last.id, last.hash, last.created_at))
        self.committed.extend(events)

    def _write_streams(self, pending: list[AgentEvent]) -> None:
        touched = {e.run_id for e in pending}
        inserts, updates = [], []
        for run_id in sorted(touched):
            stream = self._streams[run_id]
            if stream.exists:
                updates.append((stream.last_sequence, stream.last_event_id, run_id))
            else:
                inserts.append(
                    (
                        run_id,
                        stream.organization_id,
                        stream.conversation_id,
                        stream.last_sequence,
                        stream.last_event_id,
                    )
                )
                self._streams[run_id] = _Stream(
                    stream.organization_id,
                    stream.conversation_id,
                    stream.last_sequence,
                    stream.last_event_id,
                    exists=True,
                )
        if inserts:
            self.tx.executemany(
                "INSERT INTO run_streams (run_id, organization_id, conversation_id, last_sequence, "
                "last_event_id) VALUES (?, ?, ?, ?, ?)",
                inserts,
            )
        if updates:
            self.tx.executemany(
                "UPDATE run_streams SET last_sequence = ?, last_event_id = ? WHERE run_id = ?",
                updates,
            )

    def _write_keys(self, pending: list[AgentEvent]) -> None:
        first_id = pending[0].id
        rows = [
            (
                org,
                key,
                events[0].run_id,
                fingerprint,
                events[0].id,
                events[-1].id,
                events[-1].created_at,
            )
            for (org, key), (fingerprint, events) in self._keys.items()
            if events and events[0].id >= first_id
        ]
        if rows:
            self.tx.executemany(
                "INSERT INTO idempotency_keys (organization_id, idempotency_key, run_id, "
                "fingerprint, first_event_id, last_event_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )


HEADS_KEPT = 16_384
"""The most run heads a writer keeps between groups (about 150 bytes each)."""


class RunHeads:
    """The run heads as the writer's last committed group left them, for its next group.

    Each group otherwise reads the heads of all its runs back from ``run_streams``: about a
    tenth of the writer's CPU per event under many concurrent runs (docs/benchmarks.md, "Notes
    from the code"). Only appends change ``run_streams``, and every append moves the log's
    head, which the next group reads under the write lock: when that head is still the one
    this writer committed, no other process (or writer) has appended since, and the kept heads
    are the stored ones. Otherwise they are dropped and read again. A group that fails leaves
    nothing kept: its heads are taken when it starts and given back only on commit.
    """

    def __init__(self, limit: int = HEADS_KEPT) -> None:
        self._limit = limit
        self._head: Head | None = None
        self._streams: dict[str, _Stream] = {}

    def take(self, head: Head) -> dict[str, _Stream]:
        """The kept heads if ``head`` (read under the lock) is the last one committed here."""
        streams = self._streams if head == self._head else {}
        self._head, self._streams = None, {}
        return streams

    def keep(self, context: WriteContext) -> None:
        """After ``context``'s transaction committed: its heads are the stored ones."""
        streams = context.run_heads()
        if len(streams) <= self._limit:
            self._head, self._streams = context.head, streams


def _check_expected_sequence(request: AppendRequest, stream: _Stream) -> None:
    expected = request.expected_sequence
    if expected is not None and expected != stream.last_sequence:
        raise ConcurrencyConflict(
            f"expected sequence {expected} but run {request.run_id} is at {stream.last_sequence}",
            run_id=request.run_id,
            expected_sequence=expected,
            current_sequence=stream.last_sequence,
        )


def _utc_now() -> str:
    return format_timestamp(datetime.now(UTC))


def format_timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601 with microseconds: sorts as text, hashes the same everywhere."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
