"""The SQLite backend: one file, WAL, one writer thread with group commit, pooled readers.

Durability: ``synchronous=FULL`` (the default) fsyncs the WAL at every commit, so an acknowledged
append survives a power cut; ``NORMAL`` fsyncs only at checkpoints, so an acknowledged append
survives a crash of the process but the last commits may be lost if the machine loses power.
Measured costs are in ``docs/benchmarks.md``.

Ids are assigned by the writer under the write lock (``BEGIN IMMEDIATE``) as the highest id ever
used plus one, read from ``sqlite_sequence`` (``AUTOINCREMENT``), so they are dense, never reused,
and commit-ordered even with several processes writing the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Unpack, cast

import aiosqlite

from .appending import Head
from .errors import StoreError, StoreUnavailable, translate_driver_error
from .leadership import FileLock, Leadership
from .migrations import Migration, apply_migrations
from .projection_schemas import prepare_projection_tables
from .protocol import Dialect, Projection, Row
from .records import GENESIS_HASH
from .sqlite_library import memory_statistics_disabled
from .store import PARALLEL_READS, STATUS_CHANGES_MIGRATION, EventStore, StoreOptions

__all__ = ["SQLiteEventStore"]

Synchronous = Literal["FULL", "NORMAL"]

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        organization_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        sequence INTEGER NOT NULL CHECK (sequence > 0),
        event_type TEXT NOT NULL,
        visibility TEXT NOT NULL CHECK (visibility IN ('user', 'operator', 'internal')),
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        UNIQUE (run_id, sequence)
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_conversation ON events (conversation_id)",
    "CREATE INDEX IF NOT EXISTS events_by_organization ON events (organization_id)",
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'the event log is append-only: UPDATE is not allowed'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'the event log is append-only: DELETE is not allowed'); END""",
    """CREATE TABLE IF NOT EXISTS run_streams (
        run_id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        last_sequence INTEGER NOT NULL,
        last_event_id INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        organization_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        run_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        first_event_id INTEGER NOT NULL,
        last_event_id INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (organization_id, idempotency_key)
    ) WITHOUT ROWID""",
)

MIGRATIONS = (
    Migration(1, "the event log, run heads and idempotency keys", SCHEMA),
    Migration(
        2,
        "events say whether their names need escaping in JSON",
        ("ALTER TABLE events ADD COLUMN plain_names INTEGER NOT NULL DEFAULT 0",),
    ),
    STATUS_CHANGES_MIGRATION,
)

BUSY_TIMEOUT_MS = 10_000


class _SQLiteTransaction:
    """The ``Transaction`` protocol over the writer's sqlite3 connection."""

    dialect: Dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._connection.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, rows)

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._connection.execute(sql, params).fetchone()
        return row

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._connection.execute(sql, params).fetchall()


class _SQLiteWriter:
    """The writer side: every method runs on the store's writer thread."""

    def __init__(
        self,
        path: str,
        synchronous: Synchronous,
        projections: Sequence[Projection],
        *,
        replace_stale_tables: bool,
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._projections = projections
        self._replace_stale_tables = replace_stale_tables
        self._connection: sqlite3.Connection | None = None
        self.stale_projections: list[str] = []

    def connect(self) -> None:
        connection = sqlite3.connect(
            self._path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._connection = connection
        self._create_schema(connection)

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            apply_migrations(
                lambda sql, params: connection.execute(sql, params or ()),
                lambda sql: connection.execute(sql).fetchall(),
                MIGRATIONS,
                "?",
            )
            self.stale_projections = prepare_projection_tables(
                lambda sql, params: connection.execute(sql, params or ()),
                lambda sql, params: connection.execute(sql, params).fetchall(),
                self._projections,
                "sqlite",
                "?",
                replace_stale=self._replace_stale_tables,
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def begin(self) -> tuple[_SQLiteTransaction, Head]:
        connection = self._open()
        connection.execute("BEGIN IMMEDIATE")
        return _SQLiteTransaction(connection), self._read_head(connection)

    def _read_head(self, connection: sqlite3.Connection) -> Head:
        row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        head_id = int(row[0]) if row else 0
        if head_id == 0:
            return Head(0, GENESIS_HASH, "")
        last = connection.execute(
            "SELECT hash, created_at FROM events WHERE id = ?", (head_id,)
        ).fetchone()
        if last is None:
            raise StoreUnavailable(
                f"event {head_id}, the head of the log, is missing: the log was tampered with; "
                "run 'runtrack audit verify'"
            )
        return Head(head_id, last[0], last[1])

    def savepoint(self) -> None:
        self._open().execute("SAVEPOINT unit")

    def release_savepoint(self) -> None:
        self._open().execute("RELEASE unit")

    def rollback_to_savepoint(self) -> None:
        connection = self._open()
        connection.execute("ROLLBACK TO unit")
        connection.execute("RELEASE unit")

    def commit(self, head: Head) -> None:
        self._open().execute("COMMIT")

    def rollback(self) -> None:
        connection = self._open()
        if connection.in_transaction:
            connection.execute("ROLLBACK")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def translate(self, exc: BaseException) -> StoreError | None:
        return translate_error(exc)

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreUnavailable("the SQLite writer is closed")
        return self._connection


def translate_error(exc: BaseException) -> StoreError | None:
    """sqlite3 errors become our errors here, at the boundary."""
    return translate_driver_error(
        exc, integrity=sqlite3.IntegrityError, driver=sqlite3.Error, name="SQLite"
    )


class SQLiteEventStore(EventStore):
    """The event store on one SQLite file (the default backend)."""

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "FULL",
        readers: int = 4,
        **options: Unpack[StoreOptions],
    ) -> None:
        super().__init__(**options)
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = str(path)
        self._synchronous: Synchronous = synchronous
        self._reader_count = readers
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []

    @property
    def parallel_reads(self) -> int:
        """Several, once SQLite's memory statistics are off (``sqlite_library``); before that,
        reads building strings on two threads contend on SQLite's allocator mutex."""
        return min(PARALLEL_READS, self._reader_count) if memory_statistics_disabled() else 1

    def _writer_backend(self) -> _SQLiteWriter:
        return _SQLiteWriter(
            self.path,
            self._synchronous,
            self.projections,
            replace_stale_tables=self._replace_stale_tables,
        )

    async def _open_readers(self) -> None:
        for _ in range(self._reader_count):
            connection = await aiosqlite.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
            await connection.execute("PRAGMA query_only=1")
            self._all_readers.append(connection)
            self._readers.put_nowait(connection)

    async def _close_readers(self) -> None:
        for connection in self._all_readers:
            await connection.close()
        self._all_readers.clear()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        connection = await self._readers.get()
        try:
            rows = await connection.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise translate_error(exc) or StoreUnavailable(str(exc)) from exc
        finally:
            self._readers.put_nowait(connection)
        return cast(list[Row], list(rows))

    async def _recorded_head(self) -> int:
        rows = await self.fetchall("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(rows[0][0]) if rows else 0

    def leadership(self, name: str, *, interval: float = 1.0) -> Leadership:
        return Leadership(FileLock(f"{self.path}.{name}.leader"), interval=interval)
