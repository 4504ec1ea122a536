"""The event store: the one type the rest of the code holds, and what every backend shares.

A backend subclasses ``EventStore`` and supplies its abstract hooks: its writer backend (the
synchronous side that runs group transactions on the writer thread), its asynchronous readers,
its head query and its leadership lock. Everything else (the append path, reads, the live tail,
verification) is written once here, so the contract suite proves the same code on every backend.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Self, TypedDict, TypeVar

from .appending import EVENT_COLUMNS, AppendUnit, WriteContext, prepare_append
from .archive import _ANCHOR_SQL, Anchor, anchor_from_row, archive_unit
from .chain import ChainBreak, recompute_hash, verify_link
from .chain_versions import ChainVersions
from .checkpoints import Checkpointer, NoCheckpoints
from .dialect import Dialect
from .errors import ArchiveRefused, CursorExpired, InvalidCursor, StoreUnavailable, UnknownRun
from .heads import HeadChecks
from .leadership import Leadership
from .migrations import Migration
from .payloads import EventType
from .protocol import Projection, Row, VerifyReport
from .records import GENESIS_HASH, AgentEvent, EventFilter, EventPage, NewEvent, Visibility
from .segments import Batch, Manifest, _crash_point, segment_first_id
from .segments_ahead import SegmentsAhead
from .tail import Broadcaster, subscribe
from .tasks import cancel_and_wait
from .writer import GroupCommitWriter, WriterBackend

__all__ = [
    "ARCHIVE_BATCH",
    "CONSUMER_CURSORS_MIGRATION",
    "PARALLEL_READS",
    "STATUS_CHANGE",
    "STATUS_CHANGES_MIGRATION",
    "EventStore",
    "StoreOptions",
    "status_target_sql",
]

T = TypeVar("T")
STATUS_CHANGE = EventType.RUN_STATUS_CHANGED.value
STATUS_CHANGES_MIGRATION = Migration(
    3,
    "an index of each run's status changes",
    (
        "CREATE INDEX IF NOT EXISTS events_status_changes ON events (run_id, id) "
        f"WHERE event_type = '{STATUS_CHANGE}'",
    ),
)
"""Each run's status changes by id: a run's latest status, whoever may see it, in one step.
The same on both backends."""

CONSUMER_CURSORS_MIGRATION = Migration(
    4,
    "durable consumers' cursors",
    (
        "CREATE TABLE IF NOT EXISTS consumer_cursors "
        "(name TEXT PRIMARY KEY, event_id BIGINT NOT NULL, updated_at TEXT NOT NULL)",
    ),
)
"""How far each durable consumer of the log (an exporter) has passed: what it has not passed
must stay in the live log. The same on both backends."""

ARCHIVE_BATCH = 2500
"""Events per archive batch (one segment, one write unit): with 16 tasks appending during an
archive, batches of 2,500 kept their p99 at 33 to 37 ms where 5,000 gave 59 to 61 ms, at no lower
rate (docs/benchmarks.md, "Notes from the code")."""

QUIET_UNIT_EVENTS = 20_000
"""Events per archive unit while nothing else waits for the writer (its last unit found no
unit queued): fewer, larger deletes cost less per row; the next unit falls back to one
batch as soon as appends queue (docs/benchmarks.md, "the archive's rate")."""

PARALLEL_READS = 3
"""Reads of one long scan run at once where the backend scales (``parallel_reads``): with three,
one is always queued while a result is handed over, more gain nothing, and a fourth reader
stays free for other requests (docs/benchmarks.md, "Notes from the code")."""
logger = logging.getLogger("runtrack.store")
CommitListener = Callable[[Sequence[AgentEvent]], None]


class StoreOptions(TypedDict, total=False):
    """Options every backend takes and hands to ``EventStore``."""

    projections: Sequence[Projection]
    poll_interval: float
    tail_capacity: int
    page_size: int
    fanout_linger: float
    fanout_budget: float | None
    replace_stale_tables: bool


class EventStore(abc.ABC):
    """The append-only log of AgentEvents. Every backend passes the same contract suite.

    Use it as ``async with store:`` (or ``await store.open()`` then ``aclose()``): writes,
    reads and the live tail need an open store.
    """

    dialect: Dialect
    """Which SQL the database speaks, for the callers that write their own (projections)."""

    def __init__(
        self,
        *,
        projections: Sequence[Projection] = (),
        poll_interval: float = 0.5,
        tail_capacity: int = 20_000,
        page_size: int = 1000,
        fanout_linger: float = 0.0,
        fanout_budget: float | None = None,
        replace_stale_tables: bool = False,
    ) -> None:
        self.projections = tuple(projections)
        """The read models folded in every append's transaction, in the order given."""
        self._replace_stale_tables = replace_stale_tables
        self._fanout_linger = fanout_linger
        self._fanout_budget = fanout_budget
        self._poll_interval = poll_interval
        self._tail_capacity = tail_capacity
        self._scan_slots: asyncio.Semaphore | None = None
        self._page_size = page_size
        self._chain_v2_from: int | None = None
        self._writer: GroupCommitWriter | None = None
        self.stale_projections: list[str] = []
        """Projections found at open whose tables were filled under another schema (or never
        filled from this log): recreated empty with ``replace_stale_tables``, left as they were
        without it; ``projections.rebuild`` refills them."""
        self._broadcaster: Broadcaster | None = None
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._commit_listeners: list[CommitListener] = []

    # -- backend hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _writer_backend(self) -> WriterBackend:
        """The synchronous side the writer thread drives (connects when the writer starts)."""

    @abc.abstractmethod
    async def _open_readers(self) -> None:
        """Open the connections ``fetchall`` reads on."""

    @abc.abstractmethod
    async def _close_readers(self) -> None:
        """Close what ``_open_readers`` opened; called once, at ``aclose``."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a read query on a reader connection (never waits behind the writer)."""

    @abc.abstractmethod
    async def _recorded_head(self) -> int:
        """The highest id ever committed, as the database records it."""

    def _archive_checkpointer(self) -> Checkpointer:
        """What copies the database's journal back while an archive deletes (SQLite's WAL:
        ``eventstore/checkpoints.py``); nothing by default."""
        return NoCheckpoints()

    @abc.abstractmethod
    def leadership(self, name: str, *, interval: float = 1.0) -> Leadership:
        """A (not yet started) contest for ``name``: at most one holder per database at a time."""

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> Self:
        """Start the writer (creating or migrating the schema), the readers and the live tail."""
        backend = self._writer_backend()
        self._writer = GroupCommitWriter(
            backend, projections=self.projections, on_commit=self._on_commit
        )
        await self._writer.start()
        self.stale_projections = list(backend.stale_projections)
        await self._open_readers()
        self._broadcaster = Broadcaster(
            await self.head(),
            capacity=self._tail_capacity,
            linger=self._fanout_linger,
            wake_budget=self._fanout_budget,
        )
        self._poller = asyncio.create_task(self._poll(), name="runtrack-tail-poller")
        return self

    async def aclose(self) -> None:
        """End live subscriptions, finish the writer's queued work, close every connection."""
        if self._broadcaster is not None:
            self._broadcaster.close()
        await cancel_and_wait(task for task in [self._poller, *self._background] if task)
        if self._writer is not None:
            await self._writer.aclose()
        await self._close_readers()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- writing -------------------------------------------------------------------------------

    async def append(
        self,
        organization_id: str,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        expected_sequence: int | None = None,
        idempotency_key: str | None = None,
        conversation_id: str | None = None,
    ) -> list[AgentEvent]:
        """Append ``events`` to ``run_id`` atomically; the stored events, in order.

        ``expected_sequence`` makes it conditional on the run's last sequence (else
        ``ConcurrencyConflict``); a retry under the same ``idempotency_key`` returns the events
        the first attempt stored instead of writing again (a different append under that key is
        ``IdempotencyMismatch``).
        """
        request = prepare_append(
            organization_id,
            run_id,
            events,
            expected_sequence=expected_sequence,
            idempotency_key=idempotency_key,
            conversation_id=conversation_id,
        )
        if self._writer is None:
            raise StoreUnavailable("the event store is not open")
        return await self._writer.submit(AppendUnit(request))  # not via transact: a frame less

    async def transact(self, unit: Callable[[WriteContext], T]) -> T:
        """Run ``unit`` on the writer thread in the next group transaction, in its own savepoint
        (an ``AloneUnit``: in a group of its own)."""
        if self._writer is None:
            raise StoreUnavailable("the event store is not open")
        return await self._writer.submit(unit)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener`` on the event loop with the events of each group *this* store's
        writer commits (not those another process committed), once the tail holds them."""
        self._commit_listeners.append(listener)

    def _on_commit(self, events: list[AgentEvent], previous_head: int) -> None:
        broadcaster = self._tail()
        if not broadcaster.publish(events, previous_head):
            self._spawn(broadcaster.catch_up(self._read_after, events[-1].id))
        for listener in self._commit_listeners:
            try:
                listener(events)
            except Exception:  # an observer's fault must not keep the callers unanswered
                logger.exception("a commit listener failed")

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- reading -------------------------------------------------------------------------------

    async def head(self) -> int:
        """The highest committed event id (0 for an empty log; the anchor's once every event
        has been archived)."""
        row = await self.fetchall(
            "SELECT COALESCE(MAX(id), (SELECT MAX(cut_id) FROM log_anchor), 0) FROM events"
        )
        return int(row[0][0] or 0)

    async def chain_v2_from(self) -> int:
        """The first event id hashed with chain v2 (``chain_cutover.py``): fixed once the
        migration ran, so it is read once."""
        if self._chain_v2_from is None:
            rows = await self.fetchall("SELECT v2_from FROM chain_version")
            if not rows:
                raise StoreUnavailable("chain_version is empty: the schema was tampered with")
            self._chain_v2_from = int(rows[0][0])
        return self._chain_v2_from

    async def anchor(self) -> Anchor | None:
        """The last archived event (None while nothing has been archived)."""
        rows = await self.fetchall(_ANCHOR_SQL)
        return anchor_from_row(rows[0] if rows else None)

    async def oldest_event_id(self) -> int:
        """The first id the live log can hold: what an expired cursor's 410 names."""
        anchor = await self.anchor()
        return 1 if anchor is None else anchor.oldest_event_id

    async def segment_for(self, event_id: int) -> str | None:
        """The name of the segment that holds archived event ``event_id`` (None: not archived)."""
        rows = await self.fetchall(
            "SELECT name, last_id FROM archive_segments WHERE first_id <= ? "
            "ORDER BY first_id DESC LIMIT 1",
            (event_id,),
        )
        return str(rows[0][0]) if rows and int(rows[0][1]) >= event_id else None

    async def check_cursor(self, cursor: int) -> None:
        """``CursorExpired`` when ``cursor`` (≥ 1) points before the oldest kept event.

        Call it after reading from the cursor: an archive that committed before the read is
        then seen here, and one after it took nothing the read returned."""
        if cursor <= 0:
            return
        anchor = await self.anchor()
        if anchor is not None and cursor < anchor.cut_id:
            raise CursorExpired(
                f"cursor {cursor} is older than the oldest kept event ({anchor.oldest_event_id}):"
                " the events after it were archived",
                cursor=cursor,
                oldest_event_id=anchor.oldest_event_id,
            )

    async def archive_through(
        self, last_id: int, directory: Path, *, batch: int = ARCHIVE_BATCH
    ) -> list[Manifest]:
        """Move events up to ``last_id`` to segments in ``directory``, one batch per segment.

        One archive at a time per database (the ``archive`` lock). Segments left by a crash
        before their batch committed (their events are still live) are removed first and written
        again; each write unit takes one batch out while appends wait for the writer (up to
        ``QUIET_UNIT_EVENTS`` while none do), so appends go on between units."""
        lock = self.leadership("archive")
        if not await lock.acquire_now():
            raise ArchiveRefused("another archive of this database is running")
        try:
            return await self._archive_through(last_id, Path(directory), batch)
        finally:
            await lock.aclose()

    async def _archive_through(self, last_id: int, directory: Path, batch: int) -> list[Manifest]:
        anchor = await self.anchor()
        cut = (0, GENESIS_HASH) if anchor is None else (anchor.cut_id, anchor.cut_hash)
        await asyncio.to_thread(_drop_unfinished, directory, cut[0])
        written: list[Manifest] = []
        checkpoints = self._archive_checkpointer()
        ahead = SegmentsAhead(self._read_batch, _check_joins, directory, cut, last_id, batch)
        unit_events = batch
        try:
            while segments := await ahead.take(unit_events):
                unit = archive_unit(segments)
                anchor = await self.transact(unit)
                _crash_point("committed")
                manifests = [ready.manifest for ready in segments]
                checkpoints.committed(sum(m.count for m in manifests))
                written.extend(manifests)
                unit_events = batch if unit.others_waiting else max(batch, QUIET_UNIT_EVENTS)
                # nobody waited: write ahead during the next unit (0: appends have the gap)
                ahead.want(0 if unit.others_waiting else unit_events)
        finally:
            await ahead.aclose()
            await checkpoints.aclose()
        return written

    async def _read_batch(self, after: int, upto: int) -> Batch | None:
        """Events ``(after, upto]`` as a segment's lines (built by the database) and ends."""
        from .framing import read_export_lines  # framing builds on this module

        if upto <= after:
            return None
        lines, count, last = await read_export_lines(self, after, upto)
        if count == 0:
            return None
        ends = await self.fetchall(
            "SELECT id, prev_hash, hash, created_at FROM events WHERE id IN (?, ?) ORDER BY id",
            (after + 1, last),
        )
        organizations = await self.fetchall(
            "SELECT organization_id, COUNT(*) FROM events WHERE id > ? AND id <= ? "
            "GROUP BY organization_id",
            (after, last),
        )
        first_id, prev_hash = int(ends[0][0]), str(ends[0][1])
        return Batch(
            lines,
            first_id,
            last,
            count,
            prev_hash,
            str(ends[-1][2]),
            str(ends[-1][3]),
            {str(org): int(n) for org, n in organizations},
        )

    async def last_status_change(self, run_id: str) -> tuple[int, str] | None:
        """The id of ``run_id``'s latest status change and the status it moved to, whatever
        its visibility; None before the first. One step of ``STATUS_CHANGES_MIGRATION``'s index
        (the event type is written out so that both databases see the index applies)."""
        rows = await self.fetchall(
            f"SELECT id, {status_target_sql(self.dialect)} FROM events WHERE run_id = ? "
            f"AND event_type = '{STATUS_CHANGE}' ORDER BY id DESC LIMIT 1",
            (run_id,),
        )
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    async def consumer_cursors(self) -> dict[str, int]:
        """Each durable consumer's cursor: the last event id it has passed, by name."""
        rows = await self.fetchall("SELECT name, event_id FROM consumer_cursors")
        return {str(name): int(event_id) for name, event_id in rows}

    async def set_consumer_cursor(self, name: str, event_id: int) -> None:
        """Record that consumer ``name`` has passed ``event_id``; a cursor never moves back."""

        def unit(ctx: WriteContext) -> None:
            ctx.tx.execute(
                "INSERT INTO consumer_cursors (name, event_id, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET event_id = excluded.event_id, "
                "updated_at = excluded.updated_at "
                "WHERE excluded.event_id > consumer_cursors.event_id",
                (name, event_id, datetime.now(UTC).isoformat()),
            )

        await self.transact(unit)

    async def read(self, filter: EventFilter, *, after: int = 0, limit: int = 500) -> EventPage:
        """Events after ``after`` in id order; ``position`` says how far the scan reached."""
        if after < 0:
            raise InvalidCursor("a cursor is a non-negative event id", cursor=after)
        where, params = filter_sql(filter)
        if not where:  # no filter: the snapshot holds a prefix of the log, so no head is needed
            return await self._read_unfiltered(after, limit)
        head = await self.head()
        rows = await self.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? AND id <= ?{where} "
            "ORDER BY id LIMIT ?",
            (after, head, *params, limit),
        )
        events = [AgentEvent.from_row(row) for row in rows]
        position = events[-1].id if len(events) == limit else max(head, after)
        return EventPage(events, position)

    async def _read_unfiltered(self, after: int, limit: int) -> EventPage:
        events = await self._read_after(after, limit)
        return EventPage(events, events[-1].id if events else after)

    async def read_run(
        self,
        organization_id: str | None,
        run_id: str,
        *,
        after_sequence: int = 0,
        limit: int = 500,
        filter: EventFilter | None = None,
    ) -> list[AgentEvent]:
        """``run_id``'s events after ``after_sequence`` in sequence order, those ``filter``'s
        visibility lets through (``organization_id`` None: whichever organization owns it)."""
        flt = filter or EventFilter()
        flt = EventFilter(organization_id, run_id, None, flt.visibility)
        where, params = filter_sql(flt)
        rows = await self.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE sequence > ?{where} "
            "ORDER BY sequence LIMIT ?",
            (after_sequence, *params, limit),
        )
        return [AgentEvent.from_row(row) for row in rows]

    async def _read_after(self, after: int, limit: int) -> list[AgentEvent]:
        rows = await self.fetchall(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [AgentEvent.from_row(row) for row in rows]

    async def _read_page(self, flt: EventFilter, after: int, limit: int) -> EventPage:
        return await self.read(flt, after=after, limit=limit)

    def subscribe(
        self, filter: EventFilter, *, after: int = 0, idle_timeout: float | None = None
    ) -> AsyncGenerator[EventPage, None]:
        """Replay every matching event after ``after``, then follow live; never skips or repeats.

        With ``idle_timeout``, an empty page at the same position marks each idle interval.
        """
        return subscribe(
            self._tail(),
            self._read_page,
            filter,
            after,
            page_size=self._page_size,
            idle_timeout=idle_timeout,
        )

    @property
    def parallel_reads(self) -> int:
        """How many reads of one long scan are worth running at once (a replay's pages)."""
        return 1

    @property
    def scan_slots(self) -> asyncio.Semaphore:
        """Held by each read of a long scan: ``parallel_reads`` of them at once across every
        scan of this store, so that however many streams replay, a reader is left for the
        live tail's reads and for other requests."""
        if self._scan_slots is None:
            self._scan_slots = asyncio.Semaphore(self.parallel_reads)
        return self._scan_slots

    def live_from(self, cursor: int) -> bool:
        """Whether the live tail's buffer holds every event after ``cursor`` (no read needed)."""
        return self._tail().covers(cursor)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions the live tail is feeding now."""
        return self._tail().subscriber_count

    @property
    def indexed_channel_kinds(self) -> list[str]:
        """The channel kinds (run, conversation, organization) the live tail keeps lanes for
        now: those with a stream open, or that had one within the last quarter of the buffer's
        capacity in events."""
        return self._tail().indexed_kinds

    def _tail(self) -> Broadcaster:
        if self._broadcaster is None:
            raise StoreUnavailable("the event store is not open")
        return self._broadcaster

    async def _poll(self) -> None:
        """One poller per store: notices commits made by other processes on the same database."""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                head = await self.head()
                if head > self._tail().last_id:
                    await self._tail().catch_up(self._read_after, head)
            except StoreUnavailable:
                return
            except Exception:  # a failed poll must not end live delivery; the next one retries
                logger.exception("tail poll failed")

    # -- audit ---------------------------------------------------------------------------------

    async def verify(
        self,
        *,
        run_id: str | None = None,
        organization_id: str | None = None,
        heads: HeadChecks | None = None,
    ) -> VerifyReport:
        """Walk the chain (whole log, or one run's events against it); report the first break.

        ``organization_id`` scopes what is counted and looked up, never what is checked: the
        chain is global, so the whole-log walk checks every event and counts only that
        organization's. A run with no events (in that organization) raises ``UnknownRun``.
        ``heads`` checks signed heads on the whole-log walk (``eventstore/heads.py``).
        """
        if run_id is not None:
            return await self._verify_run(run_id, organization_id)
        return await self._verify_log(organization_id, heads or HeadChecks())

    async def _verify_log(self, organization_id: str | None, heads: HeadChecks) -> VerifyReport:
        """Verify every event up to the head recorded when the walk starts, one page at a time.

        The head is read first: appends that commit during the walk are beyond it and are left
        for the next verification, instead of looking like events missing at the end.
        """
        recorded = await self._recorded_head()
        walk = _Walk(organization_id, heads, await self.anchor())
        opening = heads.opening_problem() or heads.versions.learn(
            await self.chain_v2_from(), 1, "the database"
        )
        if opening is not None:
            return walk.broken(opening.event_id, opening.reason)
        while walk.prev_id < recorded:
            events = [
                e for e in await self._read_after(walk.prev_id, self._page_size) if e.id <= recorded
            ]
            if not events:
                break
            broken = walk.check(events)
            if broken is not None:
                return broken
        if recorded > walk.prev_id:
            return walk.broken(walk.prev_id + 1, "events at the end of the log are missing")
        cut = heads.finish(walk.first_id, walk.prev_id)
        if cut is not None:
            return walk.broken(cut.event_id, cut.reason)
        return walk.report(VerifyReport(True, walk.counted, walk.prev_id, walk.prev_hash))

    async def _verify_run(self, run_id: str, organization_id: str | None) -> VerifyReport:
        count, sequence, last_id, last_hash = 0, 0, 0, GENESIS_HASH
        anchor = await self.anchor()
        versions = ChainVersions(v2_from=await self.chain_v2_from())
        while True:
            events = await self.read_run(
                organization_id, run_id, after_sequence=sequence, limit=self._page_size
            )
            predecessors = await self._hashes_of([e.id - 1 for e in events])
            if anchor is not None:
                predecessors[anchor.cut_id] = anchor.cut_hash
            for event in events:
                if count == 0 and anchor is not None and event.id > anchor.cut_id:
                    sequence = event.sequence - 1  # the run's earlier events were archived
                if event.sequence != sequence + 1:
                    return _broken(
                        count,
                        last_id,
                        last_hash,
                        event.id,
                        "a run event before this one is missing",
                    )
                previous = predecessors.get(event.id - 1, GENESIS_HASH)
                problem = verify_link(event, previous, check_hash=False) or versions.whole(
                    event.id, event.hash, partial(recompute_hash, event)
                )
                if problem is not None:
                    return _broken(count, last_id, last_hash, problem.event_id, problem.reason)
                count, sequence, last_id, last_hash = (
                    count + 1,
                    event.sequence,
                    event.id,
                    event.hash,
                )
            if len(events) < self._page_size:
                if count == 0:
                    raise UnknownRun(f"run {run_id} not found", run_id=run_id)
                return VerifyReport(True, count, last_id, last_hash)

    async def _hashes_of(self, ids: list[int]) -> dict[int, str]:
        wanted = [i for i in ids if i > 0]
        if not wanted:
            return {}
        marks = ", ".join("?" for _ in wanted)
        rows = await self.fetchall(f"SELECT id, hash FROM events WHERE id IN ({marks})", wanted)
        return {int(row[0]): str(row[1]) for row in rows}


class _Walk:
    """Where a walk of the whole chain is: the last good event, and the events it counts."""

    def __init__(
        self, organization_id: str | None, heads: HeadChecks, anchor: Anchor | None = None
    ) -> None:
        self.organization_id = organization_id
        self.heads = heads
        self.walked, self.counted, self.prev_id, self.prev_hash = 0, 0, 0, GENESIS_HASH
        self.first_id = 1
        if anchor is not None:  # the archived prefix is proven by its segments, up to here
            self.walked, self.prev_id, self.prev_hash = 1, anchor.cut_id, anchor.cut_hash

    def check(self, events: Sequence[AgentEvent]) -> VerifyReport | None:
        """Check a page of events in id order; the report of the first break, if any."""
        for event in events:
            if event.id != self.prev_id + 1 and self.walked > 0:
                return self.broken(self.prev_id + 1, "this event is missing")
            problem = self._link(event) or self.heads.see(event)
            if problem is not None:
                return self.broken(problem.event_id, problem.reason)
            if self.walked == 0:
                self.first_id = event.id
            self.walked += 1
            if self.organization_id in (None, event.organization_id):
                self.counted += 1
            self.prev_id, self.prev_hash = event.id, event.hash
        return None

    def _link(self, event: AgentEvent) -> ChainBreak | None:
        """The event's link, and its hash in the version the cutover gives its id."""
        problem = verify_link(event, self.prev_hash, check_hash=False)
        return problem or self.heads.versions.whole(
            event.id, event.hash, partial(recompute_hash, event)
        )

    def broken(self, bad_id: int, reason: str) -> VerifyReport:
        return self.report(_broken(self.counted, self.prev_id, self.prev_hash, bad_id, reason))

    def report(self, report: VerifyReport) -> VerifyReport:
        """``report`` with what the walk checked of signed heads."""
        heads = self.heads
        return replace(
            report,
            signed_heads=heads.signed,
            signed_through=heads.signed_through,
            kept_heads=heads.kept_reached,
        )


def _broken(count: int, head_id: int, head_hash: str, bad_id: int, reason: str) -> VerifyReport:
    return VerifyReport(False, count, head_id, head_hash, first_bad_event_id=bad_id, reason=reason)


def _check_joins(batch: Batch, cut: int, cut_hash: str) -> None:
    """A batch to archive starts right after the anchor, links to it and has no gap."""
    if batch.first_id != cut + 1 or batch.prev_hash != cut_hash:
        raise ArchiveRefused(
            f"event {batch.first_id} does not follow the anchor (event {cut}): "
            "run 'runtrack audit verify'"
        )
    if batch.last_id - batch.first_id + 1 != batch.count:
        raise ArchiveRefused(f"events between {batch.first_id} and {batch.last_id} are missing")


def _drop_unfinished(directory: Path, cut: int) -> None:
    """Files of segments past the anchor were written by an archive that stopped before its
    batch committed (their events are still live): they go, and are written again."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        first = segment_first_id(path.name)
        if first is not None and first > cut:
            path.unlink()


def status_target_sql(dialect: Dialect) -> str:
    """The status a status change's payload moves to, in SQL."""
    return dialect.json_text("payload", "to")


def filter_sql(flt: EventFilter) -> tuple[str, list[Any]]:
    """SQL conditions (each starting with `` AND``) and parameters for ``flt``."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("organization_id", flt.organization_id),
        ("run_id", flt.run_id),
        ("conversation_id", flt.conversation_id),
    ):
        if value is not None:
            clauses.append(f" AND {column} = ?")
            params.append(value)
    if flt.visibility is not Visibility.INTERNAL:
        labels = flt.visibility.labels_up_to()
        clauses.append(f" AND visibility IN ({', '.join('?' for _ in labels)})")
        params.extend(labels)
    return "".join(clauses), params
