"""The PostgreSQL backend: several servers, one database.

Ids are commit-ordered across servers because every group transaction starts by locking the one
row of ``log_head`` (``SELECT … FOR UPDATE``) and keeps the lock to its commit: the next writer,
on any server, reads the head only after the previous commit, so a reader that has seen id N can
never later see a smaller id appear. (A sequence would hand out ids before commit.)

Each commit sends ``NOTIFY`` with the new head, as a wake-up hint only: a listener on every
server catches its tail up by reading from its own cursor, so a lost notification only delays
delivery until the next poll. The writer runs psycopg's synchronous API on the store's writer
thread (the same synchronous ``Transaction`` protocol as SQLite); readers use an async pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Unpack

import psycopg
from psycopg import sql as pgsql
from psycopg_pool import AsyncConnectionPool

from .appending import Head
from .archive import archive_migration
from .chain_cutover import chain_version_migration
from .connection_writer import ConnectionWriter
from .dialect import POSTGRESQL, Dialect
from .errors import StoreError, StoreUnavailable, translate_driver_error
from .leadership import Leadership, PostgresAdvisoryLock
from .migrations import Migration, apply_migrations
from .protocol import Projection, Row
from .records import GENESIS_HASH
from .store import (
    CONSUMER_CURSORS_MIGRATION,
    PARALLEL_READS,
    STATUS_CHANGES_MIGRATION,
    EventStore,
    StoreOptions,
)
from .tasks import cancel_and_wait, stop_requested

__all__ = ["PostgresEventStore"]

logger = logging.getLogger("runtrack.postgres")

SCHEMA: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS events (
        id BIGINT PRIMARY KEY,
        organization_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        sequence BIGINT NOT NULL CHECK (sequence > 0),
        event_type TEXT NOT NULL,
        visibility TEXT NOT NULL CHECK (visibility IN ('user', 'operator', 'internal')),
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        UNIQUE (run_id, sequence)
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_conversation ON events (conversation_id, id)",
    "CREATE INDEX IF NOT EXISTS events_by_organization ON events (organization_id, id)",
    """CREATE OR REPLACE FUNCTION runtrack_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'the event log is append-only: % is not allowed', TG_OP; END $$""",
    """CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON events
       FOR EACH ROW EXECUTE FUNCTION runtrack_append_only()""",
    """CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
       FOR EACH STATEMENT EXECUTE FUNCTION runtrack_append_only()""",
    """CREATE TABLE IF NOT EXISTS log_head (
        singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
        last_id BIGINT NOT NULL, last_hash TEXT NOT NULL, last_created_at TEXT NOT NULL)""",
    "INSERT INTO log_head (last_id, last_hash, last_created_at) VALUES (0, '"
    + GENESIS_HASH
    + "', '') ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS run_streams (
        run_id TEXT PRIMARY KEY,
        organization_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        last_sequence BIGINT NOT NULL,
        last_event_id BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        organization_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        run_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        first_event_id BIGINT NOT NULL,
        last_event_id BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (organization_id, idempotency_key)
    )""",
)

MIGRATIONS = (
    Migration(1, "the event log, its head, run heads and idempotency keys", SCHEMA),
    Migration(
        2,
        "events say whether their names need escaping in JSON",
        ("ALTER TABLE events ADD COLUMN IF NOT EXISTS plain_names BOOLEAN NOT NULL DEFAULT false",),
    ),
    STATUS_CHANGES_MIGRATION,
    CONSUMER_CURSORS_MIGRATION,
    archive_migration(POSTGRESQL),
    chain_version_migration(POSTGRESQL),
)


def advisory_key(*parts: str) -> int:
    """A stable signed 64-bit key for an advisory lock named by ``parts``."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _PgWriter(ConnectionWriter[psycopg.Connection[Any]]):
    """The writer side: every method runs on the store's writer thread."""

    dialect = POSTGRESQL
    label = "PostgreSQL"
    shared_lock = True

    def __init__(
        self,
        url: str,
        projections: Sequence[Projection],
        channel: str,
        *,
        replace_stale_tables: bool,
    ) -> None:
        super().__init__(projections, replace_stale_tables=replace_stale_tables)
        self._url = url
        self._channel = channel

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, autocommit=True)

    def _create_schema(self, connection: psycopg.Connection[Any]) -> None:
        with connection.transaction():
            tx = self._transaction(connection)
            tx.execute("SELECT pg_advisory_xact_lock(?)", (advisory_key("runtrack", "schema"),))
            # A write takes the log's row lock first and the events table second; a migration
            # locks the events table. Taking the row lock before any migration keeps that order
            # (the other order can deadlock against a write group in flight).
            (log_exists,) = tx.fetchone("SELECT to_regclass('log_head') IS NOT NULL") or (False,)
            if log_exists:
                tx.execute("SELECT last_id FROM log_head FOR UPDATE")
            apply_migrations(tx, MIGRATIONS)
            # Wait for any write unit in flight (a rebuild may be refilling the tables and
            # recording their fingerprint): reading the fingerprint before it commits would
            # drop what it just wrote.
            tx.execute("SELECT last_id FROM log_head FOR UPDATE")
            self._prepare_projection_tables(tx)

    def _begin(self, connection: psycopg.Connection[Any]) -> Head:
        connection.execute("BEGIN")
        row = connection.execute(
            "SELECT last_id, last_hash, last_created_at FROM log_head FOR UPDATE"
        ).fetchone()
        if row is None:
            raise StoreUnavailable("log_head is missing: the schema was tampered with")
        return Head(int(row[0]), str(row[1]), str(row[2]))

    def commit(self, head: Head) -> None:
        """The head is recorded, and every server woken, in the same transaction."""
        connection = self._open()
        connection.execute(
            "UPDATE log_head SET last_id = %s, last_hash = %s, last_created_at = %s",
            (head.id, head.hash, head.created_at),
        )
        connection.execute("SELECT pg_notify(%s, %s)", (self._channel, str(head.id)))
        super().commit(head)

    def _in_transaction(self, connection: psycopg.Connection[Any]) -> bool:
        return connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def _is_closed(self, connection: psycopg.Connection[Any]) -> bool:
        return connection.closed

    def translate(self, exc: BaseException) -> StoreError | None:
        return translate_error(exc)


def translate_error(exc: BaseException) -> StoreError | None:
    """psycopg errors become our errors here, at the boundary."""
    return translate_driver_error(
        exc,
        integrity=psycopg.errors.IntegrityError,
        driver=psycopg.Error,
        name="PostgreSQL",
        data=psycopg.DataError,
    )


class PostgresEventStore(EventStore):
    """The event store on PostgreSQL, shared by any number of servers."""

    dialect: Dialect = POSTGRESQL

    def __init__(
        self,
        url: str,
        *,
        readers: int = 4,
        **options: Unpack[StoreOptions],
    ) -> None:
        options.setdefault("poll_interval", 1.0)  # NOTIFY wakes the tail; the poll is a fallback
        super().__init__(**options)
        self.url = url
        self._reader_count = readers
        self._pool: AsyncConnectionPool[Any] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.channel = "runtrack_events"

    @property
    def parallel_reads(self) -> int:
        return min(PARALLEL_READS, self._reader_count)

    def _writer_backend(self) -> _PgWriter:
        return _PgWriter(
            self.url,
            self.projections,
            self.channel,
            replace_stale_tables=self._replace_stale_tables,
        )

    async def open(self) -> PostgresEventStore:
        self.channel = await _channel_for(self.url)
        await super().open()
        self._listener = asyncio.create_task(self._listen(), name="runtrack-pg-listener")
        return self

    async def aclose(self) -> None:
        if self._listener is not None:
            await cancel_and_wait([self._listener])
        await super().aclose()

    async def _open_readers(self) -> None:
        self._pool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._reader_count,
            kwargs={"autocommit": True},
            open=False,
        )
        await self._pool.open(wait=True)

    async def _close_readers(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self._pool is None:
            raise StoreUnavailable("the event store is not open")
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(self.dialect.driver_sql(sql), params)
                rows: list[Row] = await cursor.fetchall()
        except psycopg.Error as exc:
            raise translate_error(exc) or StoreUnavailable(str(exc)) from exc
        if stop_requested():  # the pool's wait for a connection swallowed our cancel
            raise asyncio.CancelledError
        return rows

    async def _recorded_head(self) -> int:
        rows = await self.fetchall("SELECT last_id FROM log_head")
        return int(rows[0][0]) if rows else 0

    def leadership(self, name: str, *, interval: float = 1.0) -> Leadership:
        lock = PostgresAdvisoryLock(self.url, advisory_key("runtrack", self.channel, name))
        return Leadership(lock, interval=interval)

    async def _listen(self) -> None:
        """Wake the tail when any server commits; reconnect after a lost connection."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    await conn.execute(
                        pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.channel))
                    )
                    async for notice in conn.notifies():
                        await self._tail().catch_up(self._read_after, int(notice.payload))
            except asyncio.CancelledError:
                raise
            except Exception:  # the poller still delivers; try to listen again shortly
                logger.warning("LISTEN connection lost; retrying", exc_info=True)
                await asyncio.sleep(1.0)


async def _channel_for(url: str) -> str:
    """One notification channel per schema, so stores in different schemas never cross-talk."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT current_schema()")).fetchone()
    schema = str(row[0]) if row else "public"
    return f"runtrack_events_{hashlib.sha256(schema.encode()).hexdigest()[:16]}"
