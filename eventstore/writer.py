"""Group commit: one writer thread, many waiting callers, one transaction per group.

Callers submit *write units* (callables taking a ``WriteContext``). The writer thread takes every
unit queued so far, runs them inside one transaction, each in its own savepoint (a unit that
raises is rolled back alone and the others still commit), commits once, and hands the group
back to the event loop in one call, which publishes the committed events and only then resolves
each caller's future. While a group is being committed, the next one accumulates: under load,
each commit (and its fsync) is shared by hundreds of appends. The thread takes the next group
itself, as soon as it has committed one: it does not wait for the event loop, busy answering
the last group's callers, to hand it over.

When the next group is already queued, a committed group is handed back only once the next
one's writes are done, just before its COMMIT: the loop's burst of answers then runs while the
writer waits for the fsync (the GIL free), instead of holding the GIL while the writer begins
and writes the next group (docs/benchmarks.md, "the writer's hand-over"). With nothing queued,
with units other than plain appends or more than ``HELD_EVENTS`` events next, or where other
writers share the lock (PostgreSQL), a group is handed back at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import logging
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from .appending import Head, PlainAppend, RunHeads, WriteContext
from .errors import StoreError, StoreUnavailable
from .protocol import Projection, Transaction
from .records import AgentEvent

__all__ = ["AloneUnit", "GroupCommitWriter", "WriterBackend"]

T = TypeVar("T")
Unit = Callable[[WriteContext], Any]
logger = logging.getLogger("runtrack.writer")


class WriterBackend(Protocol):
    """The database side of the writer; every method runs on the writer thread."""

    stale_projections: list[str]
    """Projections found at ``connect`` with tables to refill from the log (projection_schemas)."""

    chain_v2_from: int
    """The first event id the chain hashes with v2 (``chain_cutover.py``), read at ``connect``."""

    shared_lock: bool
    """Other writers commonly hold the log's lock between this writer's groups (several servers
    on one PostgreSQL database): ``begin`` may wait for them, so no group is held through it."""

    def connect(self) -> None: ...

    def begin(self) -> tuple[Transaction, Head]:
        """Start a write transaction holding the log's write lock and read the head under it."""
        ...

    def savepoint(self) -> None: ...

    def release_savepoint(self) -> None: ...

    def rollback_to_savepoint(self) -> None: ...

    def commit(self, head: Head) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...

    def translate(self, exc: BaseException) -> StoreError | None:
        """Map a driver error to a StoreError, or None when it is not a database error."""
        ...


_IDLE_CHECK_SECONDS = 0.25
"""How often an idle writer thread looks whether its event loop is gone."""


class _FlushFailed(Exception):
    """The buffered writes of a group failed; the group is redone unit by unit."""


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


_Pending = tuple[Unit, "asyncio.Future[Any]"]
"""A queued unit and its caller's future (a tuple: one is built per append)."""


@dataclass(frozen=True)
class _GroupResult:
    outcomes: list[tuple[bool, Any]]
    committed: list[AgentEvent]
    previous_head_id: int


OnCommit = Callable[[list[AgentEvent], int], None]
_HandOver = tuple[Callable[..., None], list[_Pending], Any]
"""A group's answer for the event loop: the callback, the group, its result or error."""


class _Once:
    """``hand_over(*args)`` the first time it is called, nothing after (or without args)."""

    __slots__ = ("_args", "_hand_over")

    def __init__(self, hand_over: Callable[..., None], args: _HandOver | None) -> None:
        self._hand_over = hand_over
        self._args = args

    def __call__(self) -> None:
        args, self._args = self._args, None
        if args is not None:
            self._hand_over(*args)


class GroupCommitWriter:
    def __init__(
        self,
        backend: WriterBackend,
        *,
        projections: Sequence[Projection] = (),
        on_commit: OnCommit | None = None,
        max_group: int = 512,
    ) -> None:
        self._backend = backend
        self._projections = tuple(projections)
        self._appends_need_savepoints = _appends_need_savepoints(self._projections)
        self._on_commit = on_commit
        self._max_group = max_group
        self._heads = RunHeads()
        """The run heads of the last committed group (only the writer thread touches it)."""
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        """Units for the thread; ``None`` after the last (``aclose``)."""
        self._carried: _Pending | None = None
        """An ``AloneUnit`` taken off the queue to end the group before it: the next group."""
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtrack-writer")
        self._serving: concurrent.futures.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = _State.NEW

    async def start(self) -> None:
        await self._in_thread(self._backend.connect)
        self._loop = asyncio.get_running_loop()
        self._serving = self._thread.submit(self._serve)
        self._state = _State.RUNNING

    async def submit(self, unit: Callable[[WriteContext], T]) -> T:
        """Run ``unit`` in the next group; returns once its transaction has committed."""
        if self._state is not _State.RUNNING:
            raise StoreUnavailable("the event store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((unit, future))
        return await future

    async def aclose(self) -> None:
        """Commit what is queued, then stop the writer and close its connection."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._serving is not None:
            self._queue.put(None)
            # Its groups' hand-overs were queued on the loop before this wakes: all run first.
            await asyncio.wrap_future(self._serving)
        with contextlib.suppress(Exception):
            await self._in_thread(self._backend.close)
        self._thread.shutdown(wait=True)

    def _serve(self) -> None:
        """On the writer thread, until ``aclose``: each group as soon as it is queued."""
        closing = False
        held: _HandOver | None = None
        """The last group committed, not yet handed back (see the module's docstring)."""
        while not closing:
            group, closing = self._take(wait=held is None)
            if group:
                held = self._commit(group, held)
            elif held is not None:  # nothing queued: answer the last group now
                self._hand_over(*held)
                held = None
        if held is not None:
            self._hand_over(*held)

    def _take(self, *, wait: bool = True) -> tuple[list[_Pending], bool]:
        """Everything queued so far, up to ``max_group`` (unless ``wait`` is false, waiting for
        a first unit), and whether ``aclose`` came after it. An ``AloneUnit`` is a group of its
        own: the units queued before it go first, without it."""
        if self._carried is not None:
            first: _Pending | None = self._carried
            self._carried = None
        elif wait:
            first = self._next()
        else:
            try:
                first = self._queue.get_nowait()
            except queue.Empty:
                return [], False
        if first is None:
            return [], True
        group = [first]
        if runs_alone(first[0]):
            return group, False
        while len(group) < self._max_group:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if pending is None:
                return group, True
            if runs_alone(pending[0]):
                self._carried = pending
                break
            group.append(pending)
        return group, False

    def _next(self) -> _Pending | None:
        """The next unit, waiting for it; None after the last, or once the event loop is
        closed: a store never closed must not keep its process from exiting (the interpreter
        joins this thread at exit)."""
        while True:
            try:
                return self._queue.get(timeout=_IDLE_CHECK_SECONDS)
            except queue.Empty:
                if self._loop is None or self._loop.is_closed():
                    return None

    def _commit(self, group: list[_Pending], held: _HandOver | None) -> _HandOver | None:
        """Run ``group``; ``held``, the group before it, is handed back before this one's
        COMMIT (or its failure). Returns this group's hand-over, or None once made."""
        release = _Once(self._hand_over, held)
        try:
            result = self._run_group([unit for unit, _ in group], release)
        except BaseException as exc:
            release()
            error = self._backend.translate(exc) or exc
            self._hand_over(self._failed, group, error)
            if not isinstance(exc, Exception):
                raise
            return None
        release()
        if isinstance(unit := group[0][0], AloneUnit):
            unit.others_waiting = not self._queue.empty()
        return (self._committed, group, result)

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        """One call on the event loop per group (one wake-up for all its callers)."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody awaits the group
            self._loop.call_soon_threadsafe(callback, *args)

    def _committed(self, group: list[_Pending], result: _GroupResult) -> None:
        """On the loop: publish the group's events, then answer its callers (in that order:
        a caller that reads after its append sees it in the tail)."""
        try:
            if result.committed and self._on_commit is not None:
                self._on_commit(result.committed, result.previous_head_id)
        finally:
            for (_, future), (ok, value) in zip(group, result.outcomes, strict=True):
                _settle(future, ok, value)

    @staticmethod
    def _failed(group: list[_Pending], error: BaseException) -> None:
        for _, future in group:
            _settle(future, False, error)

    def _run_group(self, units: list[Unit], before_commit: Callable[[], None]) -> _GroupResult:
        """On the writer thread: one transaction for the whole group, one commit.

        The fast path buffers every append and writes them together at the end. If that final
        write fails, the group is redone with each unit written inside its own savepoint, so
        the unit at fault fails alone.
        """
        if self._backend.shared_lock or not _brief(units):
            before_commit()  # a lock wait, a unit of its own or a long group: answer first
        backend = self._backend
        tx, head = backend.begin()
        try:
            try:
                context, outcomes = self._apply(tx, head, units, isolated=False)
            except _FlushFailed:
                backend.rollback()
                self._rolled_back()
                tx, head = backend.begin()
                context, outcomes = self._apply(tx, head, units, isolated=True)
            before_commit()
            backend.commit(context.head)
            self._heads.keep(context)
        except BaseException:
            with contextlib.suppress(Exception):
                backend.rollback()
            self._rolled_back()
            raise
        for projection in self._projections:
            projection.committed()
        return _GroupResult(outcomes, context.committed, head.id)

    def _rolled_back(self) -> None:
        for projection in self._projections:
            projection.rolled_back()

    def _apply(
        self, tx: Transaction, head: Head, units: list[Unit], *, isolated: bool
    ) -> tuple[WriteContext, list[tuple[bool, Any]]]:
        context = WriteContext(
            tx, head, self._projections, self._backend.chain_v2_from, self._heads.take(head)
        )
        context.preload([u.request.run_id for u in units if isinstance(u, PlainAppend)])
        outcomes = [self._run_unit(context, unit, isolated) for unit in units]
        if not isolated:
            try:
                context.flush()
            except Exception as exc:
                raise _FlushFailed from exc
        return context, outcomes

    def _run_unit(self, context: WriteContext, unit: Unit, isolated: bool) -> tuple[bool, Any]:
        """Run one unit; only units that may write SQL themselves need a savepoint.

        A unit that runs alone needs none either: when it raises, its whole group (itself) is
        rolled back. A savepoint there cost a copy of every page the unit changed, in a
        journal of its own (an archive's delete: over a thousand pages; docs/benchmarks.md)."""
        backend = self._backend
        if runs_alone(unit):
            return True, unit(context)
        guarded = isolated or self._appends_need_savepoints or not isinstance(unit, PlainAppend)
        mark = context.mark()
        if guarded:
            backend.savepoint()
        try:
            value = unit(context)
            if isolated:
                context.flush()
        except Exception as exc:
            if guarded:
                backend.rollback_to_savepoint()
            context.reset(mark)
            self._rolled_back()
            return False, _as_store_error(backend, exc)
        if guarded:
            backend.release_savepoint()
        return True, value

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


HELD_EVENTS = 256
"""The most events a group may append while the group before it waits for its COMMIT to be
answered (about 10 ms of writes here): past that, the loop's burst no longer matters."""


class AloneUnit(Generic[T]):
    """A write unit that runs in a group of its own: a long one, such as an archive's delete,
    that the appends queued before it should not wait for, nor those queued during it share."""

    __slots__ = ("_run", "others_waiting")

    def __init__(self, run: Callable[[WriteContext], T]) -> None:
        self._run = run
        self.others_waiting = False
        """Set once it committed: whether other units were queued for the writer by then (an
        archive then keeps its next unit short)."""

    def __call__(self, context: WriteContext) -> T:
        return self._run(context)


def runs_alone(unit: Unit) -> bool:
    return isinstance(unit, AloneUnit)


def _brief(units: list[Unit]) -> bool:
    """Plain appends of at most ``HELD_EVENTS`` events in all: quick to write."""
    total = 0
    for unit in units:
        if not isinstance(unit, PlainAppend):
            return False
        total += len(unit.request.events)
    return total <= HELD_EVENTS


def _appends_need_savepoints(projections: Sequence[Projection]) -> bool:
    """A plain append needs no savepoint when nothing can write before refusing it: no
    projection, or a single one that does all its checks before its first write."""
    if not projections:
        return False
    return len(projections) > 1 or not projections[0].refuses_before_writing


def _as_store_error(backend: WriterBackend, exc: Exception) -> BaseException:
    if isinstance(exc, StoreError):
        return exc
    translated = backend.translate(exc)
    if translated is None:
        return exc
    translated.__cause__ = exc
    return translated


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the caller was cancelled; its unit may still have committed
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
