"""Paging an archived run from the segments: ``python -m bench.archive_pages [--quick]``.

A run of ``--events`` events, interleaved with another run's as many, is archived into segments
of 2,500 events; then its events are paged as ``GET /v1/runs/{id}/events`` pages them (each
page asks ``RunQueries.archived_events`` for what follows the last id and keeps ``--limit``),
with a fresh ``ArchiveReader``, and read whole once more (``messages``, ``usage`` do). Figures
in docs/benchmarks.md ("Archived run pages", issue 19).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench._machine import describe_machine
from eventstore import (
    ArchiveReader,
    EventStore,
    NewEvent,
    RunStatus,
    SQLiteEventStore,
    Visibility,
)
from projections import RunCommands, RunProjection, RunQueries, archive

ORG = "org-bench"
CHUNK = 500
SEGMENT = 2_500


async def _runs(store: EventStore, events: int) -> str:
    """Two finished runs of ``events`` events each, appended in turns of ``CHUNK``."""
    commands = RunCommands(store)
    runs = [(await commands.create(ORG, "agent")).run_id for _ in range(2)]
    for start in range(0, events, CHUNK):
        for run_id in runs:
            count = min(CHUNK, events - start)
            notes = [NewEvent("custom.note", {"n": n, "text": "x" * 80}) for n in range(count)]
            await commands.append(ORG, run_id, notes)
    for run_id in runs:
        await commands.change_status(ORG, run_id, RunStatus.CANCELLED)
    return runs[0]


async def _pages(queries: RunQueries, run_id: str, limit: int) -> tuple[int, int]:
    """Every page of the run as the route reads it: how many pages, and events."""
    state = await queries.get(ORG, run_id)
    after, pages, seen = 0, 0, 0
    while True:
        archived = await queries.archived_events(state, Visibility.OPERATOR, after)
        if archived is None:
            break
        events = archived[0]
        pages += 1
        seen += min(limit, len(events))
        if len(events) <= limit:
            break
        after = events[limit - 1].id
    return pages, seen


async def run(events: int, limit: int) -> None:
    print(describe_machine())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with SQLiteEventStore(folder / "log.db", projections=[RunProjection()]) as store:
            run_id = await _runs(store, events)
            report = await archive(store, await store.head(), folder / "archive", batch=SEGMENT)
            started = time.perf_counter()
            reader = ArchiveReader(folder / "archive")
            pages, seen = await _pages(RunQueries(store, reader), run_id, limit)
            paged = time.perf_counter() - started
            queries = RunQueries(store, ArchiveReader(folder / "archive"))
            state = await queries.get(ORG, run_id)
            started = time.perf_counter()
            found = await queries.archived_events(state)
            whole = time.perf_counter() - started
            assert found is not None
            assert len(found[0]) == seen, seen
    print(
        f"archive_pages: events={events} segments={len(report.segments)} limit={limit} "
        f"pages={pages} paged_s={paged:.2f} per_page_ms={paged / pages * 1000:.1f} "
        f"whole_read_ms={whole * 1000:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (a smoke test)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--limit", type=int, default=1_000)
    parser.add_argument("--postgres", help="ignored: the segments are read the same way")
    args = parser.parse_args()
    events = 3_000 if args.quick else args.events
    asyncio.run(run(events, args.limit))


if __name__ == "__main__":
    main()
