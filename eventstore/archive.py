"""Moving a prefix of the log to archive segments: the anchor, the permit, one batch's unit.

The append-only triggers stay. They let a row go only while ``archive_permits`` holds a range
covering its id, and only the archive's write unit inserts a permit, inside its own transaction,
after the segment holding those events is durable and checked; it removes the permit before it
commits, so no other transaction ever sees one and a plain ``DELETE`` still fails. Each batch is
one write unit (briefly under the log lock): it records the new anchor, the segment, and lets
each projection keep a snapshot of what it folded from the events leaving, in the same commit.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .appending import WriteContext
from .dialect import Dialect
from .errors import ArchiveRefused
from .migrations import Migration
from .protocol import Row, Transaction
from .segments import Manifest, _crash_point
from .segments_ahead import Ready
from .writer import AloneUnit

__all__ = ["Anchor", "archive_migration", "archive_unit", "read_anchor"]

_DELETE_REFUSED = "the event log is append-only: DELETE is not allowed"
_COMMON = (
    """CREATE TABLE IF NOT EXISTS log_anchor (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        cut_id BIGINT NOT NULL, cut_hash TEXT NOT NULL, cut_created_at TEXT NOT NULL,
        archived_at TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS archive_permits (
        first_id BIGINT NOT NULL, last_id BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS projection_snapshots (
        projection TEXT NOT NULL, key TEXT NOT NULL, snapshot TEXT NOT NULL,
        PRIMARY KEY (projection, key))""",
    """CREATE TABLE IF NOT EXISTS archive_segments (
        first_id BIGINT PRIMARY KEY, last_id BIGINT NOT NULL, name TEXT NOT NULL,
        sha256 TEXT NOT NULL, archived_at TEXT NOT NULL)""",
)
_SQLITE_GUARD = f"""CREATE TRIGGER events_no_delete BEFORE DELETE ON events
       WHEN NOT EXISTS (SELECT 1 FROM archive_permits WHERE OLD.id BETWEEN first_id AND last_id)
       BEGIN SELECT RAISE(ABORT, '{_DELETE_REFUSED}'); END"""
_SQLITE = ("DROP TRIGGER IF EXISTS events_no_delete", _SQLITE_GUARD)
_POSTGRESQL = (
    """CREATE OR REPLACE FUNCTION runtrack_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'DELETE' AND EXISTS (
           SELECT 1 FROM archive_permits WHERE OLD.id BETWEEN first_id AND last_id) THEN
           RETURN OLD;
         END IF;
         RAISE EXCEPTION 'the event log is append-only: % is not allowed', TG_OP;
       END $$""",
)


def archive_migration(dialect: Dialect) -> Migration:
    """Migration 5: the anchor, the permits the delete trigger checks, the projections'
    snapshots at the cut (``Projection.archiving``), the segments' index."""
    own = _SQLITE if dialect.name == "sqlite" else _POSTGRESQL
    return Migration(5, "the archive's anchor, permits and segments", _COMMON + own)


@dataclass(frozen=True)
class Anchor:
    """The last archived event: the live log's first event has ``prev_hash == cut_hash``."""

    cut_id: int
    cut_hash: str
    cut_created_at: str
    archived_at: str

    @property
    def oldest_event_id(self) -> int:
        """The first id the live log can hold."""
        return self.cut_id + 1


def read_anchor(tx: Transaction) -> Anchor | None:
    row = tx.fetchone(_ANCHOR_SQL)
    return anchor_from_row(row)


_ANCHOR_SQL = "SELECT cut_id, cut_hash, cut_created_at, archived_at FROM log_anchor"


def anchor_from_row(row: Row | None) -> Anchor | None:
    return None if row is None else Anchor(int(row[0]), str(row[1]), str(row[2]), str(row[3]))


def archive_unit(segments: Sequence[Ready]) -> AloneUnit[Anchor]:
    """The write unit that takes the events of ``segments`` (consecutive, in id order) out of
    the live log, under the lock.

    It checks again, under the lock, that the range starts right after the anchor and that the
    rows still match the segments (another archive may have moved the cut since they were
    read)."""
    manifests = [ready.manifest for ready in segments]
    first, last = manifests[0], manifests[-1]

    def unit(context: WriteContext) -> Anchor:
        context.flush()
        tx = context.tx
        _check_range(tx, manifests)
        for projection in context.projections:
            projection.archiving(tx, first.first_id, last.last_id)
        _delete_range(tx, first.first_id, last.last_id)
        now = datetime.now(UTC).isoformat()
        anchor = Anchor(last.last_id, last.last_hash, segments[-1].last_created_at, now)
        tx.execute(
            "INSERT INTO log_anchor (singleton, cut_id, cut_hash, cut_created_at, archived_at) "
            "VALUES (1, ?, ?, ?, ?) ON CONFLICT (singleton) DO UPDATE SET "
            "cut_id = excluded.cut_id, cut_hash = excluded.cut_hash, "
            "cut_created_at = excluded.cut_created_at, archived_at = excluded.archived_at",
            (anchor.cut_id, anchor.cut_hash, anchor.cut_created_at, now),
        )
        tx.executemany(
            "INSERT INTO archive_segments (first_id, last_id, name, sha256, archived_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(m.first_id, m.last_id, m.name, m.sha256, now) for m in manifests],
        )
        _crash_point("deleted")
        return anchor

    return AloneUnit(unit)


def _delete_range(tx: Transaction, first_id: int, last_id: int) -> None:
    """Delete events ``first_id..last_id`` past the append-only guard, inside this transaction.

    PostgreSQL: a permit the row trigger lets through, removed again before the commit. SQLite:
    the trigger is dropped and created again around the delete, in the same transaction, so no
    other connection ever sees the log without it (a crash rolls both back). A row trigger that
    is there, even one that lets the row go, makes SQLite check each row in a program of its
    own, keep a statement journal, and give up its one-pass delete: the delete cost twice the
    CPU and wrote 40 % more (docs/benchmarks.md, "archive rate with appenders")."""
    bounds = (first_id, last_id)
    if tx.dialect.name != "sqlite":
        tx.execute("INSERT INTO archive_permits (first_id, last_id) VALUES (?, ?)", bounds)
        _crash_point("unguarded")
        tx.execute("DELETE FROM events WHERE id BETWEEN ? AND ?", bounds)
        tx.execute("DELETE FROM archive_permits")
        return
    tx.execute("DROP TRIGGER events_no_delete")
    _crash_point("unguarded")
    tx.execute("DELETE FROM events WHERE id BETWEEN ? AND ?", bounds)
    tx.execute(_SQLITE_GUARD)


def _check_range(tx: Transaction, manifests: Sequence[Manifest]) -> None:
    anchor = read_anchor(tx)
    cut = 0 if anchor is None else anchor.cut_id
    first, last = manifests[0], manifests[-1]
    if first.first_id != cut + 1:
        raise ArchiveRefused(
            f"the live log now starts at {cut + 1}, not {first.first_id}: "
            "another archive ran meanwhile",
            oldest_event_id=cut + 1,
        )
    for before, after in itertools.pairwise(manifests):
        if after.first_id != before.last_id + 1 or after.prev_hash != before.last_hash:
            raise ArchiveRefused(f"segment {after.name} does not follow {before.name}")
    row = tx.fetchone(
        "SELECT COUNT(*), MAX(CASE WHEN id = ? THEN hash END) FROM events WHERE id BETWEEN ? AND ?",
        (last.last_id, first.first_id, last.last_id),
    )
    count, last_hash = (0, None) if row is None else (int(row[0]), row[1])
    if count != sum(m.count for m in manifests) or last_hash != last.last_hash:
        names = first.name if first is last else f"{first.name} to {last.name}"
        raise ArchiveRefused(f"events {first.first_id}..{last.last_id} differ from {names}")
