"""Archiving a prefix of the log: segments, the anchor, the guard that still refuses a DELETE.

Both backends; the run semantics of where the cut may go are in tests/projections/test_archive.py.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from eventstore import (
    GENESIS_HASH,
    ArchiveReader,
    CursorExpired,
    EventFilter,
    EventStore,
    NewEvent,
    list_manifests,
    read_segment,
)
from eventstore.segments import segment_name
from tests.conftest import StoreFactory

from .helpers import ORG, all_events, message, new_run
from .raw_database import RawDatabase

pytestmark = pytest.mark.anyio


async def _log(store: EventStore, runs: int = 3, messages: int = 4) -> None:
    for r in range(runs):
        await new_run(store, f"run-{r}")
        for n in range(messages):
            await store.append(ORG, f"run-{r}", [message(str(n))])


async def test_archived_events_move_to_checked_segments(store: EventStore, tmp_path: Path) -> None:
    await _log(store)
    before = await all_events(store)
    manifests = await store.archive_through(10, tmp_path, batch=4)
    assert [(m.first_id, m.last_id) for m in manifests] == [(1, 4), (5, 8), (9, 10)]
    first = manifests[0]
    data = (tmp_path / first.name).read_bytes()
    assert first.name == segment_name(1, 4) == "events-000000000001-000000000004.jsonl.gz"
    assert hashlib.sha256(data).hexdigest() == first.sha256
    lines = gzip.decompress(data).decode().splitlines()
    assert lines == [event.to_json() for event in before[:4]]
    manifest = json.loads((tmp_path / "events-000000000001-000000000004.manifest.json").read_text())
    assert manifest["format"] == 1
    assert manifest["count"] == 4
    assert manifest["prev_hash"] == GENESIS_HASH
    assert manifest["last_hash"] == before[3].hash
    assert manifest["organizations"] == {ORG: 4}
    assert [e.id for m in list_manifests(tmp_path) for e in read_segment(tmp_path, m)] == list(
        range(1, 11)
    )
    assert [e.id for e in await all_events(store)] == list(range(11, 16))
    anchor = await store.anchor()
    assert anchor is not None
    assert (anchor.cut_id, anchor.cut_hash) == (10, before[9].hash)
    assert await store.oldest_event_id() == 11


async def test_verify_starts_from_the_anchor(store: EventStore, tmp_path: Path) -> None:
    await _log(store)
    await store.archive_through(7, tmp_path)
    report = await store.verify()
    assert report.ok
    assert report.events == 8
    assert report.head_id == 15
    run = await store.verify(run_id="run-1")  # its first events are archived
    assert run.ok
    assert run.events == 3


async def test_head_stays_when_everything_is_archived(store: EventStore, tmp_path: Path) -> None:
    await _log(store, runs=1, messages=2)
    await store.archive_through(3, tmp_path)
    assert await store.head() == 3
    assert await all_events(store) == []
    appended = await store.append(ORG, "run-0", [message("after")])
    assert appended[0].id == 4
    assert appended[0].sequence == 4
    assert (await store.verify()).ok


async def test_a_plain_delete_still_fails(
    store_factory: StoreFactory, backend: str, database_url: str, tmp_path: Path
) -> None:
    async with store_factory() as store:
        await _log(store, runs=1)
        await store.archive_through(2, tmp_path)
    raw = RawDatabase(backend, database_url)
    for statement in ("DELETE FROM events WHERE id = 3", raw.truncate):
        with pytest.raises(raw.refusal, match="append-only"):
            raw.execute(statement)
    with pytest.raises(raw.refusal, match="append-only"):  # a permit is only ever in-transaction
        raw.execute(
            "INSERT INTO archive_permits (first_id, last_id) VALUES (100, 200)",
            "DELETE FROM events WHERE id = 3",
        )


async def test_expired_cursors_are_refused_with_the_oldest_id(
    store: EventStore, tmp_path: Path
) -> None:
    await _log(store)
    await store.archive_through(6, tmp_path)
    for fine in (0, 6, 9):
        await store.check_cursor(fine)
    with pytest.raises(CursorExpired) as refused:
        await store.check_cursor(5)
    assert refused.value.details["oldest_event_id"] == 7
    page = await store.read(EventFilter(), after=0, limit=100)
    assert page.events[0].id == 7


async def test_segments_left_by_a_crash_before_commit_are_written_again(
    store: EventStore, tmp_path: Path
) -> None:
    """Files of a batch that never committed (its events are still live) are replaced."""
    archive = tmp_path / "archive"
    await _log(store)
    await store.archive_through(4, archive)
    (archive / "events-000000000005-000000000009.manifest.json").write_text("{}")
    (archive / "events-000000000005-000000000009.jsonl.gz.tmp").write_bytes(b"partial")
    (archive / "events-000000000005-000000000007.jsonl.gz").write_bytes(b"no manifest")
    manifests = await store.archive_through(8, archive)
    assert [(m.first_id, m.last_id) for m in manifests] == [(5, 8)]
    assert sorted(p.name for p in archive.iterdir()) == [
        "events-000000000001-000000000004.jsonl.gz",
        "events-000000000001-000000000004.manifest.json",
        "events-000000000005-000000000008.jsonl.gz",
        "events-000000000005-000000000008.manifest.json",
    ]


async def test_appends_go_on_between_batches(store: EventStore, tmp_path: Path) -> None:
    import asyncio

    await _log(store, runs=2, messages=40)
    archiving = asyncio.ensure_future(store.archive_through(60, tmp_path, batch=5))
    appended = [await store.append(ORG, "run-1", [message("live")]) for _ in range(5)]
    await archiving
    assert (await store.verify()).ok
    assert [e.id for e in await all_events(store)][-5:] == [e[0].id for e in appended]


async def test_the_reader_finds_only_the_runs_events(store: EventStore, tmp_path: Path) -> None:
    """Lines are picked by the run id's bytes before decoding: another run's payload holding
    the same text, or a run id it would be a prefix of, adds no event; an id that a writer
    may escape (quotes, a slash, non-ASCII) is found by decoding every line."""
    odd = 'run "odd"/é'
    for run_id in ("run-a", "run-ab", odd):
        await new_run(store, run_id)
    decoy = {"n": 1, "nested": {"run_id": "run-a"}, "text": '"run_id":"run-a",'}
    await store.append(ORG, "run-ab", [NewEvent("custom.tick", decoy)])
    for run_id in ("run-a", odd):
        await store.append(ORG, run_id, [message("x")])
    everything = await all_events(store)
    await store.archive_through(await store.head(), tmp_path, batch=3)
    reader = ArchiveReader(tmp_path)
    for run_id in ("run-a", "run-ab", odd):
        expected = [e for e in everything if e.run_id == run_id]
        assert reader.run_events(run_id, 1, everything[-1].id) == expected, run_id
    assert reader.run_events("run-a", 2, everything[-1].id - 1) == [
        e for e in everything[1:-1] if e.run_id == "run-a"
    ]


async def test_the_reader_reads_each_segment_once_for_a_runs_pages(
    store: EventStore, tmp_path: Path
) -> None:
    """Paging a run (each page asks for what follows its cursor) reads each segment once; the
    cache's bounds in slices and in bytes hold."""
    await _log(store, runs=2, messages=20)
    last = await store.head()
    manifests = await store.archive_through(last, tmp_path, batch=8)
    whole = ArchiveReader(tmp_path).run_events("run-0", 1, last)
    reader = ArchiveReader(tmp_path)
    paged, after = [], 0
    while page := reader.run_events("run-0", after + 1, last)[:3]:
        paged += page
        after = page[-1].id
    assert paged == whole
    assert reader.segment_reads == len(manifests)
    reader.run_events("run-0", 1, last)
    assert reader.segment_reads == len(manifests)
    few = ArchiveReader(tmp_path, cache_slices=2)
    for _ in range(2):
        assert few.run_events("run-0", 1, last) == whole
    assert few.segment_reads == 2 * len(manifests)
    light = ArchiveReader(tmp_path, cache_bytes=100)  # less than one slice: nothing kept
    light.run_events("run-0", 1, last)
    light.run_events("run-0", 1, last)
    assert light.segment_reads == 2 * len(manifests)


async def test_the_database_file_itself_holds_each_archived_unit(tmp_path: Path) -> None:
    """SQLite: the archive checkpoints the WAL after each unit on a connection of its own, so
    the writer's commits never have to; the file alone (its WAL left behind) has the cut."""
    import shutil
    import sqlite3

    from eventstore.sqlite import SQLiteEventStore

    path = tmp_path / "events.db"
    async with SQLiteEventStore(path) as store:
        await _log(store)
        await store.archive_through(10, tmp_path / "archive", batch=4)
        shutil.copy(path, tmp_path / "alone.db")  # without events.db-wal
    alone = sqlite3.connect(tmp_path / "alone.db")
    try:
        assert alone.execute("SELECT cut_id FROM log_anchor").fetchall() == [(10,)]
        assert alone.execute("SELECT min(id) FROM events").fetchall() == [(11,)]
    finally:
        alone.close()


async def test_one_unit_takes_out_the_events_of_several_segments(
    store: EventStore, tmp_path: Path
) -> None:
    """Segments are written ahead only when asked (``want``), and a unit may take the events
    of several at once: one delete, one anchor, each segment recorded."""
    from eventstore.archive import archive_unit
    from eventstore.segments_ahead import SegmentsAhead
    from eventstore.store import _check_joins

    await _log(store)
    before = await all_events(store)
    ahead = SegmentsAhead(store._read_batch, _check_joins, tmp_path, (0, GENESIS_HASH), 10, 4)
    try:
        first = await ahead.take(100)
        assert [m.name for m in list_manifests(tmp_path)] == [segment_name(1, 4)]
        ahead.want(100)
        rest = await ahead.take(100)
        while more := await ahead.take(100):
            rest += more
    finally:
        await ahead.aclose()
    ranges = [(r.manifest.first_id, r.manifest.last_id) for r in first + rest]
    assert ranges == [(1, 4), (5, 8), (9, 10)]
    await store.transact(archive_unit(first))
    anchor = await store.transact(archive_unit(rest))
    assert (anchor.cut_id, anchor.cut_hash) == (10, before[9].hash)
    recorded = await store.fetchall(
        "SELECT first_id, last_id, archived_at FROM archive_segments ORDER BY first_id"
    )
    assert [(int(a), int(b)) for a, b, _ in recorded] == ranges
    assert recorded[1][2] == recorded[2][2] != recorded[0][2]  # one unit, two segments
    assert [e.id for e in await all_events(store)] == list(range(11, 16))
    assert (await store.verify()).ok
    assert [e.id for e in ArchiveReader(tmp_path).run_events("run-1", 1, 10)] == [
        e.id for e in before[:10] if e.run_id == "run-1"
    ]
