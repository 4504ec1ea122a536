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
from dataclasses import replace
from pathlib import Path

import psycopg

from eventstore import (
    CHAIN_V1,
    CHAIN_V2,
    EVENT_COLUMNS,
    GENESIS_HASH,
    AgentEvent,
    AppendSignedHead,
    EventStore,
    HeadSigner,
    NewEvent,
    canonical_json,
    event_content_hash,
)
from eventstore.chain import recompute_hash

__all__ = [
    "append_rounds",
    "archive_prefix",
    "copy_database",
    "cut_tail",
    "downgrade_to_chain_v1",
    "export_lines",
    "organization_export",
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
        version = CHAIN_V1 if event.id in v1_ids else CHAIN_V2
        prev, update = _rewrite(event, payload, prev_hash, version)
        updates.append(update)
    sql(database, *updates)


def _rewrite(event: AgentEvent, payload: str, prev_hash: str, version: int) -> tuple[str, str]:
    """The hash ``event`` has with ``payload`` after ``prev_hash`` in chain ``version``, and
    the UPDATE that writes the three."""
    digest = recompute_hash(replace(event, payload_json=payload, prev_hash=prev_hash), version)
    quoted = payload.replace("'", "''")
    update = (
        f"UPDATE events SET payload = '{quoted}', prev_hash = '{prev_hash}', "
        f"hash = '{digest}' WHERE id = {event.id}"
    )
    return digest, update


def downgrade_to_chain_v1(database: Path, signer: HeadSigner) -> None:
    """The SQLite database as runtrack wrote it before chain v2 (migration 6): every event
    hashed with chain v1, every head signed without a cutover, no ``chain_version``."""
    updates, prev = [], GENESIS_HASH
    for event in rows(database):
        payload = event.payload_json
        if event.event_type == "chain_head":
            payload = canonical_json(signer.sign(event.id - 1, prev).payload())
        prev, update = _rewrite(event, payload, prev, CHAIN_V1)
        updates.append(update)
    sql(
        database,
        *updates,
        "DROP TRIGGER chain_version_never_deleted",
        "DROP TRIGGER chain_version_never_updated",
        "DROP TABLE chain_version",
        "DELETE FROM schema_migrations WHERE version = 6",
    )


def copy_database(source: Path, target: Path) -> None:
    """A copy of a SQLite file for one test to change (the module's log stays as written)."""
    reading, writing = sqlite3.connect(source), sqlite3.connect(target)
    try:
        reading.backup(writing)
    finally:
        reading.close()
        writing.close()


def organization_export(
    events: Sequence[AgentEvent], path: Path, organization: str = "org-a", v2_from: int = 1
) -> list[str]:
    """``organization``'s export as ``GET /v1/audit/export`` writes it; its lines. A redacted
    line of an event hashed with chain v2 (``v2_from`` on) carries its content hash."""
    lines = []
    for event in events:
        if event.organization_id == organization or event.event_type == "chain_head":
            lines.append(event.to_json())
            continue
        stub = {"id": event.id, "prev_hash": event.prev_hash, "hash": event.hash}
        if event.id >= v2_from:
            stub["content_hash"] = event_content_hash(event)
        lines.append(json.dumps({**stub, "redacted": True}))
    path.write_text("\n".join(lines) + "\n")
    return lines


async def append_rounds(store: EventStore, signer: HeadSigner, rounds: range) -> None:
    """Round ``n``: a run of org-a (even ``n``) or org-b created with a secret message; a signed
    head after every odd round, so heads mostly name another organization's event."""
    for n in rounds:
        org = ("org-a", "org-b")[n % 2]
        await store.append(
            org,
            f"run-{n}",
            [
                NewEvent("run_created", {"agent_id": "agent"}),
                NewEvent("message_created", {"role": "user", "content": f"secret {org} {n}"}),
            ],
            conversation_id=f"conv-{n}",
        )
        if n % 2 == 1:
            await store.transact(AppendSignedHead(signer))
