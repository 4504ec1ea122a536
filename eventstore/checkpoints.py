"""Copying SQLite's write-ahead log back into the database file beside the writer, not in it.

The writer checkpoints the WAL itself once it holds ``WAL_AUTOCHECKPOINT_PAGES`` pages, inside
the commit that crossed the mark, so every append queued behind that commit waits for it. An
archive deletes thousands of rows per unit (over a thousand pages each in ``bench.append``'s
log, by the bytes written), which crosses the mark every few units: those commits took up to ten
times the median. While
an archive runs, a connection and thread of its own checkpoint every few units instead
(``PASSIVE``: it never waits for the writer, and the writer never waits for it), which leaves
the writer's own checkpoints little or nothing to copy (docs/benchmarks.md, "archive rate with
appenders").
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Protocol

__all__ = ["CHECKPOINT_EVENTS", "Checkpointer", "NoCheckpoints", "WalCheckpointer"]

logger = logging.getLogger("runtrack.checkpoints")


CHECKPOINT_EVENTS = 10_000
"""Events archived between two checkpoints: four units of 2,500 in bench.append's log, about
5,000 WAL pages, under the writer's own mark. A checkpoint after every unit wrote twice the
bytes (pages the next unit changes again were copied each time) for no faster archive
(docs/benchmarks.md, "archive rate with appenders")."""


class Checkpointer(Protocol):
    """What an archive calls after each unit's commit, and once at its end."""

    def committed(self, events: int) -> None:
        """A unit of ``events`` committed: start a checkpoint if enough have passed since the
        last and none is running; never waits."""
        ...

    async def aclose(self) -> None:
        """Checkpoint what is left, wait for it, and let go of what it holds."""
        ...


class NoCheckpoints:
    """For databases with nothing to copy back (PostgreSQL checkpoints on its own)."""

    def committed(self, events: int) -> None:
        return

    async def aclose(self) -> None:
        return


class WalCheckpointer:
    """Passive checkpoints of one SQLite file, one at a time, on a connection of their own."""

    def __init__(self, path: str, every: int = CHECKPOINT_EVENTS) -> None:
        self._path = path
        self._every = every
        self._since = 0
        """Events committed since the last checkpoint started."""
        self._connection: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None

    def committed(self, events: int) -> None:
        self._since += events
        if self._since >= self._every:
            self._start()

    def _start(self) -> None:
        if self._running is not None:
            if not self._running.done():
                return
            _log_failure(self._running)
        self._since = 0
        self._running = asyncio.ensure_future(asyncio.to_thread(self._checkpoint))

    def _checkpoint(self) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False
            )
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def aclose(self) -> None:
        if self._since:
            if self._running is not None:
                await asyncio.wait([self._running])
            self._start()
        if self._running is not None:
            await asyncio.wait([self._running])
            _log_failure(self._running)
            self._running = None
        if self._connection is not None:
            await asyncio.to_thread(self._connection.close)
            self._connection = None


def _log_failure(done: asyncio.Future[None]) -> None:
    """A failed checkpoint loses nothing (the WAL keeps every commit, and the writer's own
    checkpoints go on): it is logged, and the archive goes on."""
    if not done.cancelled() and (error := done.exception()) is not None:
        logger.warning("a checkpoint during the archive failed: %r", error)
