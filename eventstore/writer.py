"""Group commit: one writer thread, many waiting callers, one transaction per group.

Callers submit *write units* (callables taking a ``WriteContext``). The writer task takes every
unit queued so far, runs them on its dedicated thread inside one transaction, each in its own
savepoint (a unit that raises is rolled back alone and the others still commit), commits once,
publishes the committed events, and only then resolves each caller's future. While a group is
being committed, the next one accumulates: under load, each commit (and its fsync) is shared by
hundreds of appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .appending import Head, PlainAppend, WriteContext
from .errors import StoreError, StoreUnavailable
from .protocol import Projection, Transaction
from .records import AgentEvent

__all__ = ["GroupCommitWriter", "WriterBackend"]

T = TypeVar("T")
Unit = Callable[[WriteContext], Any]
logger = logging.getLogger("runtrack.writer")


class WriterBackend(Protocol):
    """The database side of the writer; every method runs on the writer thread."""

    stale_projections: list[str]
    """Projections found at ``connect`` with tables to refill from the log (projection_schemas)."""

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
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtrack-writer")
        self._task: asyncio.Task[None] | None = None
        self._state = _State.NEW

    async def start(self) -> None:
        await self._in_thread(self._backend.connect)
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="runtrack-writer")
        self._state = _State.RUNNING

    async def submit(self, unit: Callable[[WriteContext], T]) -> T:
        """Run ``unit`` in the next group; returns once its transaction has committed."""
        if self._state is not _State.RUNNING:
            raise StoreUnavailable("the event store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.append((unit, future))
        self._wakeup.set()
        return await future

    async def aclose(self) -> None:
        """Commit what is queued, then stop the writer and close its connection."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._wakeup.set()
        if self._task is not None:
            await self._task
        with contextlib.suppress(Exception):
            await self._in_thread(self._backend.close)
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                group, self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
                await self._commit(group)
            if self._state is _State.CLOSED:
                return

    async def _commit(self, group: list[_Pending]) -> None:
        units = [unit for unit, _ in group]
        try:
            result = await self._in_thread(self._run_group, units)
        except BaseException as exc:
            error = self._backend.translate(exc) or exc
            for _, future in group:
                _settle(future, False, error)
            if not isinstance(exc, Exception):
                raise
            return
        if result.committed and self._on_commit is not None:
            self._on_commit(result.committed, result.previous_head_id)
        for (_, future), (ok, value) in zip(group, result.outcomes, strict=True):
            _settle(future, ok, value)

    def _run_group(self, units: list[Unit]) -> _GroupResult:
        """On the writer thread: one transaction for the whole group, one commit.

        The fast path buffers every append and writes them together at the end. If that final
        write fails, the group is redone with each unit written inside its own savepoint, so
        the unit at fault fails alone.
        """
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
            backend.commit(context.head)
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
        context = WriteContext(tx, head, self._projections)
        context.preload([u.request.run_id for u in units if isinstance(u, PlainAppend)])
        outcomes = [self._run_unit(context, unit, isolated) for unit in units]
        if not isolated:
            try:
                context.flush()
            except Exception as exc:
                raise _FlushFailed from exc
        return context, outcomes

    def _run_unit(self, context: WriteContext, unit: Unit, isolated: bool) -> tuple[bool, Any]:
        """Run one unit; only units that may write SQL themselves need a savepoint."""
        backend = self._backend
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
