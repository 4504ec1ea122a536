"""Chain v2 (``eventstore/chain.py``, ``chain_versions.py``, migration 6): a database written
before it keeps its v1 hashes, the events after the upgrade are v2, and every verifier (the
store's, the offline one) checks each event in its version and catches a line that pretends to
be the other one. Real SQLite files (and PostgreSQL for the migration), tampered with raw SQL or
by editing the export, as in test_offline_verify.py.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from eventstore import (
    CHAIN_V1,
    CHAIN_V2,
    AgentEvent,
    HeadChecks,
    HeadSigner,
    NewEvent,
    OfflineReport,
    PublicKeys,
    SignedHead,
    generate_key_file,
    open_sources,
    open_store,
    verify_sources,
)
from eventstore.chain import recompute_hash
from projections import RunProjection
from tests.eventstore.audit_files import (
    append_rounds,
    copy_database,
    downgrade_to_chain_v1,
    organization_export,
    rehash,
    rows,
    sql,
)
from tests.eventstore.helpers import all_events

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Upgraded:
    """A log written before chain v2, downgraded as it was, then reopened and appended to."""

    database: Path
    signer: HeadSigner
    v2_from: int
    events: list[AgentEvent]

    @property
    def heads(self) -> list[AgentEvent]:
        return [e for e in self.events if e.event_type == "chain_head"]

    def keys(self) -> PublicKeys:
        return PublicKeys([self.signer.public])


async def _append_rounds(database: Path, signer: HeadSigner, rounds: range) -> list[AgentEvent]:
    async with open_store(str(database), projections=[RunProjection()]) as store:
        await append_rounds(store, signer, rounds)
        return await all_events(store)


@pytest.fixture(scope="module")
def upgraded_file(tmp_path_factory: pytest.TempPathFactory) -> Upgraded:
    directory = tmp_path_factory.mktemp("upgraded")
    signer = generate_key_file(directory / "signing.pem")
    database = directory / "log.db"
    before = asyncio.run(_append_rounds(database, signer, range(4)))
    downgrade_to_chain_v1(database, signer)
    events = asyncio.run(_append_rounds(database, signer, range(4, 8)))
    return Upgraded(database, signer, before[-1].id + 1, events)


@pytest.fixture
def upgraded(upgraded_file: Upgraded, tmp_path: Path) -> Upgraded:
    """A copy of the module's upgraded log for one test to change."""
    copy = tmp_path / "copy.db"
    copy_database(upgraded_file.database, copy)
    return Upgraded(copy, upgraded_file.signer, upgraded_file.v2_from, upgraded_file.events)


def offline(
    log: Upgraded,
    files: list[Path] | None = None,
    *,
    sqlite: bool = True,
    kept: list[SignedHead] | None = None,
) -> OfflineReport:
    sources = open_sources(files or [], None, log.database if sqlite else None)
    return verify_sources(sources, HeadChecks(log.keys(), kept or []))


def export(log: Upgraded, path: Path) -> list[str]:
    """org-a's export as ``GET /v1/audit/export`` writes it (content hashes from v2 on)."""
    return organization_export(log.events, path, v2_from=log.v2_from)


def test_the_migration_keeps_v1_hashes_and_hashes_what_follows_with_v2(upgraded: Upgraded) -> None:
    lite = sqlite3.connect(upgraded.database)
    (recorded,) = lite.execute("SELECT v2_from FROM chain_version").fetchone()
    lite.close()
    assert recorded == upgraded.v2_from > 1
    for event in upgraded.events:
        version = CHAIN_V2 if event.id >= upgraded.v2_from else CHAIN_V1
        assert recompute_hash(event, version) == event.hash, event.id
    newest = SignedHead.from_json(upgraded.heads[-1].payload)
    assert newest.chain_v2_from == upgraded.v2_from
    assert SignedHead.from_json(upgraded.heads[0].payload).chain_v2_from is None  # a v1 head


async def test_the_store_verifies_an_upgraded_log_with_its_signed_heads(
    upgraded: Upgraded,
) -> None:
    async with open_store(str(upgraded.database)) as store:
        report = await store.verify(heads=HeadChecks(upgraded.keys()))
        assert report.ok, report
        assert report.signed_heads == len(upgraded.heads)
        assert (await store.verify(run_id="run-5", organization_id="org-b")).ok


def test_offline_verification_of_an_upgraded_database(upgraded: Upgraded) -> None:
    report = offline(upgraded)
    assert report.ok, report
    assert report.events == len(upgraded.events)


def test_an_export_proves_the_v2_part_and_says_what_v1_leaves_unproven(
    upgraded: Upgraded, tmp_path: Path
) -> None:
    path = tmp_path / "org-a.jsonl"
    export(upgraded, path)
    report = offline(upgraded, [path], sqlite=False)
    assert report.ok, report
    newest = upgraded.heads[-1]
    assert report.signed_through == newest.id - 1
    for first, last in report.unproven_ranges:  # only v1 events, and the tail after the head
        assert last < upgraded.v2_from or first >= newest.id, report.unproven_ranges


def test_a_v2_redacted_line_stripped_of_its_content_hash_is_caught(
    upgraded: Upgraded, tmp_path: Path
) -> None:
    """Stripped, the line would pass for an unbindable v1 one. After v2 events it cannot be
    v1; in an export that starts with it (``--after``), the signed head after it says where v2
    starts, and so does a kept head before the walk."""
    path = tmp_path / "org-a.jsonl"
    lines = export(upgraded, path)
    index, stub = next(
        (i, json.loads(line)) for i, line in enumerate(lines) if '"content_hash"' in line
    )
    assert stub["id"] > upgraded.v2_from  # v2 events come before it
    del stub["content_hash"]
    lines[index] = json.dumps(stub)
    path.write_text("\n".join(lines) + "\n")
    report = offline(upgraded, [path], sqlite=False)
    assert (report.ok, report.first_bad_event_id) == (False, stub["id"])
    assert "hashed with chain v1 after event" in (report.reason or "")

    tail = tmp_path / "after.jsonl"
    tail.write_text("\n".join(lines[index:]) + "\n")
    after = stub["id"] - 1
    sources = open_sources([tail], None, None)
    report = verify_sources(sources, HeadChecks(upgraded.keys()), after=after)
    assert (report.ok, report.first_bad_event_id) == (False, stub["id"])
    assert f"chain v2 starts at event {upgraded.v2_from}" in (report.reason or "")
    kept = SignedHead.from_json(upgraded.heads[-1].payload)
    sources = open_sources([tail], None, None)
    early = verify_sources(sources, HeadChecks(upgraded.keys(), [kept]), after=after)
    assert (early.ok, early.first_bad_event_id) == (False, stub["id"])


def test_a_v1_event_after_v2_events_is_caught_without_any_head(tmp_path: Path) -> None:
    """A rewrite that hashes one event of the v2 part with v1 (and relinks the rest) holds
    every link; no v1 event may follow a v2 one."""
    signer = generate_key_file(tmp_path / "signing.pem")
    database = tmp_path / "log.db"
    events = asyncio.run(_append_rounds(database, signer, range(4)))
    target = events[4]
    rehash(database, target.id, forge_heads=True, v1_ids=frozenset({target.id}))
    path = tmp_path / "export.jsonl"
    path.write_text("".join(event.to_json() + "\n" for event in rows(database)))
    report = verify_sources(open_sources([path], None, None), HeadChecks())
    assert (report.ok, report.first_bad_event_id) == (False, target.id)
    assert "hashed with chain v1 after event 1" in (report.reason or "")


def test_a_changed_cutover_in_the_database_is_caught_by_the_signed_heads(
    upgraded: Upgraded,
) -> None:
    later = upgraded.v2_from + 3
    sql(
        upgraded.database,
        "DROP TRIGGER chain_version_never_updated",
        f"UPDATE chain_version SET v2_from = {later}",
    )
    report = offline(upgraded)
    assert (report.ok, report.first_bad_event_id) == (False, upgraded.v2_from)

    async def server_side() -> None:
        async with open_store(str(upgraded.database)) as store:
            checked = await store.verify(heads=HeadChecks(upgraded.keys()))
            assert not checked.ok
            assert "chain v2 starts" in (checked.reason or "")

    asyncio.run(server_side())


def test_a_signed_heads_cutover_is_covered_by_its_signature(upgraded: Upgraded) -> None:
    head = SignedHead.from_json(upgraded.heads[-1].payload)
    keys = upgraded.keys()
    assert keys.problem(head) is None
    moved = SignedHead.from_json({**head.payload(), "chain_v2_from": head.head_id})
    assert keys.problem(moved) is not None
    assert keys.problem(SignedHead.from_json({**head.payload(), "chain_v2_from": None})) is not None


def test_the_cutover_row_cannot_be_changed_or_removed(upgraded: Upgraded) -> None:
    lite = sqlite3.connect(upgraded.database, isolation_level=None)
    try:
        for statement in ("UPDATE chain_version SET v2_from = 1", "DELETE FROM chain_version"):
            with pytest.raises(sqlite3.DatabaseError, match="written once"):
                lite.execute(statement)
    finally:
        lite.close()


async def test_on_postgresql_the_migration_records_the_id_after_the_head(
    postgres_schema_url: str,
) -> None:
    async with open_store(postgres_schema_url) as store:
        assert await store.chain_v2_from() == 1  # a new database is v2 from its first event
        await store.append(
            "org-a", "run-1", [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
        )
    import psycopg

    with psycopg.connect(postgres_schema_url, autocommit=True) as connection:
        connection.execute("DROP TABLE chain_version CASCADE")
        connection.execute("DELETE FROM schema_migrations WHERE version = 6")
    async with open_store(postgres_schema_url) as store:
        assert await store.chain_v2_from() == 2
        with pytest.raises(Exception, match="written once"):
            await store.fetchall("UPDATE chain_version SET v2_from = 1 RETURNING v2_from")
