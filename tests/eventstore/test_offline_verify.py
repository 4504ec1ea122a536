"""Offline verification (``eventstore/offline.py``): real SQLite files and exports, tampered with
raw SQL or by editing the file, each kind of tampering caught against signed heads.

One log is written once per module by a real store with its projections: two organizations'
runs and three signed heads. Each test works on its own copy of the file.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from eventstore import (
    SYSTEM_ORGANIZATION,
    AgentEvent,
    Broken,
    HeadChecks,
    HeadSigner,
    NewEvent,
    OfflineReport,
    PublicKeys,
    SignedHead,
    event_hash,
    generate_key_file,
    open_sources,
    open_store,
    verify_sources,
)
from projections import RunProjection
from tests.eventstore.audit_files import (
    append_rounds,
    archive_prefix,
    copy_database,
    cut_tail,
    export_lines,
    organization_export,
    rehash,
    rows,
    sql,
    write_segment,
)
from tests.eventstore.helpers import all_events

MODIFIED = "hash does not match the event's content: the event was modified"
MISSING = "this event is missing here: removed or reordered"


@dataclass(frozen=True)
class Log:
    database: Path
    events: list[AgentEvent]
    signer: HeadSigner

    @property
    def heads(self) -> list[AgentEvent]:
        return [e for e in self.events if e.event_type == "chain_head"]

    def kept(self) -> SignedHead:
        """The newest signed head, as an auditor copied it from ``GET /v1/audit/head``."""
        return SignedHead.from_json(self.heads[-1].payload)

    def keys(self) -> PublicKeys:
        return PublicKeys([self.signer.public])


async def _write_log(database: Path, signer: HeadSigner) -> list[AgentEvent]:
    async with open_store(str(database), projections=[RunProjection()]) as store:
        await append_rounds(store, signer, range(6))
        await store.append("org-a", "run-0", [NewEvent("custom.after", {"n": 1})])
        return await all_events(store)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Log:
    directory = tmp_path_factory.mktemp("log")
    signer = generate_key_file(directory / "signing.pem")
    database = directory / "log.db"
    events = asyncio.run(_write_log(database, signer))
    return Log(database, events, signer)


@pytest.fixture
def log(written: Log, tmp_path: Path) -> Log:
    """A copy of the module's log for one test to change."""
    copy = tmp_path / "copy.db"
    copy_database(written.database, copy)
    return Log(copy, written.events, written.signer)


def verify(
    log: Log,
    *,
    files: list[Path] = (),  # type: ignore[assignment]
    archive: Path | None = None,
    sqlite: bool = True,
    keys: bool = True,
    kept: bool = True,
    early: bool = False,
    after: int = 0,
) -> OfflineReport:
    """``early`` keeps the first signed head too (it names event 7)."""
    heads = [log.kept()] if kept else []
    heads += [SignedHead.from_json(log.heads[0].payload)] if early else []
    checks = HeadChecks(log.keys() if keys else PublicKeys(), heads)
    sources = open_sources(list(files), archive, log.database if sqlite else None)
    return verify_sources(sources, checks, after=after)


def broken_at(report: OfflineReport) -> tuple[bool, int | None, str | None]:
    return report.ok, report.first_bad_event_id, report.reason


def test_the_log_as_written_verifies_with_its_signed_heads(log: Log) -> None:
    report = verify(log)
    assert report.ok, report
    assert (report.events, report.head_id) == (len(log.events), log.events[-1].id)
    assert report.signed_heads == len(log.heads) + 1  # the three in the log and the kept one
    assert report.signed_through == log.heads[-1].id - 1
    assert {e.organization_id for e in log.events} == {"org-a", "org-b", SYSTEM_ORGANIZATION}


def test_a_modified_event_is_named(log: Log) -> None:
    target = log.events[5]
    sql(log.database, f"UPDATE events SET payload = '{{\"n\":1}}' WHERE id = {target.id}")
    assert broken_at(verify(log)) == (False, target.id, MODIFIED)


def test_a_deleted_event_is_named(log: Log) -> None:
    target = log.events[5]
    sql(log.database, f"DELETE FROM events WHERE id = {target.id}")
    assert broken_at(verify(log)) == (
        False,
        target.id,
        "this event is missing here: removed or reordered",
    )


def test_reordered_lines_of_an_export_are_named(log: Log, tmp_path: Path) -> None:
    events = list(log.events)
    events[4], events[5] = events[5], events[4]
    export = tmp_path / "export.jsonl"
    export.write_text(export_lines(events))
    report = verify(log, files=[export], sqlite=False)
    assert broken_at(report) == (False, 5, MISSING)
    assert report.source == str(export)


def test_a_truncated_tail_with_the_counter_rewound_is_caught_only_by_a_kept_head(
    log: Log,
) -> None:
    last_kept = log.kept().head_id
    cut = last_kept - 3
    sql(
        log.database,
        f"DELETE FROM events WHERE id > {cut}",
        f"UPDATE sqlite_sequence SET seq = {cut} WHERE name = 'events'",
    )
    assert verify(log, kept=False).ok  # the chain left is whole, and signed as far as it goes
    ok, bad, reason = broken_at(verify(log))
    assert (ok, bad) == (False, cut + 1)
    assert f"the log ends at event {cut}, but a kept signed head names event {last_kept}" in (
        reason or ""
    )


def test_a_rehashed_chain_fails_at_the_first_signed_head_after_the_edit(log: Log) -> None:
    target = log.events[1]  # before every signed head
    rehash(log.database, target.id, '{"content":"rewritten","role":"user"}')
    ok, bad, reason = broken_at(verify(log, kept=False, keys=False))
    assert (ok, bad) == (False, log.heads[0].id)  # the head no longer follows the chain
    assert "signs another hash than the chain has before it" in (reason or "")


def test_a_rehash_that_forges_the_heads_fails_their_signatures(log: Log) -> None:
    rehash(log.database, log.events[1].id, '{"content":"x","role":"user"}', forge_heads=True)
    assert verify(log, keys=False, kept=False).ok  # without a key, a valid chain to the eye
    ok, bad, reason = broken_at(verify(log, kept=False))
    assert (ok, bad) == (False, log.heads[0].id)
    assert "does not verify: the chain was rewritten up to here" in (reason or "")
    ok, bad, reason = broken_at(verify(log, keys=False))
    assert (ok, bad) == (False, log.kept().head_id)
    assert "not the one a kept signed head names" in (reason or "")


def test_a_rehash_that_also_drops_every_signed_head_is_caught(log: Log) -> None:
    sql(log.database, "DELETE FROM events WHERE event_type = 'chain_head'")
    survivors = [e for e in log.events if e.event_type != "chain_head"]
    renumbered = [
        f"UPDATE events SET id = {-n} WHERE id = {e.id}" for n, e in enumerate(survivors, 1)
    ]
    sql(log.database, *renumbered, "UPDATE events SET id = -id")
    sql(log.database, f"UPDATE sqlite_sequence SET seq = {len(survivors)} WHERE name = 'events'")
    rehash(log.database, 1)
    assert verify(log, keys=False, kept=False).ok  # a whole chain again, to the eye
    ok, bad, reason = broken_at(verify(log, kept=False))
    assert (ok, bad) == (False, 1)
    assert "no head signed by the given public keys was found" in (reason or "")
    ok, bad, reason = broken_at(verify(log, keys=False))
    assert (ok, bad) == (False, len(survivors) + 1)  # shorter than the kept head
    assert f"a kept signed head names event {log.kept().head_id}" in (reason or "")


def test_a_signed_head_under_another_key_is_refused(log: Log, tmp_path: Path) -> None:
    other = generate_key_file(tmp_path / "other.pem")
    heads = HeadChecks(PublicKeys([other.public]))
    report = verify_sources(open_sources([], None, log.database), heads)
    assert (report.ok, report.first_bad_event_id) == (False, log.heads[0].id)
    assert f"signed by key {log.signer.key_id}, which is not among" in (report.reason or "")


def test_an_export_segments_and_the_live_part_verify_as_one_chain(log: Log, tmp_path: Path) -> None:
    events = log.events
    archive = tmp_path / "archive"
    archive.mkdir()
    write_segment(archive, events[:7])
    write_segment(archive, events[7:12])
    archive_prefix(log.database, events[11])
    export = tmp_path / "export.jsonl"
    export.write_text(export_lines(events[3:]))  # an export after id 3 overlaps everything
    report = verify(log, files=[export], archive=archive)
    assert report.ok, report
    assert (report.first_id, report.events, report.head_id) == (1, len(events), events[-1].id)
    alone = verify(log, kept=True)  # the live part alone starts from the anchor's hash
    assert alone.ok, alone
    assert alone.first_id == events[12].id


async def _archive(database: Path, through: int, directory: Path) -> None:
    async with open_store(str(database), projections=[RunProjection()]) as store:
        await store.archive_through(through, directory, batch=4)


def test_the_stores_own_archive_and_live_part_verify_as_one_chain(log: Log, tmp_path: Path) -> None:
    """Segments and anchor as ``EventStore.archive_through`` writes them, not as a test does."""
    archive = tmp_path / "archive"
    asyncio.run(_archive(log.database, log.events[9].id, archive))
    assert len(list(archive.glob("*.manifest.json"))) == 3  # batches of 4: 4 + 4 + 2
    report = verify(log, archive=archive)
    assert report.ok, report
    assert (report.first_id, report.events, report.head_id) == (
        1,
        len(log.events),
        log.events[-1].id,
    )
    segment = sorted(archive.glob("*.jsonl.gz"))[1]
    segment.write_bytes(segment.read_bytes()[:-8] + b"\0" * 8)  # a changed segment
    assert not verify(log, archive=archive).ok


def test_a_gap_between_the_archive_and_the_live_part_is_named(log: Log, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    write_segment(archive, log.events[:5])
    archive_prefix(log.database, log.events[7])
    report = verify(log, archive=archive)
    assert broken_at(report) == (
        False,
        log.events[5].id,
        "this event is in none of the given files",
    )


def test_a_changed_segment_fails_its_digest(log: Log, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    manifest = write_segment(archive, log.events[:7])
    archive_prefix(log.database, log.events[6])
    segment = manifest.with_name(manifest.name.replace(".manifest.json", ".jsonl.gz"))
    lines = gzip.decompress(segment.read_bytes()).decode().replace("secret org-b 1", "nothing")
    segment.write_bytes(gzip.compress(lines.encode()))
    report = verify(log, archive=archive)
    assert (report.ok, report.first_bad_event_id) == (False, 1)
    assert "is not its manifest's: the segment was changed" in (report.reason or "")
    claims = json.loads(manifest.read_text())
    claims["sha256"] = hashlib.sha256(segment.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(claims))  # the manifest rewritten too: the chain still says
    changed = next(e for e in log.events if "secret org-b 1" in e.payload_json)
    assert broken_at(verify(log, archive=archive)) == (False, changed.id, MODIFIED)


def test_an_organizations_redacted_export_verifies_as_one_chain(log: Log, tmp_path: Path) -> None:
    export = tmp_path / "org-a.jsonl"
    lines = organization_export(log.events, export)
    report = verify(log, files=[export], sqlite=False)
    assert report.ok, report
    assert report.redacted == sum(
        1 for e in log.events if e.organization_id != "org-a" and e.event_type != "chain_head"
    )
    tampered = export.read_text().replace('"redacted": true', '"redacted": true', 1)
    first_stub = next(json.loads(line) for line in lines if '"redacted"' in line)
    export.write_text(tampered.replace(first_stub["hash"], "f" * 64, 1))
    assert verify(log, files=[export], sqlite=False).first_bad_event_id == first_stub["id"]


def test_events_removed_from_the_end_without_rewinding_the_counter_are_named(log: Log) -> None:
    last = log.events[-1]
    sql(log.database, f"DELETE FROM events WHERE id = {last.id}")
    report = verify(log, kept=False)
    assert broken_at(report) == (False, last.id, "events at the end of the log are missing")


def test_a_line_that_is_not_an_event_is_named(log: Log, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text(export_lines(log.events[:3]) + "{not json\n")
    report = verify(log, files=[export], sqlite=False, kept=False, keys=False)
    assert (report.ok, report.first_bad_event_id) == (False, 4)
    assert "is not an event" in (report.reason or "")


def test_a_file_that_is_no_runtrack_database_is_named(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(Broken, match="is not a runtrack SQLite database"):
        open_sources([], None, other)


def test_a_segment_cut_short_is_named(log: Log, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    manifest = write_segment(archive, log.events[:7])
    archive_prefix(log.database, log.events[6])
    segment = manifest.with_name(manifest.name.replace(".manifest.json", ".jsonl.gz"))
    segment.write_bytes(segment.read_bytes()[:-20])
    claims = json.loads(manifest.read_text())
    claims["sha256"] = hashlib.sha256(segment.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(claims))
    report = verify(log, archive=archive)
    assert report.ok is False
    assert "cannot be read" in (report.reason or "")


def test_a_kept_head_naming_a_redacted_line_is_compared(log: Log, tmp_path: Path) -> None:
    """A kept head signs the event before a chain_head, mostly another organization's: the
    hash of its redacted line is all the comparison needs."""
    rehash(log.database, log.events[1].id, '{"content":"x","role":"user"}', forge_heads=True)
    export = tmp_path / "org-a.jsonl"
    organization_export(rows(log.database), export)
    kept = log.kept().head_id
    assert next(e for e in log.events if e.id == kept).organization_id == "org-b"
    ok, bad, reason = broken_at(verify(log, files=[export], sqlite=False, keys=False))
    assert (ok, bad) == (False, kept)
    assert "not the one a kept signed head names" in (reason or "")


def test_a_kept_head_counts_as_signed_only_when_its_signature_was_checked(log: Log) -> None:
    unchecked = verify(log, keys=False)
    assert unchecked.ok, unchecked
    assert (unchecked.signed_heads, unchecked.signed_through) == (0, 0)  # no key: none verified
    assert unchecked.kept_heads == 1
    checked = verify(log)
    assert (checked.signed_heads, checked.kept_heads) == (len(log.heads) + 1, 1)
    forged = SignedHead(log.kept().head_id, log.kept().head_hash, "0" * 128, log.signer.key_id)
    report = verify_sources(open_sources([], None, log.database), HeadChecks(log.keys(), [forged]))
    assert report.ok, report  # its hash matches: the chain reaches it, unsigned
    assert (report.signed_heads, report.kept_heads) == (len(log.heads), 1)


CUT_START = "the start of the log was removed"


def test_a_database_missing_the_start_of_its_log_is_named(log: Log) -> None:
    """No anchor says what came before, so the live part must start at event 1."""
    sql(log.database, "DELETE FROM events WHERE id <= 4")
    report = verify(log)
    ok, bad, reason = broken_at(report)
    assert (ok, bad) == (False, 1)
    assert f"events 1 to 4 are in none of the given files: {CUT_START}" in (reason or "")
    assert (report.events, report.unproven) == (0, 0)  # nothing walked, nothing claimed
    sql(log.database, "DELETE FROM events WHERE id <= 8")  # the first signed head's event too
    assert broken_at(verify(log, early=True, after=8))[:2] == (False, 7)


def test_an_export_from_an_id_on_verifies_only_when_asked_to(log: Log, tmp_path: Path) -> None:
    export = tmp_path / "later.jsonl"
    export.write_text(export_lines(log.events[8:]))  # events 9 on, as --after 8 exports them
    ok, bad, reason = broken_at(verify(log, files=[export], sqlite=False))
    assert (ok, bad) == (False, 1)
    assert CUT_START in (reason or "")
    report = verify(log, files=[export], sqlite=False, after=8)
    assert report.ok, report
    assert verify(log, files=[export]).ok  # inside the database's range, ending where it ends
    assert (report.first_id, report.kept_heads) == (9, 1)
    ok, bad, reason = broken_at(verify(log, files=[export], sqlite=False, early=True, after=8))
    assert (ok, bad) == (False, 7)
    assert "a kept signed head names event 7, before the first event given (9)" in (reason or "")
    assert broken_at(verify(log, files=[export], sqlite=False, after=7))[:2] == (False, 8)


DIFFERS = "this event differs from its copy in another file"


def forged_copy(events: list[AgentEvent]) -> list[AgentEvent]:
    """``events`` with each secret rewritten and every hash recomputed: self-consistent."""
    forged, prev = [], events[0].prev_hash
    for event in events:
        payload = event.payload_json.replace("secret", "FORGED")
        fields = {**asdict(event), "payload_json": payload, "prev_hash": prev}
        del fields["hash"]
        prev = event_hash(**fields)
        forged.append(AgentEvent(**fields, hash=prev))
    return forged


def test_a_forged_segment_inside_an_export_is_compared_with_it(log: Log, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text(export_lines(log.events))
    archive = tmp_path / "archive"
    archive.mkdir()
    manifest = write_segment(archive, forged_copy(log.events[:4]))  # manifest agrees with it
    report = verify(log, files=[export], archive=archive, sqlite=False)
    assert broken_at(report) == (False, 2, DIFFERS)  # event 1 holds no secret: the same
    assert report.source == str(manifest).replace(".manifest.json", ".jsonl.gz")


def test_a_rehashed_database_inside_an_export_is_compared_with_it(log: Log, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text(export_lines(log.events))
    rehash(log.database, 10, '{"content":"x","role":"user"}')
    report = verify(log, files=[export], keys=False, kept=False)
    assert broken_at(report) == (False, 10, DIFFERS)
    assert report.source == str(log.database)


def test_a_database_cut_shorter_than_an_export_is_named(log: Log, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text(export_lines(log.events[:15]))
    cut_tail(log.database, 12)  # the counter rewound: the database alone looks whole
    assert verify(log, kept=False).ok
    report = verify(log, files=[export], kept=False)
    assert (report.ok, report.first_bad_event_id) == (False, 13)
    assert "the database ends at event 12, but another file holds event 13" in (report.reason or "")
    assert report.source == str(log.database)


def test_events_no_head_binds_are_reported_unproven(log: Log) -> None:
    report = verify(log)
    assert report.ok, report
    last_head = log.heads[-1].id  # it signs the event before it, and nothing binds it or after
    assert (report.unproven, report.unproven_ranges) == (2, ((last_head, log.events[-1].id),))
    assert report.unproven_ranges_complete
    unanchored = verify(log, keys=False, kept=False)  # nothing vouches: self-consistent only
    assert (unanchored.unproven, unanchored.unproven_ranges) == (len(log.events), ((1, 19),))


def test_an_event_spliced_in_through_a_redacted_line_is_caught_there(
    log: Log, tmp_path: Path
) -> None:
    """A forger changes an organization's event and points the next (redacted) line at its
    new hash: in chain v2 that line's hash follows from its prev_hash, so the link breaks."""
    forged, after = log.events[1], log.events[2]
    assert (forged.organization_id, after.organization_id) == ("org-a", "org-b")
    lines = organization_export(log.events, tmp_path / "org-a.jsonl")
    changed = forged_copy([forged])[0]
    lines[1] = changed.to_json()
    stub = json.loads(lines[2])
    lines[2] = json.dumps({**stub, "prev_hash": changed.hash})
    export = tmp_path / "forged.jsonl"
    export.write_text("\n".join(lines) + "\n")
    ok, bad, reason = broken_at(verify(log, files=[export], sqlite=False, kept=False))
    assert (ok, bad) == (False, after.id)
    assert "does not follow from its prev_hash and content_hash" in (reason or "")


def test_an_organizations_export_proves_its_events_up_to_the_newest_head(
    log: Log, tmp_path: Path
) -> None:
    """Redacted v2 lines carry their links, so a head binds every event before it: only what
    comes after the newest signed head is unproven."""
    export = tmp_path / "org-a.jsonl"
    organization_export(log.events, export)
    report = verify(log, files=[export], sqlite=False, kept=False)
    assert report.ok, report
    newest = log.heads[-1]
    assert report.signed_through == newest.id - 1
    assert report.unproven_ranges == ((newest.id, log.events[-1].id),)
