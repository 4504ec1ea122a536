"""Append and replay throughput: runtrack's store against plain sqlite3 and eventsourcing.

    python -m bench.append [--quick] [--postgres URL]

Cases, measured in one run on the same machine and schema:
  ceiling      plain sqlite3, the store's schema, 10,000 pre-built rows per transaction
  store N      runtrack, N concurrent tasks each appending single events and awaiting each ack
  eventsourcing  the eventsourcing library, one save per event (its default SQLite settings)
  replay       the whole log read in pages through the store, against a plain sqlite3 scan
With PostgreSQL (--postgres, or RUNTRACK_BENCH_POSTGRES): store 256 on PostgreSQL and
eventsourcing's PostgreSQL recorder, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from bench._machine import describe_machine, rss_mb
from eventstore import EventFilter, NewEvent, open_store
from eventstore.sqlite import SCHEMA


class Log(Aggregate):
    """An aggregate that records one event per ``tick`` (eventsourcing's side of the race)."""

    @event("Ticked")
    def tick(self, n: int) -> None:
        """One event per call."""


ROW = (
    "org",
    "conv",
    "message_created",
    "user",
    '{"content":"hello","role":"user"}',
    "2026-01-01T00:00:00.000000+00:00",
    "0" * 64,
    "f" * 64,
)


def ceiling(path: Path, count: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    for statement in SCHEMA:
        connection.execute(statement)
    rows = [(i + 1, ROW[0], f"run-{i % 256}", ROW[1], i // 256 + 1, *ROW[2:]) for i in range(count)]
    started = time.perf_counter()
    for start in range(0, count, 10_000):
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows[start : start + 10_000]
        )
        connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


async def store_rate(database: str, tasks: int, count: int, **options: object) -> float:
    async with open_store(database, **options) as store:  # type: ignore[arg-type]
        for n in range(tasks):
            await store.append(
                "org",
                f"run-{n}",
                [NewEvent("run_created", {"agent_id": "a"})],
                conversation_id="conv",
            )
        each = max(1, count // tasks)
        message = NewEvent("message_created", {"role": "user", "content": "hello"})

        async def appender(n: int) -> None:
            for _ in range(each):
                await store.append("org", f"run-{n}", [message])

        started = time.perf_counter()
        await asyncio.gather(*(appender(n) for n in range(tasks)))
        return each * tasks / (time.perf_counter() - started)


def eventsourcing_rate(env: dict[str, str], count: int) -> float:
    application: Application[uuid.UUID] = Application(env=env)
    log = Log()
    application.save(log)
    started = time.perf_counter()
    for n in range(count):
        log.tick(n)
        application.save(log)
    return count / (time.perf_counter() - started)


def fill_log(path: Path, count: int) -> None:
    """A large log written directly (replay does not verify hashes)."""
    connection = sqlite3.connect(path, isolation_level=None)
    for statement in SCHEMA:
        connection.execute(statement)
    connection.execute("BEGIN")
    for start in range(0, count, 50_000):
        rows = [
            (i + 1, ROW[0], f"run-{i % 1000}", ROW[1], i // 1000 + 1, *ROW[2:])
            for i in range(start, min(count, start + 50_000))
        ]
        connection.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    connection.execute("COMMIT")
    connection.close()


def scan_rate(path: Path) -> float:
    connection = sqlite3.connect(path)
    started = time.perf_counter()
    count = sum(1 for _ in connection.execute("SELECT * FROM events ORDER BY id"))
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


async def replay_rate(path: Path) -> tuple[float, float]:
    """Events/s reading the whole log in pages, and the growth of RSS meanwhile (MB)."""
    async with open_store(str(path)) as store:
        cursor, count, baseline, peak = 0, 0, rss_mb(), 0.0
        started = time.perf_counter()
        while True:
            page = await store.read(EventFilter(), after=cursor, limit=1000)
            if not page.events:
                break
            count += len(page.events)
            cursor = page.position
            if count % 100_000 < 1000:
                peak = max(peak, rss_mb() - baseline)
        return count / (time.perf_counter() - started), peak


def postgres_url(base: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options=-csearch_path%3D{schema}", schema


def drop_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")


def postgres_cases(base: str, count: int, results: dict[str, float]) -> None:
    url, schema = postgres_url(base)
    try:
        results["pg store 256"] = asyncio.run(store_rate(url, 256, count))
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": "test",
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": "5432",
            "POSTGRES_USER": "root",
            "POSTGRES_PASSWORD": "unused",
            "POSTGRES_SCHEMA": schema,
            "CREATE_TABLE": "y",
        }
        results["pg eventsourcing"] = eventsourcing_rate(env, max(200, count // 20))
    finally:
        drop_schema(base, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 30 s")
    parser.add_argument("--postgres", default=os.environ.get("RUNTRACK_BENCH_POSTGRES"))
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    replay_events = 100_000 if args.quick else 1_000_000
    print(describe_machine())
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        results["ceiling"] = ceiling(root / "ceiling.db", n)
        results["store 1"] = asyncio.run(store_rate(str(root / "s1.db"), 1, n // 20))
        results["store 16"] = asyncio.run(store_rate(str(root / "s16.db"), 16, n))
        results["store 256"] = asyncio.run(store_rate(str(root / "s256.db"), 256, n))
        results["store 256 NORMAL"] = asyncio.run(
            store_rate(str(root / "s256n.db"), 256, n, synchronous="NORMAL")
        )
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(root / "es.db")}
        results["eventsourcing"] = eventsourcing_rate(env, max(500, n // 20))
        fill_log(root / "replay.db", replay_events)
        results["scan"] = scan_rate(root / "replay.db")
        results["replay"], growth = asyncio.run(replay_rate(root / "replay.db"))
    if args.postgres:
        postgres_cases(args.postgres, n, results)
    report(results, growth, replay_events)


def report(results: dict[str, float], growth: float, replay_events: int) -> None:
    for name, rate in results.items():
        print(f"  {name:<20} {rate:>12,.0f} events/s")
    print(
        f"  replay of {replay_events:,} events: RSS grew {growth:.1f} MB "
        "(pages, never the whole log)"
    )
    if "pg store 256" in results:
        ratio = results["pg store 256"] / results["pg eventsourcing"]
        print(f"  postgres: store256/eventsourcing={ratio:.1f}")
    print(
        f"append: store256/ceiling={results['store 256'] / results['ceiling']:.3f} "
        f"store256/eventsourcing={results['store 256'] / results['eventsourcing']:.1f} "
        f"replay/ceiling={results['replay'] / results['scan']:.3f}"
    )


if __name__ == "__main__":
    main()
