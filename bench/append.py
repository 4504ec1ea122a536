"""Append and replay throughput: runtrack's store against plain sqlite3 and eventsourcing.

    python -m bench.append [--quick] [--postgres URL]

Cases, measured in one run on the same machine and the store's own schema:
  ceiling        plain sqlite3, WAL, synchronous=FULL, 10,000 rows per transaction, no hashes
                 computed, no acknowledgements (rows spread over 256 runs, as in store 256)
  store N        runtrack, N concurrent tasks, each on its own run, appending single events and
                 awaiting each acknowledgement (synchronous=FULL, and NORMAL at 256 tasks)
  eventsourcing  the eventsourcing library on SQLite (its defaults: WAL, synchronous=FULL),
                 one ``Application.save`` per event
  growth         (full mode, or --growth N) store 256 on a fresh file until the log holds N events
                 (default 20M in full mode): the rate of the first hundredth ("empty log"), then
                 of each fifth; the target is the last fifth within 20 % of the empty log's rate
  scan / replay  a plain sqlite3 ``SELECT * FROM events ORDER BY id`` against the store reading
                 the whole log in pages of 1,000; RSS growth is measured during the replay
  archive        (full mode: 1M events, or --archive N) a chained log of N events moved to
                 segments in batches of 2,500 (``EventStore.archive_through``) while 16 tasks
                 append: archive events/s, peak RSS growth, and the appends' p99 latency
  archive half   (full mode: 20M events, or --archive-half N; bench/archive_half.py) append, list
                 and replay rates on an N-event log before and after archiving its first half
All runs share one organization and one conversation on both sides. Every append case first
writes a short untimed warm-up (the first commits of a fresh WAL file also grow it, which makes
early fsyncs slower), then times a fixed number of events, reported in fifths as well: the rate
falls as the log grows (each group of appends dirties more index pages), so the sizes matter.
With PostgreSQL (--postgres, or RUNTRACK_BENCH_POSTGRES): store 256 on PostgreSQL and
eventsourcing's PostgreSQL recorder, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench._machine import PeakRss, describe_machine
from eventstore import (
    ARCHIVE_BATCH,
    GENESIS_HASH,
    INSERT_EVENT,
    WAL_AUTOCHECKPOINT_PAGES,
    WRITER_CACHE_KIB,
    EventFilter,
    EventStore,
    NewEvent,
    SQLiteEventStore,
    event_hash,
    open_store,
    scratch_schema,
)

Synchronous = Literal["FULL", "NORMAL"]
BATCH = 10_000  # rows per transaction for the ceiling
PAGE = 1_000  # events per page for the replay
LAPS = 5  # the timed part of an append case is reported in fifths too
ROW_TAIL = (  # event_type .. hash, the same shape and sizes as the store's own rows
    "message_created",
    "user",
    '{"content":"hello","role":"user"}',
    "2026-01-01T00:00:00.000000+00:00",
    "0" * 64,
    "f" * 64,
    True,  # plain_names: nothing in these names needs escaping in JSON
)


@dataclass(frozen=True)
class Sizes:
    appends: int  # events per store case (16 and 256 tasks) and for the ceiling
    single: int  # events for the store with 1 task (one fsync per event)
    eventsourcing: int  # events for eventsourcing (one fsync per event)
    warmup: int  # untimed events before each append case
    replay: int  # events in the replay log
    growth: int = 0  # events the growth case grows the log to (0: no growth case)
    archive: int = 20_000  # events the archive case moves to segments


QUICK = Sizes(appends=50_000, single=2_000, eventsourcing=1_500, warmup=500, replay=100_000)
SMOKE = Sizes(
    appends=5_000, single=200, eventsourcing=150, warmup=100, replay=10_000, archive=5_000
)
"""Sizes at which every case still runs and prints, and no figure means anything: what the
test suite runs to check that the benchmark itself still works."""
FULL = Sizes(
    appends=200_000,
    single=10_000,
    eventsourcing=5_000,
    warmup=1_000,
    replay=1_000_000,
    growth=20_000_000,
    archive=1_000_000,
)
GROWTH_TASKS = 256


@dataclass(frozen=True)
class Result:
    """One case: how many events, in how long, and how much CPU the whole process used."""

    events: int
    seconds: float
    cpu_seconds: float
    laps: tuple[float, ...] = ()  # events/s in each fifth of the timed part, as the log grows

    @property
    def rate(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.events * 1e6


@dataclass
class Stopwatch:
    started: float
    cpu_started: float
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    laps: list[float] = field(default_factory=list)
    _lap_started: float = 0.0

    def lap(self, events: int) -> None:
        """``events`` more were written since the last lap: record their rate."""
        now = time.perf_counter()
        self.laps.append(events / (now - (self._lap_started or self.started)))
        self._lap_started = now

    def result(self, events: int) -> Result:
        return Result(events, self.seconds, self.cpu_seconds, tuple(self.laps))


@contextlib.contextmanager
def timed() -> Iterator[Stopwatch]:
    """Wall-clock and process CPU time (all threads) of the block."""
    gc.collect()
    watch = Stopwatch(time.perf_counter(), time.process_time())
    yield watch
    watch.seconds = time.perf_counter() - watch.started
    watch.cpu_seconds = time.process_time() - watch.cpu_started


def row(event_id: int, runs: int) -> tuple[object, ...]:
    """Event ``event_id`` of a log spread round-robin over ``runs`` runs."""
    index = event_id - 1
    return (event_id, "org", f"run-{index % runs}", "conv", index // runs + 1, *ROW_TAIL)


# -- (a) the ceiling ---------------------------------------------------------------------------


def connect_plain(path: Path, synchronous: Synchronous = "FULL") -> sqlite3.Connection:
    """A plain sqlite3 connection to a file whose schema the store made, set up as the store
    sets up its own."""
    asyncio.run(_create_schema(path))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    connection.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
    return connection


async def _create_schema(path: Path) -> None:
    async with SQLiteEventStore(path):
        pass


def insert_batches(connection: sqlite3.Connection, first: int, count: int, runs: int) -> None:
    for start in range(first, first + count, BATCH):
        rows = [row(i, runs) for i in range(start, min(first + count, start + BATCH))]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(INSERT_EVENT, rows)
        connection.execute("COMMIT")


def ceiling(path: Path, sizes: Sizes) -> Result:
    """Rows are built inside the timed loop too: the store builds its rows as well."""
    connection = connect_plain(path)
    try:
        insert_batches(connection, 1, BATCH, 256)  # warm-up: one untimed transaction
        part = sizes.appends // LAPS
        with timed() as watch:
            for lap in range(LAPS):
                insert_batches(connection, BATCH + 1 + lap * part, part, 256)
                watch.lap(part)
    finally:
        connection.close()
    return watch.result(part * LAPS)


# -- (b) runtrack's store ----------------------------------------------------------------------

MESSAGE = NewEvent("message_created", {"role": "user", "content": "hello"})


async def create_runs(store: EventStore, tasks: int) -> None:
    for n in range(tasks):
        created = NewEvent("run_created", {"agent_id": "bench"})
        await store.append("org", f"run-{n}", [created], conversation_id="conv")


async def append_concurrently(store: EventStore, tasks: int, each: int) -> None:
    async def appender(n: int) -> None:
        for _ in range(each):
            await store.append("org", f"run-{n}", [MESSAGE])

    await asyncio.gather(*(appender(n) for n in range(tasks)))


async def store_case(path: Path, tasks: int, events: int, warmup: int, sync: Synchronous) -> Result:
    async with SQLiteEventStore(path, synchronous=sync) as store:
        await create_runs(store, tasks)
        await append_concurrently(store, tasks, max(1, warmup // tasks))
        each = max(1, events // tasks // LAPS)
        with timed() as watch:
            for _ in range(LAPS):
                await append_concurrently(store, tasks, each)
                watch.lap(each * tasks)
    return watch.result(each * tasks * LAPS)


async def growth_case(path: Path, events: int, warmup: int) -> tuple[Result, Result]:
    """The log grown to ``events`` by store 256: (its first hundredth, the five fifths)."""
    async with SQLiteEventStore(path) as store:
        await create_runs(store, GROWTH_TASKS)
        await append_concurrently(store, GROWTH_TASKS, max(1, warmup // GROWTH_TASKS))
        first = max(20, events // 100 // GROWTH_TASKS)
        with timed() as start:
            await append_concurrently(store, GROWTH_TASKS, first)
        each = max(1, (events - first * GROWTH_TASKS) // GROWTH_TASKS // LAPS)
        with timed() as watch:
            for _ in range(LAPS):
                await append_concurrently(store, GROWTH_TASKS, each)
                watch.lap(each * GROWTH_TASKS)
    return start.result(first * GROWTH_TASKS), watch.result(each * GROWTH_TASKS * LAPS)


# -- (c) eventsourcing -------------------------------------------------------------------------


class Log(Aggregate):
    """An aggregate that records one event per ``tick`` (eventsourcing's side of the race)."""

    @event("Ticked")
    def tick(self, n: int) -> None:
        """One event per call."""


def ticks(application: Application[uuid.UUID], log: Log, count: int) -> None:
    for n in range(count):
        log.tick(n)
        application.save(log)


def eventsourcing_case(env: dict[str, str], events: int, warmup: int) -> Result:
    application: Application[uuid.UUID] = Application(env=env)
    try:
        log = Log()
        application.save(log)
        ticks(application, log, warmup)
        with timed() as watch:
            ticks(application, log, events)
    finally:
        application.close()
    return watch.result(events)


def sqlite_env(path: Path) -> dict[str, str]:
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}


# -- (d) replay --------------------------------------------------------------------------------


def fill_log(path: Path, count: int, runs: int = 1_000) -> None:
    """A large log written directly (replay does not verify hashes), run heads consistent."""
    connection = connect_plain(path, "NORMAL")
    try:
        insert_batches(connection, 1, count, runs)
        heads = [run_head(r, count, runs) for r in range(min(runs, count))]
        connection.executemany("INSERT INTO run_streams VALUES (?,?,?,?,?)", heads)
    finally:
        connection.close()


def run_head(run: int, count: int, runs: int) -> tuple[object, ...]:
    """The ``run_streams`` row of run ``run`` once ``row`` has written events 1..``count``."""
    last_sequence = (count - run - 1) // runs + 1
    return (f"run-{run}", "org", "conv", last_sequence, (last_sequence - 1) * runs + run + 1)


def scan(path: Path) -> Result:
    connection = sqlite3.connect(path)
    try:
        with timed() as watch:
            count = sum(1 for _ in connection.execute("SELECT * FROM events ORDER BY id"))
    finally:
        connection.close()
    return watch.result(count)


@dataclass
class Memory:
    """RSS growth during the replay: after the first tenth of the log, and the peak overall."""

    early_mb: float = 0.0
    peak_mb: float = 0.0


async def replay_pages(store: SQLiteEventStore, rss: PeakRss, early_at: int) -> tuple[int, float]:
    cursor, count, early = 0, 0, 0.0
    while True:
        page = await store.read(EventFilter(), after=cursor, limit=PAGE)
        if not page.events:
            return count, early
        count += len(page.events)
        cursor = page.position
        rss.sample()
        if not early and count >= early_at:
            early = rss.growth_mb()


async def replay(path: Path, expected: int) -> tuple[Result, Memory]:
    async with SQLiteEventStore(path) as store:
        rss = PeakRss()
        with timed() as watch:
            count, early = await replay_pages(store, rss, max(PAGE, expected // 10))
        memory = Memory(early, rss.growth_mb())
    if count != expected:
        raise RuntimeError(f"replayed {count} events, expected {expected}")
    return watch.result(count), memory


# -- archive -----------------------------------------------------------------------------------

ARCHIVE_APPENDERS = 16


def fill_chained_log(path: Path, count: int, runs: int = 1_000) -> None:
    """Like ``fill_log``, with real hashes: the archive checks that each batch joins the chain."""
    connection = connect_plain(path, "NORMAL")
    previous = GENESIS_HASH
    try:
        for start in range(1, count + 1, BATCH):
            rows = []
            for event_id in range(start, min(count + 1, start + BATCH)):
                event = row(event_id, runs)
                digest = event_hash(
                    id=event_id,
                    organization_id="org",
                    run_id=str(event[2]),
                    conversation_id="conv",
                    sequence=int(str(event[4])),
                    event_type=ROW_TAIL[0],
                    visibility=ROW_TAIL[1],
                    payload_json=ROW_TAIL[2],
                    created_at=ROW_TAIL[3],
                    prev_hash=previous,
                )
                rows.append((*event[:9], previous, digest, 1))
                previous = digest
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(INSERT_EVENT, rows)
            connection.execute("COMMIT")
        heads = [run_head(r, count, runs) for r in range(min(runs, count))]
        connection.executemany("INSERT INTO run_streams VALUES (?,?,?,?,?)", heads)
    finally:
        connection.close()


@dataclass
class ArchiveRun:
    result: Result
    rss_mb: float
    append_p99_ms: float
    appended: int
    appenders: int = ARCHIVE_APPENDERS
    writer_cpu_seconds: float = 0.0  # the writer thread's CPU over the archive
    written_bytes: int = 0  # what the process wrote to storage over the archive
    units: int = 0  # the archive's write units (a unit stamps its segments' archived_at)
    append_max_ms: float = 0.0

    @property
    def writer_cpu_us(self) -> float:
        """The writer thread's CPU per archived event (its appends' share included)."""
        return self.writer_cpu_seconds / self.result.events * 1e6


def archive_case(
    root: Path, count: int, appenders: int = ARCHIVE_APPENDERS, pause: float = 0.0
) -> ArchiveRun:
    """Archive ``count`` events while appenders go on (each ``pause`` seconds apart after its
    last answer); each append's latency is recorded."""
    path = root / "archive.db"
    fill_chained_log(path, count)
    return asyncio.run(archive_while_appending(path, root / "segments", count, appenders, pause))


def thread_cpu_seconds(name_prefix: str) -> float:
    """The CPU time of this process's threads named ``name_prefix``* (Linux ``/proc``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for thread in threading.enumerate():
        if not thread.name.startswith(name_prefix) or thread.native_id is None:
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def written_bytes() -> int:
    """Bytes this process caused to be written to storage (``/proc/self/io``), 0 if unknown."""
    with contextlib.suppress(OSError), open("/proc/self/io") as io:
        for line in io:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


async def archive_while_appending(
    path: Path, segments: Path, count: int, appenders: int = ARCHIVE_APPENDERS, pause: float = 0.0
) -> ArchiveRun:
    latencies: list[float] = []
    async with SQLiteEventStore(path) as store:
        done = asyncio.Event()

        async def appender(n: int) -> None:
            while not done.is_set():
                started = time.perf_counter()
                await store.append("org", f"run-{n}", [MESSAGE])
                latencies.append(time.perf_counter() - started)
                if pause:
                    await asyncio.sleep(pause)

        tasks = [asyncio.create_task(appender(n)) for n in range(appenders)]
        rss = PeakRss()
        writer_cpu, written = thread_cpu_seconds("runtrack-writer"), written_bytes()
        with timed() as watch:
            manifests = await store.archive_through(count, segments, batch=ARCHIVE_BATCH)
        writer_cpu = thread_cpu_seconds("runtrack-writer") - writer_cpu
        written = written_bytes() - written
        rss_mb = rss.growth_mb()
        done.set()
        await asyncio.gather(*tasks)
        if sum(m.count for m in manifests) != count or not (await store.verify()).ok:
            raise RuntimeError("the archive did not move every event, or the chain broke")
        units = await store.fetchall("SELECT COUNT(DISTINCT archived_at) FROM archive_segments")
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else 0.0
    worst = latencies[-1] * 1000 if latencies else 0.0
    return ArchiveRun(
        watch.result(count),
        rss_mb,
        p99,
        len(latencies),
        appenders,
        writer_cpu,
        written,
        int(units[0][0]),
        worst,
    )


def archive_lines(run: ArchiveRun) -> list[str]:
    count = run.result.events
    costs = (
        f"  writer CPU {run.writer_cpu_us:.1f} us, process CPU {run.result.cpu_us:.1f} us, "
        f"written {run.written_bytes / count / 1024:.1f} KB per archived event; "
        f"{run.units:,} units ({count / max(run.units, 1):,.0f} events each)"
    )
    if not run.appenders:
        return [
            f"  archive of {count:,} events in batches of {ARCHIVE_BATCH:,}, nothing appending: "
            f"{run.result.rate:,.0f} events/s, RSS grew {run.rss_mb:.1f} MB",
            costs,
        ]
    return [
        f"  archive of {count:,} events in batches of {ARCHIVE_BATCH:,}: "
        f"{run.result.rate:,.0f} events/s (target >= 100k), RSS grew {run.rss_mb:.1f} MB; "
        f"{run.appended:,} appends by {run.appenders} tasks meanwhile, "
        f"p99 {run.append_p99_ms:.1f} ms (target < 50), max {run.append_max_ms:.1f} ms",
        costs,
    ]


# -- PostgreSQL (optional) ---------------------------------------------------------------------


async def postgres_store_case(url: str, tasks: int, events: int) -> Result:
    async with open_store(url) as store:
        await create_runs(store, tasks)
        each = max(1, events // tasks)
        with timed() as watch:
            await append_concurrently(store, tasks, each)
    return watch.result(each * tasks)


def postgres_env(schema: str) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "test",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": "root",
        "POSTGRES_PASSWORD": "unused",
        "POSTGRES_SCHEMA": schema,
        "CREATE_TABLE": "y",
    }


def postgres_cases(base: str, sizes: Sizes, results: dict[str, Result]) -> None:
    with scratch_schema(base, prefix="bench_") as schema:
        results["pg store 256"] = asyncio.run(postgres_store_case(schema.url, 256, sizes.appends))
        events = max(200, sizes.eventsourcing // 5)
        results["pg eventsourcing"] = eventsourcing_case(postgres_env(schema.name), events, 100)


# -- running and reporting ---------------------------------------------------------------------


def growth_results(root: Path, sizes: Sizes) -> dict[str, Result]:
    if not sizes.growth:
        return {}
    path = root / "growth.db"
    empty, grown = asyncio.run(growth_case(path, sizes.growth, sizes.warmup))
    return {"growth empty": empty, "growth": grown}


def store256_only(sizes: Sizes) -> None:
    """The ceiling and store 256 alone, each with the process's CPU per event: the pair that
    issue 16's store256/ceiling compares, quick enough to alternate with another checkout."""
    print(describe_machine(), flush=True)
    with in_data_folder() as folder:
        results = {"ceiling": ceiling(folder / "ceiling.db", sizes)}
        path = folder / "store-256-FULL.db"
        results["store 256"] = asyncio.run(
            store_case(path, 256, sizes.appends, sizes.warmup, "FULL")
        )
    print("\n".join(table(results)))
    store256, top = results["store 256"], results["ceiling"]
    print(
        f"append: store256/ceiling={store256.rate / top.rate:.3f} "
        f"store256_cpu_us={store256.cpu_us:.1f} ceiling_cpu_us={top.cpu_us:.1f}"
    )


def growth_only(sizes: Sizes) -> None:
    """The growth case alone: it takes long at 20M events, and needs no other case."""
    print(describe_machine(), flush=True)
    with in_data_folder() as folder:
        results = growth_results(folder, sizes)
    print("\n".join(table(results)))
    print("\n".join(growth_lines(results, sizes)))
    print(f"append:{growth_field(results)}")


@contextlib.contextmanager
def in_data_folder() -> Iterator[Path]:
    """A temporary folder under bench/.data (the disk, not a RAM-backed /tmp)."""
    data = Path(__file__).parent / ".data"
    data.mkdir(exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=data) as folder:
            yield Path(folder)
    finally:
        with contextlib.suppress(OSError):
            data.rmdir()  # only if empty: nothing else of ours is left behind


def append_cases(root: Path, sizes: Sizes) -> dict[str, Result]:
    results = {"ceiling": ceiling(root / "ceiling.db", sizes)}
    cases: tuple[tuple[int, Synchronous], ...] = ((1, "FULL"), (16, "FULL"), (256, "FULL"))
    for tasks, sync in (*cases, (256, "NORMAL")):
        events = sizes.single if tasks == 1 else sizes.appends
        name = f"store {tasks}" + (" NORMAL" if sync == "NORMAL" else "")
        path = root / f"store-{tasks}-{sync}.db"
        results[name] = asyncio.run(store_case(path, tasks, events, sizes.warmup, sync))
    env = sqlite_env(root / "eventsourcing.db")
    results["eventsourcing"] = eventsourcing_case(env, sizes.eventsourcing, sizes.warmup)
    return results


def replay_cases(root: Path, sizes: Sizes) -> tuple[dict[str, Result], Memory]:
    path = root / "replay.db"
    fill_log(path, sizes.replay)
    results = {"scan": scan(path)}
    results["replay"], memory = asyncio.run(replay(path, sizes.replay))
    return results, memory


LABELS = {
    "ceiling": "ceiling: plain sqlite3, 10k rows/txn",
    "store 1": "store, 1 task",
    "store 16": "store, 16 tasks",
    "store 256": "store, 256 tasks",
    "store 256 NORMAL": "store, 256 tasks, synchronous=NORMAL",
    "growth empty": "growth: store 256, first hundredth",
    "growth": "growth: store 256, the rest",
    "eventsourcing": "eventsourcing, one save per event",
    "scan": "scan: plain sqlite3 SELECT",
    "replay": "replay: store pages of 1,000",
    "pg store 256": "PostgreSQL: store, 256 tasks",
    "pg eventsourcing": "PostgreSQL: eventsourcing",
}


def reference(name: str) -> str:
    if name in ("scan", "replay"):
        return "scan"
    if name.startswith("growth"):
        return "growth empty"
    return "pg eventsourcing" if name.startswith("pg ") else "ceiling"


def table(results: dict[str, Result]) -> list[str]:
    header = (
        f"  {'case':<38} {'events':>9} {'s':>7} {'events/s':>11} {'CPU µs/ev':>10} {'ratio':>14}"
    )
    lines = [header, "  " + "-" * (len(header) - 2)]
    for name, result in results.items():
        base = reference(name)
        ratio = f"{result.rate / results[base].rate:.3f} of {base.removeprefix('pg ')}"
        lines.append(
            f"  {LABELS[name]:<38} {result.events:>9,} {result.seconds:>7.2f} "
            f"{result.rate:>11,.0f} {result.cpu_us:>10.1f} {ratio if name != base else '':>14}"
        )
    return lines


def trend(results: dict[str, Result]) -> list[str]:
    lines = ["  events/s in each fifth of the timed part (the log grows from a fresh file):"]
    for name, result in results.items():
        if result.laps:
            laps = " ".join(f"{lap / 1000:>6,.1f}k" for lap in result.laps)
            lines.append(f"    {LABELS[name]:<38} {laps}")
    return lines


def growth_lines(results: dict[str, Result], sizes: Sizes) -> list[str]:
    if "growth" not in results:
        return []
    empty, grown = results["growth empty"].rate, results["growth"]
    fifths = " ".join(f"{lap / 1000:,.1f}k" for lap in grown.laps)
    return [
        f"  growth to {sizes.growth:,} events (store 256, synchronous=FULL): empty log "
        f"{empty / 1000:,.1f}k events/s, each fifth {fifths}",
        f"  last fifth / empty log: {grown.laps[-1] / empty:.2f} (target >= 0.8)",
    ]


def growth_field(results: dict[str, Result]) -> str:
    if "growth" not in results:
        return ""
    return f" growth_last/empty={results['growth'].laps[-1] / results['growth empty'].rate:.2f}"


def report(
    results: dict[str, Result], memory: Memory, sizes: Sizes, archived: ArchiveRun | None = None
) -> None:
    print("\n".join(table(results)))
    print("\n".join(trend(results)))
    print("\n".join(growth_lines(results, sizes)))
    store256 = results["store 256"].rate
    normal = results["store 256 NORMAL"].rate / store256
    print(f"  synchronous=NORMAL / FULL at 256 tasks: {normal:.2f}x")
    print(
        f"  replay of {sizes.replay:,} events: RSS grew {memory.early_mb:.1f} MB after the first "
        f"tenth, {memory.peak_mb:.1f} MB at peak (pages, never the whole log)"
    )
    if "pg store 256" in results:
        ratio = results["pg store 256"].rate / results["pg eventsourcing"].rate
        print(f"  postgres: store256/eventsourcing={ratio:.2f}")
    if archived is not None:
        print("\n".join(archive_lines(archived)))
    archive_fields = (
        ""
        if archived is None
        else f" archive_ev_s={archived.result.rate:.0f} archive_p99_ms={archived.append_p99_ms:.1f}"
    )
    print(
        f"append: store256/ceiling={store256 / results['ceiling'].rate:.3f} "
        f"store256/eventsourcing={store256 / results['eventsourcing'].rate:.2f} "
        f"replay/ceiling={results['replay'].rate / results['scan'].rate:.3f}"
        f"{growth_field(results)}{archive_fields}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 30 s")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the test suite's")
    parser.add_argument("--postgres", default=os.environ.get("RUNTRACK_BENCH_POSTGRES"))
    parser.add_argument(
        "--growth", type=int, help="grow a log to this many events (full mode: 20,000,000; 0: skip)"
    )
    parser.add_argument("--only-growth", action="store_true", help="run the growth case alone")
    parser.add_argument("--archive", type=int, help="events the archive case moves (full: 1M)")
    parser.add_argument("--only-archive", action="store_true", help="run the archive case alone")
    parser.add_argument(
        "--only-store256", action="store_true", help="the ceiling and store 256 alone"
    )
    parser.add_argument(
        "--archive-appenders",
        type=int,
        default=ARCHIVE_APPENDERS,
        help="tasks appending during the archive case (0: the archive with nothing appending)",
    )
    parser.add_argument(
        "--archive-pause",
        type=float,
        default=0.0,
        help="seconds each of those tasks waits after each answer (0: appends back to back)",
    )
    parser.add_argument(
        "--archive-half", type=int, help="bench.archive_half's log size (full: 20M; 0: skip)"
    )
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.growth is not None:
        sizes = replace(sizes, growth=args.growth)
    if args.archive is not None:
        sizes = replace(sizes, archive=args.archive)
    if args.only_growth:
        growth_only(sizes)
        return
    if args.only_store256:
        store256_only(sizes)
        return
    if args.only_archive:
        print(describe_machine(), flush=True)
        with in_data_folder() as folder:
            print(
                "\n".join(
                    archive_lines(
                        archive_case(
                            folder, sizes.archive, args.archive_appenders, args.archive_pause
                        )
                    )
                )
            )
        return
    print(describe_machine(), flush=True)
    with in_data_folder() as folder:
        results = append_cases(folder, sizes)
        replayed, memory = replay_cases(folder, sizes)
        results |= growth_results(folder, sizes)
        archived = (
            archive_case(folder, sizes.archive, args.archive_appenders) if sizes.archive else None
        )
    results |= replayed
    if args.postgres:
        postgres_cases(args.postgres, sizes, results)
    report(results, memory, sizes, archived)
    if args.archive_half != 0 and (args.archive_half or not (args.quick or args.smoke)):
        from bench.archive_half import FULL_EVENTS, run_and_print  # it imports this module

        run_and_print(args.archive_half or FULL_EVENTS, args.postgres)


if __name__ == "__main__":
    main()
