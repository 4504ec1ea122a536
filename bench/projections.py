"""Projection costs: rebuild rate, list latency, claim rate, and the price of the inline read model.

  python -m bench.projections [--quick]

rebuild      re-fold a log of valid run histories (1M events; --quick 100k), events/s
list p99     RunQueries.list_runs with status + agent filters over 100k and 1M runs (--quick:
             100k), first pages and next pages
claims/s     16 concurrent claimers over 2,000 queued runs in 200 lanes (claim, then end)
projected/store  appends with the run projection in the same transaction, against the bare
             store, 256 concurrent tasks, single events
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench._machine import describe_machine
from eventstore import INSERT_EVENT, NewEvent, RunStatus, SQLiteEventStore
from projections import RunCommands, RunFilter, RunProjection, RunQueries, RunState, rebuild
from projections.readmodel import state_to_row

STAMP = "2026-01-01T00:00:00.000000+00:00"
AGENTS = [f"agent-{n}" for n in range(10)]
STATUSES = (
    [RunStatus.COMPLETED] * 14
    + [RunStatus.FAILED] * 3
    + [RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.CANCELLED]
)


def status_payload(before: str, after: str, stop: str | None = None) -> str:
    return json.dumps(
        {
            "detail": None,
            "from": before,
            "last_heartbeat_at": None,
            "stop_reason": stop,
            "to": after,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def run_history(run: int) -> list[tuple[str, str, str]]:
    agent = AGENTS[run % len(AGENTS)]
    created: dict[str, object] = {
        "agent_id": agent,
        "callback_url": None,
        "lane_key": f"lane-{run}",
        "metadata": {},
        "parent_run_id": None,
    }
    step = {
        "duration_ms": 12.5,
        "model": "m",
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "ttft_ns": 1000,
    }
    events = [
        ("run_created", "user", json.dumps(created, sort_keys=True, separators=(",", ":"))),
        ("run_status_changed", "user", status_payload("queued", "running")),
    ]
    events += [
        ("step_completed", "operator", json.dumps(step, sort_keys=True, separators=(",", ":")))
    ] * 6
    events.append(
        ("run_status_changed", "user", status_payload("running", "completed", "end_turn"))
    )
    return events


async def build_log(path: Path, total: int) -> None:
    """A log of valid histories written straight into a store-made file (9 events a run)."""
    async with SQLiteEventStore(path, projections=[RunProjection()]):
        pass
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN")
    rows, next_id, run = [], 1, 0
    while next_id <= total:
        for sequence, (kind, visibility, payload) in enumerate(run_history(run), start=1):
            rows.append(
                (
                    next_id,
                    "org",
                    f"run-{run}",
                    f"conv-{run}",
                    sequence,
                    kind,
                    visibility,
                    payload,
                    STAMP,
                    "0" * 64,
                    "f" * 64,
                    True,  # plain_names
                )
            )
            next_id += 1
        run += 1
        if len(rows) >= 50_000:
            connection.executemany(INSERT_EVENT, rows)
            rows = []
    connection.executemany(INSERT_EVENT, rows)
    connection.execute("COMMIT")
    connection.close()


async def rebuild_rate(folder: Path, total: int) -> float:
    path = folder / "rebuild.db"
    await build_log(path, total)
    async with SQLiteEventStore(path, projections=[RunProjection()]) as store:
        report = await rebuild(store)
    return report.events / report.seconds


def synthetic_run(n: int, rng: random.Random) -> RunState:
    status = rng.choice(STATUSES)
    return RunState(
        run_id=f"run-{n:08d}",
        organization_id="org",
        conversation_id=f"conv-{n}",
        agent_id=rng.choice(AGENTS),
        lane_key=f"lane-{n}",
        parent_run_id=None,
        status=status,
        created_at=STAMP,
        created_event_id=n + 1,
        last_event_id=n + 1,
        last_sequence=1,
        updated_at=STAMP,
        status_changed_at=STAMP,
    )


async def fill_runs(path: Path, count: int) -> None:
    async with SQLiteEventStore(path, projections=[RunProjection()]):
        pass
    rng = random.Random(7)
    connection = sqlite3.connect(path, isolation_level=None)
    marks = ", ".join("?" for _ in state_to_row(synthetic_run(0, rng)))
    connection.execute("BEGIN")
    for start in range(0, count, 50_000):
        batch = [
            state_to_row(synthetic_run(n, rng)) for n in range(start, min(count, start + 50_000))
        ]
        connection.executemany(f"INSERT INTO runs VALUES ({marks})", batch)
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.close()


async def list_p99(folder: Path, count: int) -> float:
    path = folder / f"runs-{count}.db"
    await fill_runs(path, count)
    rng = random.Random(3)
    timings = []
    async with SQLiteEventStore(path, projections=[RunProjection()]) as store:
        queries = RunQueries(store)
        for n in range(300):
            statuses = tuple(
                rng.sample(
                    [RunStatus.FAILED, RunStatus.RUNNING, RunStatus.COMPLETED, RunStatus.QUEUED],
                    1 + n % 2,
                )
            )
            flt = RunFilter(statuses=statuses, agent_id=rng.choice(AGENTS))
            started = time.perf_counter()
            page = await queries.list_runs("org", flt, limit=50)
            if page.next_cursor is not None:
                await queries.list_runs("org", flt, limit=50, after=page.next_cursor)
            timings.append((time.perf_counter() - started) * 1000 / (2 if page.next_cursor else 1))
    return statistics.quantiles(timings, n=100)[98]


async def claim_rate(folder: Path) -> float:
    async with SQLiteEventStore(folder / "claims.db", projections=[RunProjection()]) as store:
        commands = RunCommands(store)
        for n in range(2000):
            await commands.create("org", "agent", lane_key=f"lane-{n % 200}")
        claimed = 0

        async def claimer(worker: int) -> None:
            nonlocal claimed
            while (claim := await commands.claim("org", f"w{worker}")) is not None:
                claimed += 1
                await commands.change_status("org", claim.run.run_id, stop_reason="end_turn")

        started = time.perf_counter()
        await asyncio.gather(*(claimer(w) for w in range(16)))
        return claimed / (time.perf_counter() - started)


async def append_rate(path: Path, projected: bool, count: int) -> float:
    projections = [RunProjection()] if projected else []
    async with SQLiteEventStore(path, projections=projections) as store:
        for n in range(256):
            await store.append(
                "org",
                f"run-{n}",
                [NewEvent("run_created", {"agent_id": "a"})],
                conversation_id=f"c{n}",
            )
            await store.append(
                "org", f"run-{n}", [NewEvent("run_status_changed", {"to": "running"})]
            )
        each = count // 256
        message = NewEvent("message_created", {"role": "assistant", "content": "hello"})

        async def appender(n: int) -> None:
            for _ in range(each):
                await store.append("org", f"run-{n}", [message])

        started = time.perf_counter()
        await asyncio.gather(*(appender(n) for n in range(256)))
        return each * 256 / (time.perf_counter() - started)


async def measure(quick: bool) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        results["rebuild ev/s"] = await rebuild_rate(folder, 100_000 if quick else 1_000_000)
        results["list p99 ms (100k runs)"] = await list_p99(folder, 100_000)
        if not quick:
            results["list p99 ms (1M runs)"] = await list_p99(folder, 1_000_000)
        results["claims/s"] = await claim_rate(folder)
        appends = 20_000 if quick else 60_000
        results["store ev/s"] = await append_rate(folder / "bare.db", False, appends)
        results["projected ev/s"] = await append_rate(folder / "projected.db", True, appends)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 30 s")
    parser.add_argument("--postgres", help="ignored: these figures are for SQLite")
    args = parser.parse_args()
    print(describe_machine())
    results = asyncio.run(measure(args.quick))
    for name, value in results.items():
        print(f"  {name:<26} {value:>12,.2f}")
    worst = max(v for k, v in results.items() if k.startswith("list p99"))
    print(
        f"projections: rebuild_ev_s={results['rebuild ev/s']:.0f} list_p99_ms={worst:.2f} "
        f"claim_per_s={results['claims/s']:.0f} "
        f"projected/store={results['projected ev/s'] / results['store ev/s']:.2f}"
    )


if __name__ == "__main__":
    main()
