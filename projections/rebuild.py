"""Rebuild the read model from the log, or check that the live tables equal a rebuild.

Both fold the log in id order, in pages, into memory (one ``RunState`` per run, not the log).
``rebuild`` then replaces the tables in one write unit, which first folds whatever was appended
while it was reading, so nothing committed in between is lost. ``check`` writes nothing: it
compares each live row with the fold, folding further any run that moved on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from eventstore import (
    EVENT_COLUMNS,
    AgentEvent,
    EventStore,
    EventType,
    Row,
    WriteContext,
    record_fingerprint,
    refilled_events,
)

from .readmodel import (
    READ_MODEL_TABLES,
    RUN_COLUMNS,
    RunProjection,
    metadata_rows,
    snapshot_state,
    state_from_row,
    state_to_row,
)
from .state import RunState, advance, evolve

__all__ = ["RebuildReport", "check", "rebuild"]

_PAGE = 5000
_LOG_PAGE = 20_000
"""Events per read of the log: fewer, larger reads cost less per event (docs/benchmarks.md)."""
_TOOL_FINISHED = EventType.TOOL_FINISHED.value


@dataclass
class RebuildReport:
    events: int = 0
    runs: int = 0
    seconds: float = 0.0
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass
class _Fold:
    states: dict[str, RunState] = field(default_factory=dict)
    tool_results: dict[tuple[str, str], int] = field(default_factory=dict)
    position: int = 0
    events: int = 0

    def apply_rows(self, rows: Sequence[Row]) -> None:
        """Fold events, given as rows in id order. The states are this fold's own (``check``
        compares them, nothing keeps them), so they are changed in place, and the event is
        one object refilled per row; a refused event ends the fold."""
        if not rows:
            return
        states, tool_results = self.states, self.tool_results
        for event in refilled_events(rows):
            state = states.get(event.run_id)
            if state is None:
                states[event.run_id] = evolve(None, event)
            elif event.id > state.last_event_id:  # not already in an archive's snapshot
                advance(state, event)
            else:
                continue
            if event.event_type == _TOOL_FINISHED:
                tool_results[(event.run_id, event.payload["tool_call_id"])] = event.id
        _check_not_kept(event)
        self.position = int(rows[-1][0])
        self.events += len(rows)

    def release(self) -> None:
        """Let go of the states while collections are paused, so that the first collection
        afterwards does not walk every state of the log."""
        self.states = {}
        self.tool_results = {}


async def rebuild(store: EventStore) -> RebuildReport:
    """Drop and re-fold every read-model table from the log."""
    with _no_cyclic_collections():
        return await _rebuild(store)


async def _rebuild(store: EventStore) -> RebuildReport:
    started = time.perf_counter()
    folded = await _fold_pages(store)

    def replace_tables(context: WriteContext) -> None:
        context.flush()
        folded.apply_rows(
            context.tx.fetchall(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id", (folded.position,)
            )
        )
        _write_tables(context, folded)
        for projection in context.projections:
            if isinstance(projection, RunProjection):
                projection.forget()
        record_fingerprint(context.tx, RunProjection())

    await store.transact(replace_tables)
    report = RebuildReport(folded.events, len(folded.states), time.perf_counter() - started)
    folded.release()  # the writer may hold ``replace_tables`` (and so the fold) a while longer
    return report


async def check(store: EventStore) -> RebuildReport:
    """Rebuild into memory and report every difference with the live tables (writes nothing)."""
    with _no_cyclic_collections():
        return await _check(store)


async def _check(store: EventStore) -> RebuildReport:
    started = time.perf_counter()
    folded = await _fold_pages(store)
    live = await _live_runs(store)
    for run_id, row in live.items():
        await _catch_up(store, folded, run_id, row.last_event_id)
    differences = _compare_runs(folded, live)
    differences += await _compare_side_tables(store, folded, live)
    report = RebuildReport(folded.events, len(folded.states), time.perf_counter() - started)
    report.differences = differences
    return report


def _check_not_kept(event: AgentEvent) -> None:
    """A handler that kept the event itself, not its values, would see it change under it:
    refuse the fold rather than write what it made (``apply_rows``' name, this argument and
    ``getrefcount``'s own are the only references a fold leaves)."""
    if sys.getrefcount(event) > 3:
        raise RuntimeError("the fold kept an event: a rebuild cannot refill it per row")


@contextlib.contextmanager
def _no_cyclic_collections() -> Iterator[None]:
    """The fold keeps every run's state alive, so each automatic full collection walks all of
    them again while finding nothing to free (its share of a rebuild: docs/benchmarks.md).
    Rebuilds run before the server serves, or from the command line.
    Reference counting still frees everything; automatic collections resume afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _fold_pages(store: EventStore) -> _Fold:
    """Fold the log up to the head seen at start, reading each next page while folding one."""
    folded = await _from_snapshots(store)
    head = await store.head()
    pending = asyncio.ensure_future(store.fetchall(_PAGE_SQL, (folded.position, _LOG_PAGE)))
    while True:
        rows = await pending
        last = int(rows[-1][0]) if rows else head
        if last < head:
            pending = asyncio.ensure_future(store.fetchall(_PAGE_SQL, (last, _LOG_PAGE)))
        if last > head:
            folded.apply_rows([row for row in rows if int(row[0]) <= head])
            return folded
        folded.apply_rows(rows)
        if last >= head:
            return folded


async def _from_snapshots(store: EventStore) -> _Fold:
    """Start where the last archive cut the log: the runs as its snapshots kept them."""
    folded = _Fold()
    anchor = await store.anchor()
    if anchor is None:
        return folded
    rows = await store.fetchall(
        "SELECT snapshot FROM projection_snapshots WHERE projection = ?", (RunProjection.name,)
    )
    for (text,) in rows:
        state, tools = snapshot_state(str(text))
        folded.states[state.run_id] = state
        for call, event_id in tools.items():
            folded.tool_results[(state.run_id, call)] = event_id
    folded.position = anchor.cut_id
    return folded


_FOLDED_COLUMNS = EVENT_COLUMNS.replace("prev_hash, hash", "'' AS prev_hash, '' AS hash")
assert _FOLDED_COLUMNS != EVENT_COLUMNS
_PAGE_SQL = f"SELECT {_FOLDED_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?"
"""A page of the log (the store's own unfiltered read, as rows: the fold refills one event).
No handler reads an event's hashes and the refilled event never leaves the fold, so the page
leaves them out (empty): two 64-character strings fewer per row, 0.15-0.2 of the reader's
1.8 us per event (docs/benchmarks.md)."""


async def _catch_up(store: EventStore, folded: _Fold, run_id: str, until: int) -> None:
    """Fold a run's events committed after the log fold stopped, up to the live row's position."""
    state = folded.states.get(run_id)
    if state is not None and state.last_event_id >= until:
        return
    sequence = 0 if state is None else state.last_sequence
    for event in await store.read_run(None, run_id, after_sequence=sequence, limit=100_000):
        if event.id > until:
            break
        folded.states[run_id] = evolve(folded.states.get(run_id), event)
        if event.event_type == EventType.TOOL_FINISHED:
            folded.tool_results[(run_id, event.payload["tool_call_id"])] = event.id


async def _live_runs(store: EventStore) -> dict[str, RunState]:
    live: dict[str, RunState] = {}
    last = ""
    while True:
        rows = await store.fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id > ? ORDER BY run_id LIMIT ?",
            (last, _PAGE),
        )
        for row in rows:
            state = state_from_row(row)
            live[state.run_id] = state
        if len(rows) < _PAGE:
            return live
        last = str(rows[-1][0])


def _compare_runs(folded: _Fold, live: dict[str, RunState]) -> list[str]:
    differences = []
    for run_id, state in folded.states.items():
        row = live.get(run_id)
        if row is None:
            if state.last_event_id <= folded.position:
                differences.append(f"run {run_id}: in the log but missing from runs")
            continue
        expected, actual = state_to_row(state), state_to_row(row)
        if expected != actual:
            columns = [
                name
                for name, want, got in zip(RUN_COLUMNS.split(", "), expected, actual, strict=True)
                if want != got
            ]
            differences.append(f"run {run_id}: differs in {', '.join(columns)}")
    differences += [
        f"run {run_id}: in runs but not in the log"
        for run_id in live
        if run_id not in folded.states
    ]
    return differences


async def _compare_side_tables(
    store: EventStore, folded: _Fold, live: dict[str, RunState]
) -> list[str]:
    differences = []
    metadata = {(r[0], r[2]): r[3] for s in folded.states.values() for r in metadata_rows(s)}
    stored = await store.fetchall("SELECT run_id, key, value FROM run_metadata")
    live_metadata = {(r[0], r[1]): r[2] for r in stored if r[0] in live}
    expected_metadata = {k: v for k, v in metadata.items() if k[0] in live}
    if live_metadata != expected_metadata:
        differences.append("run_metadata differs from the log")
    rows = await store.fetchall("SELECT run_id, tool_call_id, event_id FROM tool_results")
    live_tools = {
        (r[0], r[1]): r[2] for r in rows if r[0] in live and r[2] <= live[r[0]].last_event_id
    }
    expected_tools = {
        k: v
        for k, v in folded.tool_results.items()
        if k[0] in live and v <= live[k[0]].last_event_id
    }
    if live_tools != expected_tools:
        differences.append("tool_results differs from the log")
    return differences


def _write_tables(context: WriteContext, folded: _Fold) -> None:
    tx = context.tx
    for table in READ_MODEL_TABLES:
        tx.execute(f"DELETE FROM {table}")
    states = list(folded.states.values())
    marks = ", ".join("?" for _ in RUN_COLUMNS.split(", "))
    for start in range(0, len(states), _PAGE):
        chunk = states[start : start + _PAGE]
        tx.executemany(
            f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({marks})", [state_to_row(s) for s in chunk]
        )
        tx.executemany(
            "INSERT INTO run_metadata (run_id, organization_id, key, value) VALUES (?, ?, ?, ?)",
            [row for s in chunk if s.metadata for row in metadata_rows(s)],
        )
    tx.executemany(
        "INSERT INTO tool_results (run_id, tool_call_id, event_id) VALUES (?, ?, ?)",
        [(run, call, event_id) for (run, call), event_id in folded.tool_results.items()],
    )
