"""Files an auditor holds, written as the real tools write them, and an attacker's edits.

``write_segment`` follows the archive format agreed with the archiver (docs/security.md,
"Offline verification"); ``archive_prefix`` makes a SQLite file's live part after such an
archive (events up to the cut removed, ``log_anchor`` holding the cut). ``rehash`` is what an
attacker who holds the database does to hide an edit: recompute every hash after it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import psycopg

from eventstore import (
    CHAIN_V1,
    CHAIN_V2,
    EVENT_COLUMNS,
    GENESIS_HASH,
    AgentEvent,
    HeadSigner,
    canonical_json,
    event_hash,
)

__all__ = [
    "archive_prefix",
    "cut_tail",
    "downgrade_to_chain_v1",
    "export_lines",
    "rehash",
    "rows",
    "sql",
    "write_segment",
]


def export_lines(events: Sequence[AgentEvent]) -> str:
    return "".join(event.to_json() + "\n" for event in events)


def write_segment(directory: Path, events: Sequence[AgentEvent]) -> Path:
    """One segment and its manifest; the manifest's path."""
    first, last = events[0].id, events[-1].id
    stem = f"events-{first:012d}-{last:012d}"
    data = gzip.compress(export_lines(events).encode("utf-8"))
    (directory / f"{stem}.jsonl.gz").write_bytes(data)
    manifest = {
        "format": 1,
        "first_id": first,
        "last_id": last,
        "count": len(events),
        "prev_hash": events[0].prev_hash,
        "last_hash": events[-1].hash,
        "sha256": hashlib.sha256(data).hexdigest(),
        "organizations": dict(Counter(e.organization_id for e in events)),
        "created_at": events[-1].created_at,
    }
    path = directory / f"{stem}.manifest.json"
    path.write_text(json.dumps(manifest))
    return path


def _postgres(database: str | Path) -> bool:
    return str(database).startswith(("postgresql://", "postgres://"))


def sql(database: str | Path, *statements: str) -> None:
    """Statements on the database past the append-only triggers, as its owner could."""
    if _postgres(database):
        with psycopg.connect(str(database), autocommit=True) as connection:
            connection.execute("ALTER TABLE events DISABLE TRIGGER USER")
            for statement in statements:
                connection.execute(statement)
        return
    lite = sqlite3.connect(database, isolation_level=None)
    try:
        lite.execute("DROP TRIGGER IF EXISTS events_no_update")
        lite.execute("DROP TRIGGER IF EXISTS events_no_delete")
        for statement in statements:
            lite.execute(statement)
    finally:
        lite.close()


def rows(database: str | Path) -> list[AgentEvent]:
    query = f"SELECT {EVENT_COLUMNS} FROM events ORDER BY id"
    if _postgres(database):
        with psycopg.connect(str(database)) as connection:
            return [AgentEvent.from_row(row) for row in connection.execute(query)]
    lite = sqlite3.connect(database)
    try:
        return [AgentEvent.from_row(row) for row in lite.execute(query)]
    finally:
        lite.close()


def cut_tail(database: str | Path, last_id: int) -> None:
    """Remove every event after ``last_id`` and rewind the id counter to it: the log then
    looks as if nothing had ever been appended after ``last_id``."""
    last = next(e for e in rows(database) if e.id == last_id)
    if _postgres(database):
        rewind = (
            f"UPDATE log_head SET last_id = {last_id}, last_hash = '{last.hash}', "
            f"last_created_at = '{last.created_at}'"
        )
    else:
        rewind = f"UPDATE sqlite_sequence SET seq = {last_id} WHERE name = 'events'"
    sql(database, f"DELETE FROM events WHERE id > {last_id}", rewind)


def archive_prefix(database: Path, cut: AgentEvent) -> None:
    """The live part as an archive leaves it: events up to ``cut`` gone, the anchor kept."""
    sql(
        database,
        f"DELETE FROM events WHERE id <= {cut.id}",
        "INSERT INTO log_anchor (singleton, cut_id, cut_hash, cut_created_at, archived_at) "
        f"VALUES (1, {cut.id}, '{cut.hash}', '{cut.created_at}', '{cut.created_at}')",
    )


def rehash(
    database: str | Path,
    from_id: int,
    new_payload: str | None = None,
    *,
    forge_heads: bool = False,
    v1_ids: frozenset[int] = frozenset(),
) -> None:
    """Recompute every hash from ``from_id`` on (after replacing its payload, if given), so
    that every link and content hash holds again: the rewrite a plain chain cannot catch.
    ``forge_heads`` also points each ``chain_head`` at the new hash before it (the attacker
    cannot sign, so its signature no longer verifies). ``v1_ids`` are hashed with chain v1."""
    updates: list[str] = []
    prev = None
    for event in rows(database):
        if event.id < from_id:
            prev = event.hash
            continue
        payload = new_payload if event.id == from_id and new_payload else event.payload_json
        prev_hash = prev if prev is not None else event.prev_hash
        if forge_heads and event.event_type == "chain_head":
            payload = json.dumps({**event.payload, "head_hash": prev_hash}, sort_keys=True)
            payload = payload.replace(", ", ",").replace(": ", ":")
        digest = event_hash(
            id=event.id,
            organization_id=event.organization_id,
            run_id=event.run_id,
            conversation_id=event.conversation_id,
            sequence=event.sequence,
            event_type=event.event_type,
            visibility=event.visibility,
            payload_json=payload,
            created_at=event.created_at,
            prev_hash=prev_hash,
            version=CHAIN_V1 if event.id in v1_ids else CHAIN_V2,
        )
        quoted = payload.replace("'", "''")
        updates.append(
            f"UPDATE events SET payload = '{quoted}', prev_hash = '{prev_hash}', "
            f"hash = '{digest}' WHERE id = {event.id}"
        )
        prev = digest
    sql(database, *updates)


def downgrade_to_chain_v1(database: Path, signer: HeadSigner) -> None:
    """The SQLite database as runtrack wrote it before chain v2 (migration 6): every event
    hashed with chain v1, every head signed without a cutover, no ``chain_version``."""
    updates, prev = [], GENESIS_HASH
    for event in rows(database):
        payload = event.payload_json
        if event.event_type == "chain_head":
            payload = canonical_json(signer.sign(event.id - 1, prev).payload())
        digest = event_hash(
            id=event.id,
            organization_id=event.organization_id,
            run_id=event.run_id,
            conversation_id=event.conversation_id,
            sequence=event.sequence,
            event_type=event.event_type,
            visibility=event.visibility,
            payload_json=payload,
            created_at=event.created_at,
            prev_hash=prev,
            version=CHAIN_V1,
        )
        updates.append(
            f"UPDATE events SET payload = '{payload}', prev_hash = '{prev}', hash = '{digest}' "
            f"WHERE id = {event.id}"
        )
        prev = digest
    sql(
        database,
        *updates,
        "DROP TRIGGER chain_version_never_deleted",
        "DROP TRIGGER chain_version_never_updated",
        "DROP TABLE chain_version",
        "DELETE FROM schema_migrations WHERE version = 6",
    )
