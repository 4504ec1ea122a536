"""Leadership: at most one server at a time runs the background services (reconciler, callbacks).

One lock per name, held for as long as the holder lives: on PostgreSQL a session advisory lock on
a dedicated connection (the database releases it when that connection dies, so a killed leader
hands over at once); on SQLite an ``flock`` on a file beside the database (the kernel releases it
when the process dies). Followers try again every ``interval`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from typing import Any, Protocol

from .tasks import cancel_and_wait

__all__ = ["FileLock", "Leadership", "PostgresAdvisoryLock"]

logger = logging.getLogger("runtrack.leadership")


class Lock(Protocol):
    async def try_acquire(self) -> bool: ...

    async def still_held(self) -> bool: ...

    async def release(self) -> None: ...


class Leadership:
    """Tries to hold ``lock``; ``is_leader`` says whether this process holds it right now."""

    def __init__(self, lock: Lock, *, interval: float = 1.0) -> None:
        self._lock = lock
        self._interval = interval
        self._leader = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def wait_until_leader(self) -> None:
        await self._leader.wait()

    async def acquire_now(self) -> bool:
        """Try once, without a background task (a one-off job: ``aclose`` releases it)."""
        if await self._lock.try_acquire():
            self._leader.set()
        return self.is_leader

    async def start(self) -> Leadership:
        self._task = asyncio.create_task(self._run(), name="runtrack-leadership")
        return self

    async def aclose(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
        self._leader.clear()
        with contextlib.suppress(Exception):
            await self._lock.release()

    async def _run(self) -> None:
        while True:
            try:
                held = await self._check()
            except Exception:  # a lost connection means no leadership until it is back
                logger.warning("leadership check failed", exc_info=True)
                held = False
            if held != self.is_leader:
                logger.info("leadership %s", "acquired" if held else "lost")
            (self._leader.set if held else self._leader.clear)()
            await asyncio.sleep(self._interval)

    async def _check(self) -> bool:
        if self.is_leader:
            return await self._lock.still_held()
        return await self._lock.try_acquire()


class FileLock:
    """An exclusive ``flock`` on a file; the kernel drops it when the process dies."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None

    async def try_acquire(self) -> bool:
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def still_held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class PostgresAdvisoryLock:
    """A session advisory lock on a connection of its own."""

    def __init__(self, url: str, key: int) -> None:
        self._url = url
        self._key = key
        self._connection: Any = None

    async def try_acquire(self) -> bool:
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        cursor = await self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def still_held(self) -> bool:
        if self._connection is None or self._connection.closed:
            return False
        await self._connection.execute("SELECT 1")  # raises when the connection is gone
        return True

    async def release(self) -> None:
        if self._connection is not None and not self._connection.closed:
            await self._connection.close()  # closing the session releases the lock
        self._connection = None
