"""``runtrack archive`` killed (SIGKILL) at each step leaves the old log or the new one, never
a gap, and a rerun finishes; then the CLI still shows the archived run. Both backends."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from eventstore import EventFilter, NewEvent, list_manifests, open_store, read_segment
from projections import RunCommands, RunProjection, check
from tests.eventstore.raw_database import RawDatabase

from .conftest import ProcessFactory, run_cli

pytestmark = pytest.mark.anyio
ORG = "default"
STEPS = ["segment_temporary", "segment_written", "unguarded", "deleted", "committed"]
"""The named points of eventstore/segments.py and archive.py, in the order a batch meets them."""


async def finished_runs(database: str, count: int = 3) -> int:
    """``count`` completed runs; the head of the log."""
    async with open_store(database, projections=[RunProjection()]) as store:
        commands = RunCommands(store)
        for n in range(count):
            run = await commands.create(ORG, "agent", conversation_id=f"c{n}", message="hello")
            assert await commands.claim(ORG, "w", lane_key=run.lane_key) is not None
            await commands.append(
                ORG, run.run_id, [NewEvent("run_status_changed", {"stop_reason": "end_turn"})]
            )
        return await store.head()


async def archive_cli(
    database: str, directory: Path, before: int, crash_at: str | None = None
) -> tuple[int, str]:
    environment = {**os.environ, "RUNTRACK_ARCHIVE_CRASH_AT": crash_at or ""}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", "archive", "--before", str(before)),
        *("--to", str(directory), "--batch", "4", "--database", database),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=environment,
    )
    out = (await process.communicate())[0].decode()
    return process.returncode or 0, out


async def every_event_once(database: str, directory: Path, head: int) -> int:
    """Segments up to the anchor, then the live log: ids 1..head once each, one chain."""
    async with open_store(database, projections=[RunProjection()]) as store:
        anchor = await store.anchor()
        cut = 0 if anchor is None else anchor.cut_id
        archived = [
            event
            for manifest in list_manifests(directory)
            if manifest.first_id <= cut
            for event in read_segment(directory, manifest)
        ]
        live = (await store.read(EventFilter(), after=0, limit=10_000)).events
        chain = archived + live
        assert [e.id for e in chain] == list(range(1, head + 1))
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(chain))
        assert (await store.verify()).ok
        assert (await check(store)).ok
        return cut


@pytest.mark.parametrize("step", STEPS)
async def test_a_killed_archive_leaves_no_gap_and_a_rerun_finishes(
    backend: str, database_url: str, tmp_path: Path, step: str
) -> None:
    directory = tmp_path / "archive"
    head = await finished_runs(database_url)
    code, out = await archive_cli(database_url, directory, head + 1, crash_at=step)
    assert code == -signal.SIGKILL, out
    cut = await every_event_once(database_url, directory, head)
    assert cut == (4 if step == "committed" else 0)
    raw = RawDatabase(backend, database_url)  # "unguarded": killed with the guard lifted
    with pytest.raises(raw.refusal, match="append-only"):
        raw.execute(f"DELETE FROM events WHERE id = {head}")
    code, out = await archive_cli(database_url, directory, head + 1)
    assert code == 0, out
    assert f"the live log starts at event {head + 1}" in out
    assert await every_event_once(database_url, directory, head) == head
    names = sorted(path.name for path in directory.iterdir())
    assert all(not name.endswith(".tmp") for name in names)
    assert len(names) == 2 * len(range(0, head, 4))


async def test_archive_reports_what_holds_it_and_the_cli_shows_archived_runs(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    database = str(tmp_path / "e2e.db")
    head = await finished_runs(database, count=1)
    async with open_store(database, projections=[RunProjection()]) as store:
        open_run = await RunCommands(store).create(ORG, "agent", conversation_id="later")
        done = (await store.read(EventFilter(), after=0, limit=1)).events[0].run_id
    code, out = await archive_cli(database, tmp_path / "archive", head + 10)
    assert code == 0, out
    assert f"held back at event {head}: run {open_run.run_id} (queued) has not ended" in out
    server = await server_process("--archive-dir", str(tmp_path / "archive"))
    code, out, err = await run_cli(server, "get", "run", done)
    assert code == 0, err
    assert "completed" in out
    code, out, err = await run_cli(server, "events", "tail", "--run", done, "-f")
    assert code == 2
    assert "archived" in err
    assert "--from-oldest" in err
    code, out, err = await run_cli(server, "events", "tail", "--run", done, "-f", "--from-oldest")
    assert code == 0, err
    assert f"going on from event {head + 1}" in err
    code, out, err = await run_cli(server, "events", "export", "--after", "1")
    assert code == 2
    assert out == ""  # nothing written: an export never has a silent gap
    assert f"export what is kept with --after {head}" in err
    code, out, err = await run_cli(server, "events", "export", "--after", str(head))
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["id"] == head + 1
    without = await server_process(database=database)
    code, out, err = await run_cli(without, "track", done)
    assert code == 0, err
    assert "messages are not shown" in err
    assert "events-000000000001-" in err
    code, out, err = await run_cli(without, "events", "tail", "--run", done)
    assert code == 2
    assert "--archive-dir" in err
