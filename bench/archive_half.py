"""Append, list and replay rates on a large log, before and after archiving its first half.

    python -m bench.archive_half [N] [--quick]     (N events, default 20,000,000; --quick: 20,000)
    python -m bench.append --archive-half N       (the same, after bench.append's own cases)

Issue 19 asks that archiving half of a 20M-event log leaves the rates within 20 %. The log is
written with plain sqlite3 (real hashes: the archive checks that each batch joins the chain) as
valid run histories of 9 events (created, running, six steps, an ending: 15 of 20 runs complete,
3 fail, 1 is cancelled, 1 times out), and the read model is built by the projection rebuild,
both untimed. Then, through the server's store (``RunProjection`` attached), before and after
``archive_through(N // 2)``:
  append   256 tasks, each on its own run, single events, each acknowledgement awaited
  list     ``RunQueries.list_runs`` as ``GET /v1/runs`` calls it: newest first, a page of 50,
           unfiltered and ``status=failed``
  replay   the store reading the whole live log in pages of 1,000 (per event: the log after the
           archive is half as long)
The archive's own rate is reported as well (``bench.append``'s archive case measures it with
appenders running). Targets: each after/before ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench._machine import describe_machine, status_mb
from bench.append import (
    BATCH,
    Result,
    append_concurrently,
    connect_plain,
    create_runs,
    in_data_folder,
    replay,
    timed,
)
from eventstore import ARCHIVE_BATCH, GENESIS_HASH, INSERT_EVENT, RunStatus, SQLiteEventStore
from eventstore import event_hash as chain_hash
from projections import RunFilter, RunProjection, RunQueries, rebuild

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
    digest = chain_hash(
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
    names = (event_id, ORG, run_id, conversation, sequence, *event)
    return (*names, STAMP, previous, digest, True)  # True: plain_names (nothing to escape)


def fill_histories(path: Path, count: int) -> int:
    """``count`` chained events of whole run histories (the last one cut short); the number of
    runs. ``run_streams`` gets each run's head in the same transaction as its events."""
    connection = connect_plain(path, "NORMAL")
    previous, event_id, run = GENESIS_HASH, 0, 0
    try:
        while event_id < count:
            rows: list[tuple[object, ...]] = []
            heads: list[tuple[object, ...]] = []
            while len(rows) < BATCH and event_id < count:
                events = history(run)[: count - event_id]
                for sequence, event in enumerate(events, start=1):
                    event_id += 1
                    rows.append(chained_row(event_id, run, sequence, event, previous))
                    previous = str(rows[-1][10])
                heads.append((f"hist-{run}", ORG, f"conv-{run}", len(events), event_id))
                run += 1
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(INSERT_EVENT, rows)
            connection.executemany("INSERT INTO run_streams VALUES (?,?,?,?,?)", heads)
            connection.execute("COMMIT")
    finally:
        connection.close()
    return run


def server_store(path: Path, *, refill: bool = False) -> SQLiteEventStore:
    """The store as the server opens it: the run projection folded in every append."""
    return SQLiteEventStore(path, projections=[RunProjection()], replace_stale_tables=refill)


@dataclass
class Prepared:
    runs: int
    fill_seconds: float
    rebuild: Result


def prepare(path: Path, count: int) -> Prepared:
    started = time.perf_counter()
    runs = fill_histories(path, count)
    fill_seconds = time.perf_counter() - started
    rebuilt = asyncio.run(build_read_model(path, runs))
    return Prepared(runs, fill_seconds, rebuilt)


async def build_read_model(path: Path, runs: int) -> Result:
    async with server_store(path, refill=True) as store:
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


async def append_rate(store: SQLiteEventStore, sizes: Sizes, *, create: bool) -> Result:
    """``create``: the tasks' runs are new (before); after the archive the same runs go on."""
    if create:
        await create_runs(store, TASKS)
    await append_concurrently(store, TASKS, max(1, sizes.warmup // TASKS))
    each = sizes.appends // TASKS
    with timed() as watch:
        await append_concurrently(store, TASKS, each)
    return watch.result(each * TASKS)


async def list_rate(store: SQLiteEventStore, flt: RunFilter, calls: int) -> Result:
    """Calls per second of one page of ``flt``, newest first (``GET /v1/runs``'s query)."""
    queries = RunQueries(store)
    await queries.list_runs(ORG, flt, limit=LIST_PAGE)  # warm the connection and the cache
    with timed() as watch:
        for _ in range(calls):
            page = await queries.list_runs(ORG, flt, limit=LIST_PAGE)
    if len(page.items) != LIST_PAGE:
        raise RuntimeError(f"a page held {len(page.items)} runs, not {LIST_PAGE}")
    return watch.result(calls)


async def measure(path: Path, sizes: Sizes, *, create: bool) -> Rates:
    async with server_store(path) as store:
        appended = await append_rate(store, sizes, create=create)
        lists = {name: await list_rate(store, flt, sizes.lists) for name, flt in FILTERS.items()}
        live = await store.head() - await store.oldest_event_id() + 1
    replayed, _ = await replay(path, live)
    return Rates(appended, lists, replayed)


async def archive_first_half(path: Path, segments: Path, cut: int) -> Result:
    async with server_store(path) as store:
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


def archive_half_case(root: Path, count: int) -> HalfRun:
    """The whole case in ``root``: fill, rebuild, measure, archive half, measure again."""
    path = root / "half.db"
    prepared = prepare(path, count)
    sizes = Sizes.for_log(count)
    before = asyncio.run(measure(path, sizes, create=True))
    archived = asyncio.run(archive_first_half(path, root / "segments", count // 2))
    after = asyncio.run(measure(path, sizes, create=False))
    return HalfRun(count, prepared, archived, before, after)


# -- reporting ---------------------------------------------------------------------------------


def _row(label: str, before: Result, after: Result) -> str:
    wall, cpu = after.rate / before.rate, before.cpu_us / after.cpu_us
    short = "" if min(wall, cpu) >= 0.8 else "  (below 0.8)"
    return (
        f"  {label:<30} {before.rate:>10,.0f} {after.rate:>10,.0f} {wall:>6.2f}"
        f" {before.cpu_us:>10.1f} {after.cpu_us:>10.1f} {cpu:>6.2f}{short}"
    )


def half_lines(run: HalfRun) -> list[str]:
    prepared, archived = run.prepared, run.archived
    lines = [
        f"  archive half of {run.events:,} events ({prepared.runs:,} runs of 9 events): fill "
        f"{prepared.fill_seconds:,.0f} s, rebuild {prepared.rebuild.rate:,.0f} ev/s, archive "
        f"of {archived.events:,} {archived.rate:,.0f} ev/s ({archived.seconds:,.0f} s), "
        "untimed in the comparison",
        f"  {'per event (list: per call)':<30} {'before/s':>10} {'after/s':>10} {'ratio':>6}"
        f" {'CPU µs bef':>10} {'CPU µs aft':>10} {'ratio':>6}   (targets >= 0.8)",
    ]
    lines += [_row(*pair) for pair in run.pairs().values()]
    return lines


def half_field(run: HalfRun) -> str:
    fields = [
        f"{name}={after.rate / before.rate:.2f} {name}_cpu={before.cpu_us / after.cpu_us:.2f}"
        for name, (_, before, after) in run.pairs().items()
    ]
    return (
        f"archive_half: events={run.events} {' '.join(fields)} archive_ev_s={run.archived.rate:.0f}"
    )


def run_and_print(count: int) -> HalfRun:
    """The case on disk (bench/.data), then its lines and its summary line."""
    with in_data_folder() as folder:
        run = archive_half_case(folder, count)
    print("\n".join(half_lines(run)))
    print(f"  load average at the end: {load()}; peak RSS {status_mb('VmHWM'):,.0f} MB")
    print(half_field(run), flush=True)
    return run


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
    if args.postgres:
        print("  (PostgreSQL is not measured by this case yet: SQLite only)")
    run_and_print(count)


if __name__ == "__main__":
    main()
