"""The run read model tables and the projection that keeps them in the append's transaction.

Tables (portable SQL: the same DDL runs on SQLite and PostgreSQL):
- ``runs``: one row per run, the ``RunState`` of ``state.py``;
- ``run_metadata``: one row per metadata key, so ``key=value`` filters use an index;
- ``tool_results``: the idempotency envelope of tool calls, unique on (run_id, tool_call_id),
  pointing at the ``tool_finished`` event that holds the result;
- ``run_liveness``: heartbeats. Not derived from the log (heartbeats append no events), so not
  rebuilt and not compared by ``rebuild --check``.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from eventstore import (
    AgentEvent,
    Dialect,
    EventType,
    Projection,
    RefusedByProjection,
    Row,
    RunStatus,
    Transaction,
    canonical_json,
)

from .errors import LaneBusy
from .lifecycle import ACTIVE
from .state import RunState, evolve
from .views import Views, empty_views

__all__ = [
    "CACHED_RUNS",
    "READ_MODEL_TABLES",
    "RUN_COLUMNS",
    "RunProjection",
    "load_state",
    "metadata_rows",
    "snapshot_json",
    "snapshot_state",
    "state_from_row",
    "state_to_row",
]

_FIELDS = [field.name for field in dataclasses.fields(RunState)]
RUN_COLUMNS = ", ".join(_FIELDS)
_JSON_FIELDS = frozenset(
    {"tools_used", "child_run_ids", "journal", "metadata", "content_views", "question"}
)
_BOOL_FIELDS = frozenset(
    {"cancel_requested", "resume_available", "callback_pending", "resume_pending"}
)
_NOT_NULL_TEXT = frozenset(
    {
        "run_id",
        "organization_id",
        "conversation_id",
        "agent_id",
        "lane_key",
        "status",
        "created_at",
        "updated_at",
        "tools_used",
        "child_run_ids",
        "metadata",
        "content_views",
    }
)


def _column_type(field: dataclasses.Field[Any]) -> str:
    integer = field.name in _BOOL_FIELDS or field.type in ("int", "int | None")
    sql = "BIGINT" if integer else "TEXT"
    required = field.name in _NOT_NULL_TEXT or field.type == "int" or field.name in _BOOL_FIELDS
    return f"{field.name} {sql}{' NOT NULL' if required else ''}"


SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS runs ("
    + ", ".join(_column_type(f) for f in dataclasses.fields(RunState))
    + ", PRIMARY KEY (run_id))",
    "CREATE INDEX IF NOT EXISTS runs_by_created ON runs (organization_id, created_event_id)",
    "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (organization_id, status, created_event_id)",
    "CREATE INDEX IF NOT EXISTS runs_by_agent "
    "ON runs (organization_id, agent_id, status, created_event_id)",
    "CREATE INDEX IF NOT EXISTS runs_by_lane "
    "ON runs (organization_id, lane_key, status, lane_position)",
    "CREATE INDEX IF NOT EXISTS runs_by_conversation ON runs (conversation_id, created_event_id)",
    """CREATE TABLE IF NOT EXISTS run_metadata (
        run_id TEXT NOT NULL, organization_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        PRIMARY KEY (run_id, key))""",
    "CREATE INDEX IF NOT EXISTS run_metadata_lookup ON run_metadata (organization_id, key, value)",
    """CREATE TABLE IF NOT EXISTS tool_results (
        run_id TEXT NOT NULL, tool_call_id TEXT NOT NULL, event_id BIGINT NOT NULL,
        PRIMARY KEY (run_id, tool_call_id))""",
    """CREATE TABLE IF NOT EXISTS run_liveness (
        run_id TEXT NOT NULL PRIMARY KEY, last_heartbeat_at TEXT NOT NULL, worker_id TEXT)""",
)

READ_MODEL_TABLES = ("runs", "run_metadata", "tool_results")
"""The tables rebuilt from the log (``run_liveness`` is not derived from it)."""

CACHED_RUNS = 4096
"""Runs whose state the writer keeps in memory (least recently appended to dropped first)."""

_ACTIVE_LABELS = tuple(sorted(status.value for status in ACTIVE))
_INSERT = f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join('?' for _ in _FIELDS)})"


def state_to_row(state: RunState) -> tuple[Any, ...]:
    """The ``runs`` row of ``state``: every value taken at once, then only the columns that
    need a conversion converted (a rebuild writes one row per run, the append path one per new
    run; testing each of 45 names for its kind cost more than the conversions)."""
    row = list(_ALL_VALUES(state.__dict__))
    for index, convert in _CONVERSIONS:
        row[index] = convert(row[index])
    return tuple(row)


def _json_column(value: Any) -> str | None:
    """Canonical JSON, with the empty list and object (most runs' lists and metadata) as
    constants rather than encoded and checked each time."""
    if value is None:
        return None
    if not value:
        empty = _EMPTY_JSON.get(type(value))
        if empty is not None:
            return empty
    return canonical_json(list(value) if isinstance(value, tuple) else value)


def _views_column(views: Views) -> str | None:
    """The views of a run that has no content yet (nothing revealed: most short runs) as a
    constant, the others encoded: their canonical text is half of a ``runs`` row's cost."""
    if views == _NO_CONTENT:  # equal here means the same nested types, so the same text
        return _NO_CONTENT_JSON
    return _json_column(views)


_STATUS_LABELS: dict[RunStatus, str] = {status: status.value for status in RunStatus}
"""A status's stored label as a lookup: an enum member's ``value`` is a Python-level property."""
_NO_CONTENT = empty_views()
_NO_CONTENT_JSON = canonical_json(_NO_CONTENT)
_EMPTY_JSON: dict[type, str] = {tuple: "[]", list: "[]", dict: "{}"}
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_JSON_FIELDS, _json_column),
    "content_views": _views_column,
    **dict.fromkeys(_BOOL_FIELDS, int),
    "status": _STATUS_LABELS.__getitem__,
}
_CONVERSIONS = tuple(
    (index, _CONVERTERS[name]) for index, name in enumerate(_FIELDS) if name in _CONVERTERS
)
_ALL_VALUES = operator.itemgetter(*_FIELDS)


def _column_value(name: str, value: Any) -> Any:
    convert = _CONVERTERS.get(name)
    return value if convert is None else convert(value)


def state_from_row(row: Row) -> RunState:
    """A RunState from a ``runs`` row; on the append path, so it fills ``__dict__`` directly."""
    values: dict[str, Any] = dict(zip(_FIELDS, row, strict=True))
    for name in _JSON_FIELDS:
        values[name] = _decode_json(values[name])
    for name in _BOOL_FIELDS:
        values[name] = bool(values[name])
    values["status"] = RunStatus(values["status"])
    state = object.__new__(RunState)
    state.__dict__.update(values)
    return state


def snapshot_json(row: Row, tool_results: dict[str, int]) -> str:
    """A run's snapshot at an archive's cut: its ``runs`` row by column name, and its tool
    results (``tool_call_id`` → event id)."""
    return json.dumps({"row": dict(zip(_FIELDS, row, strict=True)), "tools": tool_results})


def snapshot_state(text: str) -> tuple[RunState, dict[str, int]]:
    """What ``snapshot_json`` wrote, back as a state and its tool results."""
    data = json.loads(text)
    return state_from_row(tuple(data["row"][name] for name in _FIELDS)), data["tools"]


def _decode_json(text: str | None) -> Any:
    if text is None:
        return None
    if text == "[]":
        return ()
    if text == "{}":
        return {}
    decoded = json.loads(text)
    return tuple(decoded) if isinstance(decoded, list) else decoded


def load_state(tx: Transaction, run_id: str) -> RunState | None:
    row = tx.fetchone(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
    return None if row is None else state_from_row(row)


def metadata_rows(state: RunState) -> list[tuple[str, str, str, str]]:
    return [
        (state.run_id, state.organization_id, key, metadata_value(value))
        for key, value in sorted(state.metadata.items())
    ]


def metadata_value(value: Any) -> str:
    """How a metadata value is matched by ``key=value`` filters: strings as they are, else JSON."""
    return value if isinstance(value, str) else canonical_json(value)


class FoldWatcher(Protocol):
    """Told of each event the projection folds, on the writer thread, before its commit: an
    event may still be rolled back, so a watcher keeps what it learns until the event is
    seen committed (``EventStore.add_commit_listener``)."""

    def folded(self, event: AgentEvent, before: RunState | None, after: RunState) -> None: ...


class RunProjection(Projection):
    """Folds each append into ``runs`` (and its side tables) inside the append's transaction.

    All checks (transition table, lane, duplicate tool results) run before the first write, so
    a refused append has written nothing and needs no savepoint of its own.

    The states of recently appended-to runs are kept in memory (write-through), so an append
    to a hot run folds over the state it left instead of reading the row back. An entry is
    used only when its ``last_sequence`` is the run's sequence read under the write lock:
    another process (a second server, a CLI on the same file) that appended in between moved
    that sequence, and the row is read again. Entries written since the last commit are
    dropped when anything rolls back, so a state the database forgot is never folded over.
    One instance per store: the cache belongs to that store's writer thread.
    """

    name = "runs"
    refuses_before_writing = True
    version = 3
    """Bump when the fold changes what the tables hold: they are then refilled from the log."""
    derived_tables = READ_MODEL_TABLES
    """Dropped and refilled from the log when the schema changes (eventstore/projection_schemas)."""

    def __init__(self, cache_size: int = CACHED_RUNS, watcher: FoldWatcher | None = None) -> None:
        self._watcher = watcher
        self._cache: OrderedDict[str, RunState] = OrderedDict()
        self._uncommitted: set[str] = set()
        self._cache_size = cache_size

    def schema(self, dialect: Dialect) -> Sequence[str]:
        return SCHEMA

    def state(self, tx: Transaction, run_id: str, sequence: int) -> RunState | None:
        """The run as it is in ``tx``, given its last sequence there (read under the lock)."""
        cached = self._cache.get(run_id)
        if cached is not None and cached.last_sequence == sequence:
            self._cache.move_to_end(run_id)
            return cached
        state = load_state(tx, run_id)
        if state is not None:
            self._remember(state)
        return state

    def committed(self) -> None:
        self._uncommitted.clear()

    def rolled_back(self) -> None:
        for run_id in self._uncommitted:
            self._cache.pop(run_id, None)
        self._uncommitted.clear()

    def forget(self) -> None:
        """Drop every cached state (the tables were refilled)."""
        self._cache.clear()
        self._uncommitted.clear()

    def _remember(self, state: RunState) -> None:
        self._cache[state.run_id] = state
        self._cache.move_to_end(state.run_id)
        self._uncommitted.add(state.run_id)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def archiving(self, tx: Transaction, first_id: int, last_id: int) -> None:
        """Keep each run the leaving events touched as it is now (its row and tool results):
        a rebuild starts from these and skips the events each one already folded."""
        runs = "SELECT DISTINCT run_id FROM events WHERE id BETWEEN ? AND ?"
        bounds = (first_id, last_id)
        tools: dict[str, dict[str, int]] = {}
        for run_id, call, event_id in tx.fetchall(
            f"SELECT run_id, tool_call_id, event_id FROM tool_results WHERE run_id IN ({runs})",
            bounds,
        ):
            tools.setdefault(run_id, {})[call] = int(event_id)
        rows = tx.fetchall(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id IN ({runs})", bounds)
        tx.executemany(
            "INSERT INTO projection_snapshots (projection, key, snapshot) VALUES (?, ?, ?) "
            "ON CONFLICT (projection, key) DO UPDATE SET snapshot = excluded.snapshot",
            [(self.name, row[0], snapshot_json(row, tools.get(row[0], {}))) for row in rows],
        )

    def apply(self, tx: Transaction, events: Sequence[AgentEvent]) -> None:
        for run_events in _by_run(events):
            self._apply_run(tx, run_events)

    def _apply_run(self, tx: Transaction, events: list[AgentEvent]) -> None:
        first = events[0]
        before = self.state(tx, first.run_id, first.sequence - 1)
        state = before
        tool_calls: list[tuple[str, int]] = []
        watcher = self._watcher
        for event in events:
            previous, state = state, evolve(state, event)
            if watcher is not None:
                watcher.folded(event, previous, state)
            if previous is not None and previous.status not in ACTIVE and state.status in ACTIVE:
                _check_lane_free(tx, state)
            if event.event_type == EventType.TOOL_FINISHED:
                tool_calls.append((event.payload["tool_call_id"], event.id))
        assert state is not None
        _check_new_tool_results(tx, state.run_id, tool_calls)
        self._write(tx, before, state, tool_calls)
        self._remember(state)

    def _write(
        self,
        tx: Transaction,
        before: RunState | None,
        state: RunState,
        tool_calls: list[tuple[str, int]],
    ) -> None:
        if before is None:
            tx.execute(_INSERT, state_to_row(state))
        else:
            _update(tx, before, state)
        if before is not None and before.metadata != state.metadata:
            tx.execute("DELETE FROM run_metadata WHERE run_id = ?", (state.run_id,))
        if state.metadata and (before is None or before.metadata != state.metadata):
            tx.executemany(
                "INSERT INTO run_metadata (run_id, organization_id, key, value) "
                "VALUES (?, ?, ?, ?)",
                metadata_rows(state),
            )
        if tool_calls:
            tx.executemany(
                "INSERT INTO tool_results (run_id, tool_call_id, event_id) VALUES (?, ?, ?)",
                [(state.run_id, call, event_id) for call, event_id in tool_calls],
            )


def _update(tx: Transaction, before: RunState, after: RunState) -> None:
    """Write only what the events changed: most appends touch three or four columns of forty,
    and the same ones append after append, so the statement of each set is built once."""
    old, new = before.__dict__, after.__dict__
    names = tuple([name for name in _FIELDS if old[name] != new[name]])
    sql = _UPDATES.get(names)
    if sql is None:
        sql = _update_sql(names)
    tx.execute(sql, (*[_column_value(name, new[name]) for name in names], after.run_id))


_UPDATES: dict[tuple[str, ...], str] = {}
"""``UPDATE runs`` by the columns it sets (a few dozen sets in practice; bounded anyway)."""
_MAX_UPDATES = 512


def _update_sql(names: tuple[str, ...]) -> str:
    if len(_UPDATES) >= _MAX_UPDATES:
        _UPDATES.clear()
    sql = f"UPDATE runs SET {', '.join(f'{name} = ?' for name in names)} WHERE run_id = ?"
    _UPDATES[names] = sql
    return sql


def _by_run(events: Sequence[AgentEvent]) -> Iterable[list[AgentEvent]]:
    groups: dict[str, list[AgentEvent]] = {}
    for event in events:
        groups.setdefault(event.run_id, []).append(event)
    return groups.values()


def _check_lane_free(tx: Transaction, state: RunState) -> None:
    """A lane is ``(organization, lane_key)``: another organization's runs never hold it."""
    marks = ", ".join("?" for _ in _ACTIVE_LABELS)
    holder = tx.fetchone(
        f"SELECT run_id, status FROM runs WHERE organization_id = ? AND lane_key = ? "
        f"AND status IN ({marks}) AND run_id <> ? LIMIT 1",
        (state.organization_id, state.lane_key, *_ACTIVE_LABELS, state.run_id),
    )
    if holder is not None:
        raise LaneBusy(
            f"lane {state.lane_key} is busy: run {holder[0]} is {holder[1]}",
            lane_key=state.lane_key,
            active_run_id=holder[0],
        )


def _check_new_tool_results(tx: Transaction, run_id: str, calls: list[tuple[str, int]]) -> None:
    if not calls:
        return
    ids = [call for call, _ in calls]
    if len(set(ids)) != len(ids):
        raise RefusedByProjection("one tool call finished twice", code="duplicate_tool_result")
    marks = ", ".join("?" for _ in ids)
    known = tx.fetchone(
        f"SELECT tool_call_id FROM tool_results WHERE run_id = ? AND tool_call_id IN ({marks})",
        (run_id, *ids),
    )
    if known is not None:
        raise RefusedByProjection(
            f"tool call {known[0]} already has a result",
            code="duplicate_tool_result",
            tool_call_id=known[0],
        )
