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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Unpack, cast

import aiosqlite

from .appending import Head
from .archive import archive_migration
from .chain_cutover import chain_version_migration
from .checkpoints import Checkpointer, WalCheckpointer
from .connection_writer import ConnectionWriter
from .dialect import SQLITE, Dialect
from .errors import StoreError, StoreUnavailable, translate_driver_error
from .leadership import FileLock, Leadership
from .migrations import Migration, apply_migrations
from .protocol import Projection, Row
from .records import GENESIS_HASH
from .sqlite_library import memory_statistics_disabled
from .store import (
    CONSUMER_CURSORS_MIGRATION,
    PARALLEL_READS,
    STATUS_CHANGES_MIGRATION,
    EventStore,
    StoreOptions,
)

__all__ = ["WAL_AUTOCHECKPOINT_PAGES", "WRITER_CACHE_KIB", "SQLiteEventStore"]

# Bind None as NULL through a registered adapter. For every value that is not an int, float,
# str or bytearray, Python 3.11's sqlite3 looks an adapter up, and when there is none it also
# asks the protocol and the value (``__adapt__``, ``__conform__``) before binding None as NULL:
# 0.26 us per None, 0.11 with this adapter (an empty dict's ``get``: C code that gives None back
# for any key). A ``runs`` row binds about a dozen Nones (docs/benchmarks.md). Process-wide, and
# NULL either way.
sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))

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
    CONSUMER_CURSORS_MIGRATION,
    archive_migration(SQLITE),
    chain_version_migration(SQLITE),
)

BUSY_TIMEOUT_MS = 10_000
WRITER_CACHE_KIB = 65_536
"""The writer's page cache (SQLite's default: 2 MB, about 500 pages). Each group touches a page
of every run it appends to in the index by run, and the pages above them: with a large log and
hundreds of runs at once, that outgrows 500 pages and every group reads them back from the
file (docs/benchmarks.md, "Notes from the code"). The cache holds only pages read, up to
this bound."""
WAL_AUTOCHECKPOINT_PAGES = 10_000
"""The writer checkpoints the WAL once it holds this many pages (SQLite's default: 1,000).
Under concurrent appends every event dirties a page of its run in the index by run, and the
same pages are written again at every commit; a checkpoint copies each page once, however
many commits wrote it, so rarer checkpoints copy far fewer pages per event (docs/benchmarks.md,
"Notes from the code"). The WAL file then grows to about 40 MB before it is reused."""


_HEAD = (
    "SELECT s.seq, e.hash, e.created_at FROM sqlite_sequence AS s "
    "LEFT JOIN events AS e ON e.id = s.seq WHERE s.name = 'events'"
)
"""The log's head under the write lock: the highest id ever used, and that event."""


class _SQLiteWriter(ConnectionWriter[sqlite3.Connection]):
    """The writer side: every method runs on the store's writer thread."""

    dialect = SQLITE
    label = "SQLite"
    shared_lock = False

    def __init__(
        self,
        path: str,
        synchronous: Synchronous,
        projections: Sequence[Projection],
        *,
        replace_stale_tables: bool,
    ) -> None:
        super().__init__(projections, replace_stale_tables=replace_stale_tables)
        self._path = path
        self._synchronous = synchronous

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        connection.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        connection.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        return connection

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            tx = self._transaction(connection)
            apply_migrations(tx, MIGRATIONS)
            self._prepare_projection_tables(tx)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def _begin(self, connection: sqlite3.Connection) -> Head:
        connection.execute("BEGIN IMMEDIATE")
        # One statement, not two: each step is a release and a wait for the GIL on a busy server.
        row = connection.execute(_HEAD).fetchone()
        head_id = int(row[0]) if row else 0
        if head_id == 0:
            return Head(0, GENESIS_HASH, "")
        last = row[1:]
        if last[0] is None:
            last = connection.execute(
                "SELECT cut_hash, cut_created_at FROM log_anchor WHERE cut_id = ?", (head_id,)
            ).fetchone()  # every event has been archived: the anchor is the head
        if last is None or last[0] is None:
            raise StoreUnavailable(
                f"event {head_id}, the head of the log, is missing: the log was tampered with; "
                "run 'runtrack audit verify'"
            )
        return Head(head_id, last[0], last[1])

    def _in_transaction(self, connection: sqlite3.Connection) -> bool:
        return connection.in_transaction

    def translate(self, exc: BaseException) -> StoreError | None:
        return translate_error(exc)


def translate_error(exc: BaseException) -> StoreError | None:
    """sqlite3 errors become our errors here, at the boundary."""
    return translate_driver_error(
        exc, integrity=sqlite3.IntegrityError, driver=sqlite3.Error, name="SQLite"
    )


class SQLiteEventStore(EventStore):
    """The event store on one SQLite file (the default backend)."""

    dialect: Dialect = SQLITE

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

    def _archive_checkpointer(self) -> Checkpointer:
        return WalCheckpointer(self.path)

    def leadership(self, name: str, *, interval: float = 1.0) -> Leadership:
        return Leadership(FileLock(f"{self.path}.{name}.leader"), interval=interval)
