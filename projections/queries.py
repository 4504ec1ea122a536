"""Read side: runs by id, filtered listings with cursors, messages, usage, journal, time travel.

Listings page by keyset on ``created_event_id`` (the id of the run's ``run_created`` event),
which never changes: a listing that pages while runs are being created neither skips nor repeats
a run that existed when it started. Cursors are opaque to clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from eventstore import (
    EVENT_COLUMNS,
    AgentEvent,
    ArchiveReader,
    EventStore,
    EventType,
    InvalidCursor,
    RunArchived,
    RunStatus,
    SegmentError,
    UnknownRun,
    Visibility,
    event_columns,
)

from .lifecycle import ACTIVE
from .readmodel import RUN_COLUMNS, metadata_value, state_from_row
from .state import RunState, fold
from .status_history import StatusSample, TouchedRun, replay

__all__ = [
    "CURSOR_PATTERN",
    "DURATION_BOUNDS_MS",
    "RunFilter",
    "RunPage",
    "RunQueries",
    "RunStats",
    "Usage",
    "allowed_statuses",
    "decode_cursor",
    "encode_cursor",
]

Order = Literal["asc", "desc"]
_STATUS_CHANGE = EventType.RUN_STATUS_CHANGED.value
"""Written into the SQL, not bound: the partial index of status changes then serves it."""
MAX_LIMIT = 1000


@dataclass(frozen=True)
class RunFilter:
    statuses: tuple[RunStatus, ...] = ()
    active: bool | None = None
    agent_id: str | None = None
    conversation_id: str | None = None
    lane_key: str | None = None
    stop_reason: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    metadata: tuple[tuple[str, Any], ...] = ()
    run_id_prefix: str | None = None
    """Runs whose id starts with this text (a run id cut short, as people paste them)."""


@dataclass(frozen=True)
class RunPage:
    """``next_cursor`` goes back as ``after`` (next page); ``prev_cursor`` as ``before``."""

    items: list[RunState]
    next_cursor: str | None
    prev_cursor: str | None = None


DURATION_BOUNDS_MS = (1_000, 10_000, 60_000, 600_000, 3_600_000)
"""Upper bounds of the duration histogram's buckets; a last bucket holds everything longer."""


@dataclass(frozen=True)
class RunStats:
    """Counts over every run a filter matches (not one page): the board's counts and charts.

    ``durations`` counts finished runs by ``total_duration_ns``: one count per bound of
    ``DURATION_BOUNDS_MS`` (runs shorter than it and not shorter than the previous one), then
    one for longer runs.
    """

    total: int
    by_status: dict[str, int]
    durations: list[int]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    num_steps: int
    steps: list[dict[str, Any]] = field(default_factory=list)


CURSOR_PATTERN = "^r(0|[1-9][0-9]{0,17})$"
"""A listing cursor: ``r`` and the created_event_id of the run it stands at (below 10^18)."""
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(created_event_id: int) -> str:
    return f"r{created_event_id}"


def decode_cursor(cursor: str) -> int:
    if _CURSOR.match(cursor) is None:
        raise InvalidCursor(
            f"malformed cursor {cursor[:40]!r}: give a next_cursor or prev_cursor of a page",
            cursor=cursor[:40],
        )
    return int(cursor[1:])


class RunQueries:
    def __init__(self, store: EventStore, archive: ArchiveReader | None = None) -> None:
        self._store = store
        self._archive = archive
        """The segments of archived events, where this process can read them."""

    async def get(self, organization_id: str, run_id: str) -> RunState:
        rows = await self._store.fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ? AND organization_id = ?",
            (run_id, organization_id),
        )
        if not rows:
            raise UnknownRun(f"run {run_id} not found", run_id=run_id)
        return state_from_row(rows[0])

    async def list_runs(
        self,
        organization_id: str,
        flt: RunFilter = RunFilter(),
        *,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> RunPage:
        """One page of runs in creation order; ``next_cursor`` goes back as ``after``."""
        limit = max(1, min(limit, MAX_LIMIT))
        where, params = _where(organization_id, flt)
        backwards = before is not None
        where, params = _with_cursor(where, params, order, after, before)
        direction = _direction(order, reverse=backwards)
        rows = await self._store.fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE {where} "
            f"ORDER BY created_event_id {direction} LIMIT ?",
            (*params, limit + 1),
        )
        items = [state_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        if backwards:
            items.reverse()
        has_next = bool(items) and (backwards or more)
        has_prev = bool(items) and (more if backwards else after is not None)
        return RunPage(
            items,
            encode_cursor(items[-1].created_event_id) if has_next else None,
            encode_cursor(items[0].created_event_id) if has_prev else None,
        )

    async def stats(self, organization_id: str, flt: RunFilter = RunFilter()) -> RunStats:
        """Runs by status and finished runs by duration, over everything ``flt`` matches."""
        where, params = _where(organization_id, flt)
        by_status = {
            str(status): int(count)
            for status, count in await self._store.fetchall(
                f"SELECT status, COUNT(*) FROM runs WHERE {where} GROUP BY status", params
            )
        }
        bucket = " ".join(
            f"WHEN total_duration_ns < {bound * 1_000_000} THEN {index}"
            for index, bound in enumerate(DURATION_BOUNDS_MS)
        )
        durations = [0] * (len(DURATION_BOUNDS_MS) + 1)
        for index, count in await self._store.fetchall(
            f"SELECT CASE {bucket} ELSE {len(DURATION_BOUNDS_MS)} END AS bucket, COUNT(*) "
            f"FROM runs WHERE {where} AND total_duration_ns IS NOT NULL GROUP BY bucket",
            params,
        ):
            durations[int(index)] = int(count)
        return RunStats(sum(by_status.values()), by_status, durations)

    async def status_history(
        self, organization_id: str, flt: RunFilter, moments: Sequence[str]
    ) -> list[StatusSample]:
        """Runs by status at each of ``moments`` (ascending log timestamps, the last one now).

        One statement, so one snapshot: the runs whose status last changed at or before the
        first moment, counted as they are, and the status changes of every other run. The
        filter's statuses choose what is counted, not which runs are replayed.
        """
        runs = dataclasses.replace(flt, statuses=(), active=None)
        where, params = _where(organization_id, runs)
        rows = await self._store.fetchall(
            f"SELECT NULL, status, COUNT(*), NULL, NULL FROM runs WHERE {where} "
            "AND status_changed_at <= ? GROUP BY status "
            "UNION ALL SELECT r.run_id, r.created_at, e.id, e.created_at, e.payload "
            f"FROM (SELECT run_id, created_at FROM runs WHERE {where} "
            "AND status_changed_at > ?) r LEFT JOIN events e "
            f"ON e.run_id = r.run_id AND e.event_type = '{_STATUS_CHANGE}'",
            (*params, moments[0], *params, moments[0]),
        )
        steady = [(str(row[1]), int(row[2])) for row in rows if row[0] is None]
        touched: dict[str, TouchedRun] = {}
        for run_id, created_at, event_id, changed_at, payload in sorted(
            (row for row in rows if row[0] is not None), key=lambda row: (row[0], row[2] or 0)
        ):
            run = touched.setdefault(run_id, TouchedRun(str(created_at)))
            if event_id is not None:
                run.changes.append((str(changed_at), str(json.loads(payload)["to"])))
        return replay(moments, steady, touched.values(), allowed_statuses(flt))

    async def messages(
        self, organization_id: str, run_id: str, visibility: Visibility = Visibility.INTERNAL
    ) -> list[AgentEvent]:
        """The run's messages a reader capped at ``visibility`` may see, in order."""
        return await self._events_of_type(
            organization_id, run_id, EventType.MESSAGE_CREATED, visibility
        )

    async def usage(
        self, organization_id: str, run_id: str, visibility: Visibility = Visibility.INTERNAL
    ) -> Usage:
        """Token and step counters (the summary, whole) and the steps ``visibility`` may see."""
        state = await self.get(organization_id, run_id)
        steps = await self._state_events_of_type(state, EventType.STEP_COMPLETED, visibility)
        return Usage(
            state.prompt_tokens,
            state.completion_tokens,
            state.total_tokens,
            state.num_steps,
            [{"event_id": e.id, "created_at": e.created_at, **e.payload} for e in steps],
        )

    async def journal(
        self, organization_id: str, run_id: str, visibility: Visibility = Visibility.INTERNAL
    ) -> list[AgentEvent]:
        """The journal updates ``visibility`` may see, oldest first (the last is the current)."""
        return await self._events_of_type(
            organization_id, run_id, EventType.JOURNAL_UPDATED, visibility
        )

    async def tool_results(
        self, organization_id: str, run_id: str, visibility: Visibility = Visibility.INTERNAL
    ) -> list[AgentEvent]:
        state = await self.get(organization_id, run_id)
        archived = await self._archived_of_type(state, EventType.TOOL_FINISHED.value, visibility)
        labels = visibility.labels_up_to()
        rows = await self._store.fetchall(
            f"SELECT {event_columns('e')} FROM tool_results t JOIN events e ON e.id = t.event_id "
            f"WHERE t.run_id = ? AND e.visibility IN ({_marks(labels)}) ORDER BY e.id",
            (run_id, *labels),
        )
        if archived:  # the results the table points at, of those the archive holds
            kept = {
                int(row[0])
                for row in await self._store.fetchall(
                    "SELECT event_id FROM tool_results WHERE run_id = ?", (run_id,)
                )
            }
            archived = [e for e in archived if e.id in kept]
        return archived + [AgentEvent.from_row(row) for row in rows]

    async def archived_events(
        self, state: RunState, visibility: Visibility = Visibility.INTERNAL, after: int = 0
    ) -> tuple[list[AgentEvent], int] | None:
        """The run's archived events after ``after`` that ``visibility`` may see, read from the
        segments, and the cut (where its live events start); None when none of its events after
        ``after`` were archived. ``RunArchived``, naming the segment, when they cannot be read."""
        anchor = await self._store.anchor()
        if anchor is None:
            return None
        first, last = (
            max(after + 1, state.created_event_id),
            min(anchor.cut_id, state.last_event_id),
        )
        if first > last:
            return None
        segment = await self._store.segment_for(first)
        if self._archive is None:
            raise RunArchived(
                f"run {state.run_id}'s events from {first} are archived in segment {segment}; "
                "this server has no --archive-dir to read them from",
                run_id=state.run_id,
                segment=segment,
                oldest_event_id=anchor.oldest_event_id,
            )
        try:
            events = await asyncio.to_thread(self._archive.run_events, state.run_id, first, last)
        except SegmentError as exc:
            raise RunArchived(
                f"run {state.run_id}'s archived events cannot be read: {exc}",
                run_id=state.run_id,
                segment=segment,
                oldest_event_id=anchor.oldest_event_id,
            ) from exc
        labels = visibility.labels_up_to()
        return [e for e in events if e.visibility in labels], anchor.cut_id

    async def _archived_of_type(
        self, state: RunState, event_type: str, visibility: Visibility
    ) -> list[AgentEvent]:
        archived = await self.archived_events(state, visibility)
        return [] if archived is None else [e for e in archived[0] if e.event_type == event_type]

    async def state_at(self, organization_id: str, run_id: str, event_id: int) -> RunState:
        """The run as it was just after event ``event_id`` (a fold of a prefix of its events)."""
        archived = await self.archived_events(await self.get(organization_id, run_id))
        events: list[AgentEvent] = [] if archived is None else archived[0]
        events = [e for e in events if e.id <= event_id]
        sequence = events[-1].sequence if events else 0
        while True:
            page = await self._store.read_run(organization_id, run_id, after_sequence=sequence)
            events.extend(e for e in page if e.id <= event_id)
            if len(page) < 500 or page[-1].id > event_id:
                break
            sequence = page[-1].sequence
        state = fold(events)
        if state is None:
            raise UnknownRun(f"run {run_id} not found (or not yet created at event {event_id})")
        return state

    async def last_heartbeat(self, run_id: str) -> str | None:
        rows = await self._store.fetchall(
            "SELECT last_heartbeat_at FROM run_liveness WHERE run_id = ?", (run_id,)
        )
        return str(rows[0][0]) if rows else None

    async def _events_of_type(
        self, organization_id: str, run_id: str, event_type: str, visibility: Visibility
    ) -> list[AgentEvent]:
        state = await self.get(organization_id, run_id)
        return await self._state_events_of_type(state, event_type, visibility)

    async def _state_events_of_type(
        self, state: RunState, event_type: str, visibility: Visibility
    ) -> list[AgentEvent]:
        """The events of ``event_type`` of a run already read (archived ones first)."""
        archived = await self._archived_of_type(state, event_type, visibility)
        labels = visibility.labels_up_to()
        rows = await self._store.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ? AND event_type = ? "
            f"AND visibility IN ({_marks(labels)}) ORDER BY sequence",
            (state.run_id, event_type, *labels),
        )
        return archived + [AgentEvent.from_row(row) for row in rows]


def allowed_statuses(flt: RunFilter) -> list[str] | None:
    """The statuses ``flt`` lets through (``status`` narrowed by ``active``); None for all."""
    statuses = [s.value for s in flt.statuses]
    if flt.active is not None:
        active = sorted(s.value for s in ACTIVE)
        statuses = [s for s in statuses if s in active] if statuses else active
        if flt.active is False:
            statuses = sorted(s.value for s in RunStatus if s.value not in active)
    return statuses if statuses or flt.statuses else None


def _where(organization_id: str, flt: RunFilter) -> tuple[str, list[Any]]:
    clauses, params = ["organization_id = ?"], list[Any]([organization_id])
    statuses = allowed_statuses(flt)
    if statuses is not None:
        clauses.append(f"status IN ({_marks(statuses) or 'NULL'})")
        params.extend(statuses)
    if flt.run_id_prefix:  # substr, not LIKE: the same, case-sensitive, on both databases
        clauses.append("substr(run_id, 1, CAST(? AS INTEGER)) = ?")
        params.extend([len(flt.run_id_prefix), flt.run_id_prefix])
    for column in ("agent_id", "conversation_id", "lane_key", "stop_reason"):
        value = getattr(flt, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if flt.created_after is not None:
        clauses.append("created_at > ?")
        params.append(flt.created_after)
    if flt.created_before is not None:
        clauses.append("created_at < ?")
        params.append(flt.created_before)
    for key, value in flt.metadata:
        clauses.append(
            "run_id IN (SELECT run_id FROM run_metadata WHERE organization_id = ? "
            "AND key = ? AND value = ?)"
        )
        params.extend([organization_id, key, metadata_value(value)])
    return " AND ".join(clauses), params


def _with_cursor(
    where: str, params: list[Any], order: Order, after: str | None, before: str | None
) -> tuple[str, list[Any]]:
    for cursor, later in ((after, True), (before, False)):
        if cursor is not None:
            position = decode_cursor(cursor)
            comes_after = later == (order == "asc")
            where += f" AND created_event_id {'>' if comes_after else '<'} ?"
            params = [*params, position]
    return where, params


def _direction(order: Order, *, reverse: bool) -> str:
    ascending = (order == "asc") != reverse
    return "ASC" if ascending else "DESC"


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)
