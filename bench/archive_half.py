"""Append, list and replay rates on a large log, before and after archiving its first half.

    python -m bench.archive_half [N] [--quick] [--postgres URL]   (default 20M; --quick: 10,000)
    python -m bench.append --archive-half N       (the same, after bench.append's own cases)

Issue 19 asks that archiving half of a 20M-event log leaves the rates within 20 %. The log is
written with plain sqlite3, or COPY on PostgreSQL (real hashes: the archive checks that each
batch joins the chain), as valid run histories of 9 events (created, running, six steps, an
ending: 15 of 20 runs complete, 3 fail, 1 is cancelled, 1 times out), and the read model is
built by the projection rebuild, both untimed. Then, through the server's store
(``RunProjection`` attached), before and after ``archive_through(N // 2)``:
  append   256 tasks, each on its own run, single events, each acknowledgement awaited
  list     ``RunQueries.list_runs`` as ``GET /v1/runs`` calls it: newest first, a page of 50,
           unfiltered and ``status=failed``
  replay   the store reading the whole live log in pages of 1,000 (per event: the log after the
           archive is half as long)
The archive's own rate is reported as well (``bench.append``'s archive case measures it with
appenders running), and each phase's peak RSS. Targets: each after/before ratio >= 0.8, printed
for the wall-clock rates and for CPU per event (or call): the machines are shared.
With --postgres (or RUNTRACK_BENCH_POSTGRES), the same case follows in a scratch schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

from bench._machine import PeakRss, describe_machine
from bench.append import (
    BATCH,
    PAGE,
    Result,
    append_concurrently,
    connect_plain,
    create_runs,
    in_data_folder,
    timed,
)
from eventstore import (
    ARCHIVE_BATCH,
    EVENT_COLUMNS,
    GENESIS_HASH,
    INSERT_EVENT,
    EventFilter,
    EventStore,
    RunStatus,
    event_hash,
    open_store,
    scratch_schema,
)
from projections import RunFilter, RunProjection, RunQueries, rebuild

T = TypeVar("T")
FULL_EVENTS = 20_000_000
QUICK_EVENTS = 10_000
TASKS = 256
LIST_PAGE = 50
ORG = "org"
STAMP = "2026-01-01T00:00:00.000000+00:00"
ENDINGS = ("completed",) * 15 + ("failed",) * 3 + ("cancelled", "timed_out")
FILTERS = {"newest": RunFilter(), "failed": RunFilter(statuses=(RunStatus.FAILED,))}


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _status(before: str, after: str, stop: str | None = None) -> tuple[str, str, str]:
    payload = {"detail": None, "from": before, "last_heartbeat_at": None, "stop_reason": stop}
    return ("run_status_changed", "user", _json({**payload, "to": after}))


_STEP = (
    "step_completed",
    "operator",
    _json({"completion_tokens": 20, "duration_ms": 12.5, "model": "m", "prompt_tokens": 100}),
)
_MIDDLE = (_status("queued", "running"), *[_STEP] * 6)
_ENDS = {
    end: _status("running", end, "end_turn" if end == "completed" else None) for end in ENDINGS
}


def history(run: int) -> list[tuple[str, str, str]]:
    """Run ``run``'s 9 events (type, visibility, payload JSON), as the store would write them."""
    created: dict[str, object] = {
        "agent_id": f"agent-{run % 10}",
        "callback_url": None,
        "lane_key": f"lane-{run}",
        "metadata": {},
        "parent_run_id": None,
    }
    ending = _ENDS[ENDINGS[run % len(ENDINGS)]]
    return [("run_created", "user", _json(created)), *_MIDDLE, ending]


def chained_row(
    event_id: int, run: int, sequence: int, event: tuple[str, str, str], previous: str
) -> tuple[object, ...]:
    """The ``events`` row of event ``event_id``, ``sequence`` of run ``run``: hash included."""
    run_id, conversation = f"hist-{run}", f"conv-{run}"
    kind, visibility, payload = event
    digest = event_hash(
        id=event_id,
        organization_id=ORG,
        run_id=run_id,
        conversation_id=conversation,
        sequence=sequence,
        event_type=kind,
        visibility=visibility,
        payload_json=payload,
        created_at=STAMP,
        prev_hash=previous,
    )
    start = (event_id, ORG, run_id, conversation, sequence, *event)
    return (*start, STAMP, previous, digest, True)  # True: plain_names (nothing to escape)


Rows = list[tuple[object, ...]]


def chained_batches(count: int) -> Iterator[tuple[Rows, Rows]]:
    """``count`` chained events of whole run histories (the last one cut short), in batches of
    about ``BATCH`` events: (``events`` rows, the ``run_streams`` rows of their runs)."""
    previous, event_id, run = GENESIS_HASH, 0, 0
    while event_id < count:
        rows: Rows = []
        heads: Rows = []
        while len(rows) < BATCH and event_id < count:
            events = history(run)[: count - event_id]
            for sequence, event in enumerate(events, start=1):
                event_id += 1
                rows.append(chained_row(event_id, run, sequence, event, previous))
                previous = str(rows[-1][10])
            heads.append((f"hist-{run}", ORG, f"conv-{run}", len(events), event_id))
            run += 1
        yield rows, heads


def fill_sqlite(path: str, count: int) -> int:
    """The log written with plain sqlite3, a transaction per batch; the number of runs."""
    connection = connect_plain(Path(path), "NORMAL")
    runs = 0
    try:
        for rows, heads in chained_batches(count):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(INSERT_EVENT, rows)
            connection.executemany("INSERT INTO run_streams VALUES (?,?,?,?,?)", heads)
            connection.execute("COMMIT")
            runs += len(heads)
    finally:
        connection.close()
    return runs


def fill_postgres(url: str, count: int) -> int:
    """The same log through COPY (the store made the schema), ``log_head`` set to its end."""
    import psycopg  # only with --postgres

    asyncio.run(_create_schema(url))
    runs, last = 0, GENESIS_HASH
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        for rows, heads in chained_batches(count):
            with cursor.copy(f"COPY events ({EVENT_COLUMNS}, plain_names) FROM STDIN") as copy:
                for event in rows:
                    copy.write_row(event)
            with cursor.copy("COPY run_streams FROM STDIN") as copy:
                for head in heads:
                    copy.write_row(head)
            connection.commit()
            runs, last = runs + len(heads), str(rows[-1][10])
        cursor.execute(
            "UPDATE log_head SET last_id = %s, last_hash = %s, last_created_at = %s",
            (count, last, STAMP),
        )
    return runs


async def _create_schema(database: str) -> None:
    async with open_store(database):
        pass


def server_store(database: str, *, refill: bool = False) -> EventStore:
    """The store as the server opens it: the run projection folded in every append."""
    return open_store(database, projections=[RunProjection()], replace_stale_tables=refill)


@dataclass
class Prepared:
    runs: int
    fill_seconds: float
    rebuild: Result


def prepare(database: str, count: int) -> Prepared:
    started = time.perf_counter()
    fill = fill_postgres if database.startswith("postgres") else fill_sqlite
    runs = fill(database, count)
    fill_seconds = time.perf_counter() - started
    rebuilt = asyncio.run(build_read_model(database, runs))
    return Prepared(runs, fill_seconds, rebuilt)


async def build_read_model(database: str, runs: int) -> Result:
    async with server_store(database, refill=True) as store:
        with timed() as watch:
            report = await rebuild(store)
        if report.runs != runs:
            raise RuntimeError(f"the rebuild folded {report.runs} runs, the log has {runs}")
    return watch.result(report.events)


# -- the three rates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    appends: int  # timed events for the append rate (TASKS tasks)
    warmup: int  # untimed events before them
    lists: int  # timed calls of each listing

    @classmethod
    def for_log(cls, count: int) -> Sizes:
        """Fixed for large logs; smaller for a quick run, where the log is small too."""
        if count >= 1_000_000:
            return cls(appends=TASKS * 400, warmup=TASKS * 4, lists=2_000)
        return cls(appends=TASKS * 4, warmup=TASKS, lists=50)


@dataclass
class Rates:
    append: Result
    lists: dict[str, Result]
    replay: Result


async def append_rate(store: EventStore, sizes: Sizes, *, create: bool) -> Result:
    """``create``: the tasks' runs are new (before); after the archive the same runs go on."""
    if create:
        await create_runs(store, TASKS)
    await append_concurrently(store, TASKS, max(1, sizes.warmup // TASKS))
    each = sizes.appends // TASKS
    with timed() as watch:
        await append_concurrently(store, TASKS, each)
    return watch.result(each * TASKS)


async def list_rate(store: EventStore, flt: RunFilter, calls: int) -> Result:
    """Calls per second of one page of ``flt``, newest first (``GET /v1/runs``'s query)."""
    queries = RunQueries(store)
    await queries.list_runs(ORG, flt, limit=LIST_PAGE)  # warm the connection and the cache
    with timed() as watch:
        for _ in range(calls):
            page = await queries.list_runs(ORG, flt, limit=LIST_PAGE)
    if not page.items:  # a full page, but for a log too small to hold 50 matching runs
        raise RuntimeError("the listing found no runs: the read model was not built")
    return watch.result(calls)


async def measure(database: str, sizes: Sizes, *, create: bool) -> Rates:
    async with server_store(database) as store:
        appended = await append_rate(store, sizes, create=create)
        lists = {name: await list_rate(store, flt, sizes.lists) for name, flt in FILTERS.items()}
        live = await store.head() - await store.oldest_event_id() + 1
    return Rates(appended, lists, await replay_rate(database, live))


async def replay_rate(database: str, expected: int) -> Result:
    """The whole live log in pages of ``PAGE`` from the oldest kept event, as the replay case
    reads it (bench.append's ``replay_pages``, less its RSS samples), on either backend."""
    async with open_store(database) as store:
        cursor, count = 0, 0
        with timed() as watch:
            while (page := await store.read(EventFilter(), after=cursor, limit=PAGE)).events:
                count += len(page.events)
                cursor = page.position
    if count != expected:
        raise RuntimeError(f"replayed {count} events, expected {expected}")
    return watch.result(count)


async def archive_first_half(database: str, segments: Path, cut: int) -> Result:
    async with server_store(database) as store:
        with timed() as watch:
            manifests = await store.archive_through(cut, segments, batch=ARCHIVE_BATCH)
        if sum(m.count for m in manifests) != cut or await store.oldest_event_id() != cut + 1:
            raise RuntimeError(f"the archive did not move events 1..{cut}")
    return watch.result(cut)


@dataclass
class HalfRun:
    events: int
    prepared: Prepared
    archived: Result
    before: Rates
    after: Rates
    peak_mb: dict[str, float]  # the process's peak RSS in each phase

    def pairs(self) -> dict[str, tuple[str, Result, Result]]:
        """Each rate's (label, before, after): per event, or per call for the lists."""
        before, after = self.before, self.after
        found = {"append": (f"append, {TASKS} tasks", before.append, after.append)}
        for name, result in before.lists.items():
            label = f"list {name}, a page of {LIST_PAGE}"
            found[f"list_{name}"] = (label, result, after.lists[name])
        label = f"replay {before.replay.events:,} / {after.replay.events:,}"
        found["replay"] = (label, before.replay, after.replay)
        return found


def archive_half_case(database: str, segments: Path, count: int) -> HalfRun:
    """The whole case on ``database``: fill, rebuild, measure, archive half, measure again."""
    peaks: dict[str, float] = {}
    sizes = Sizes.for_log(count)
    prepared = in_phase(peaks, "fill and rebuild", lambda: prepare(database, count))
    before = in_phase(peaks, "before", lambda: asyncio.run(measure(database, sizes, create=True)))
    half = partial(archive_first_half, database, segments, count // 2)
    archived = in_phase(peaks, "archive", lambda: asyncio.run(half()))
    after = in_phase(peaks, "after", lambda: asyncio.run(measure(database, sizes, create=False)))
    return HalfRun(count, prepared, archived, before, after, peaks)


def in_phase(peaks: dict[str, float], name: str, work: Callable[[], T]) -> T:
    """``work()``, its peak RSS kept as ``peaks[name]``: the rebuild holds every run's state,
    so a 20M-event log needs gigabytes, and the lead's run must know how many."""
    rss = PeakRss()
    done = work()
    peaks[name] = rss.baseline + rss.growth_mb()
    return done


def backend_runs(folder: Path, count: int, postgres: str | None) -> Iterator[tuple[str, HalfRun]]:
    """SQLite in ``folder`` (on disk); then PostgreSQL in a scratch schema, if given."""
    yield "sqlite", archive_half_case(str(folder / "half.db"), folder / "segments", count)
    if postgres:
        with scratch_schema(postgres, prefix="bench_") as schema:
            yield "postgres", archive_half_case(schema.url, folder / "pg-segments", count)


# -- reporting ---------------------------------------------------------------------------------


def _row(label: str, before: Result, after: Result) -> str:
    wall, cpu = after.rate / before.rate, before.cpu_us / after.cpu_us
    short = "" if min(wall, cpu) >= 0.8 else "  (below 0.8)"
    return (
        f"  {label:<30} {before.rate:>10,.0f} {after.rate:>10,.0f} {wall:>6.2f}"
        f" {before.cpu_us:>10.1f} {after.cpu_us:>10.1f} {cpu:>6.2f}{short}"
    )


def half_lines(run: HalfRun, backend: str) -> list[str]:
    prepared, archived = run.prepared, run.archived
    lines = [
        f"  {backend}: archive half of {run.events:,} events ({prepared.runs:,} runs of 9 "
        f"events): fill {prepared.fill_seconds:,.0f} s, rebuild {prepared.rebuild.rate:,.0f} "
        f"ev/s, archive of {archived.events:,} {archived.rate:,.0f} ev/s "
        f"({archived.seconds:,.0f} s), untimed in the comparison",
        "  peak RSS: " + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in run.peak_mb.items()),
        f"  {'per event (list: per call)':<30} {'before/s':>10} {'after/s':>10} {'ratio':>6}"
        f" {'CPU µs bef':>10} {'CPU µs aft':>10} {'ratio':>6}   (targets >= 0.8)",
    ]
    lines += [_row(*pair) for pair in run.pairs().values()]
    return lines


def half_fields(run: HalfRun, prefix: str = "") -> str:
    fields = [
        f"{prefix}{name}={after.rate / before.rate:.2f} "
        f"{prefix}{name}_cpu={before.cpu_us / after.cpu_us:.2f}"
        for name, (_, before, after) in run.pairs().items()
    ]
    return " ".join([*fields, f"{prefix}archive_ev_s={run.archived.rate:.0f}"])


def run_and_print(count: int, postgres: str | None = None) -> dict[str, HalfRun]:
    """The case on each backend, its lines printed as each ends (a 20M run is long), then one
    summary line (``pg_`` fields for PostgreSQL)."""
    runs = {}
    with in_data_folder() as folder:
        for backend, run in backend_runs(folder, count, postgres):
            print("\n".join(half_lines(run, backend)), flush=True)
            runs[backend] = run
    print(f"  load average at the end: {load()}")
    fields = [half_fields(run, "pg_" if name == "postgres" else "") for name, run in runs.items()]
    print(f"archive_half: events={count} {' '.join(fields)}", flush=True)
    return runs


def load() -> str:
    """The 1, 5 and 15 minute load averages: the machine is shared, the rates depend on it."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("events", type=int, nargs="?", help=f"log size (default {FULL_EVENTS:,})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS:,} events, seconds")
    parser.add_argument("--postgres", default=os.environ.get("RUNTRACK_BENCH_POSTGRES"))
    args = parser.parse_args()
    count = args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS)
    print(describe_machine(), f"| load {load()}", flush=True)
    run_and_print(count, args.postgres)


if __name__ == "__main__":
    main()
