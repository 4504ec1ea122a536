"""SSE and HTTP costs, against a real server process.

    python -m bench.sse [--quick] [--postgres URL]

  replay     one client catching up 200,000 events over SSE, against a bare Starlette
             StreamingResponse sending the same pre-encoded frames (the ceiling)
  fan-out    a separate client process holding 1,000 streams (full mode: also 5,000) while
             ~1,000 events/s are appended over HTTP: append→receive p50/p99, server RSS
  append     HTTP appends, single events (32 clients) and batches of 100
With PostgreSQL (--postgres or RUNTRACK_BENCH_POSTGRES): fan-out with clients on server A and
appends through server B: cross-server delivery p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._http import RawClient
from bench._machine import describe_machine
from eventstore import NewEvent, SQLiteEventStore
from projections import RunProjection


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Process:
    args: list[str]
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ready_path: str = "/readyz") -> Process:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *self.args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with httpx.AsyncClient(base_url=self.url) as client:
            for _ in range(1000):
                try:
                    await client.get(ready_path, timeout=1)
                    return self
                except httpx.TransportError:
                    await asyncio.sleep(0.02)
        raise RuntimeError(f"{self.args} did not start")

    def rss_mb(self) -> float:
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def server(database: str, *extra: str) -> Process:
    process = Process([])
    process.args = [
        "api",
        "serve",
        "--database",
        database,
        "--port",
        str(process.port),
        "--heartbeat-seconds",
        "60",
        "--max-streams",
        "20000",
        *extra,
    ]
    return process


async def fill(database: str, events: int) -> str:
    async with SQLiteEventStore(database, projections=[RunProjection()]) as store:
        created = NewEvent("run_created", {"agent_id": "bench"})
        await store.append("default", "run-bench", [created], conversation_id="conv")
        for start in range(0, events, 1000):
            batch = [
                NewEvent("custom.tick", {"n": n}) for n in range(start, min(events, start + 1000))
            ]
            await store.append("default", "run-bench", batch)
    return "run-bench"


async def catch_up_rate(url: str, last_id: int) -> float:
    marker = f"id: {last_id}\n".encode()
    started = time.perf_counter()
    tail = b""
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        client.stream("GET", "/v1/events", headers={"Accept": "text/event-stream"}) as response,
    ):
        async for chunk in response.aiter_bytes():
            if marker in tail[-64:] + chunk:
                break
            tail = chunk
    return last_id / (time.perf_counter() - started)


async def replay(folder: Path, events: int) -> tuple[float, float]:
    database = str(folder / "replay.db")
    await fill(database, events)
    runtrack = await server(database).start()
    ceiling = Process(["bench._sse_helpers", "ceiling", database])
    ceiling.args.append(str(ceiling.port))
    await ceiling.start("/v1/none")
    try:
        ours = await catch_up_rate(runtrack.url, events + 1)
        bare = await catch_up_rate(ceiling.url, events + 1)
    finally:
        await runtrack.stop()
        await ceiling.stop()
    return ours, bare


async def paced_appends(port: int, run_id: str, rate: int, seconds: float) -> int:
    """About ``rate`` single-event appends per second (8 connections), each with its send time."""
    sent = 0
    path = f"/v1/runs/{run_id}/events"

    async def sender(client: RawClient, started: float) -> None:
        nonlocal sent
        while (elapsed := time.perf_counter() - started) < seconds:
            if sent >= elapsed * rate:
                await asyncio.sleep(0.001)
                continue
            sent += 1
            body = {
                "events": [{"event_type": "custom.tick", "payload": {"n": sent, "t": time.time()}}]
            }
            status, _ = await client.post(path, body)
            assert status == 201

    clients = [RawClient(port) for _ in range(8)]
    for client in clients:
        await client.__aenter__()
    started = time.perf_counter()
    await asyncio.gather(*(sender(c, started) for c in clients))
    for client in clients:
        await client.__aexit__()
    return sent


async def fanout(
    stream_url: str, append_url: str, streams: int, seconds: float
) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=append_url) as client:
        run_id = (await client.post("/v1/runs", json={"agent_id": "fanout"})).json()["id"]
    clients = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._sse_helpers",
        "fanout",
        stream_url,
        str(streams),
        str(seconds + 2),
        stdout=asyncio.subprocess.PIPE,
    )
    assert clients.stdout is not None
    assert (await clients.stdout.readline()).strip() == b"ready"
    sent = await paced_appends(int(append_url.rsplit(":", 1)[1]), run_id, 1000, seconds)
    result: dict[str, float] = json.loads(await clients.stdout.readline())
    await clients.wait()
    result["sent"] = sent
    return result


async def append_rates(port: int, seconds: float) -> tuple[float, float]:
    async with RawClient(port) as setup:
        _, body = await setup.post("/v1/runs", {"agent_id": "appends"})
    path = f"/v1/runs/{json.loads(body)['id']}/events"

    async def loop(batch: int) -> int:
        events = {
            "events": [{"event_type": "custom.tick", "payload": {"n": n}} for n in range(batch)]
        }
        count, deadline = 0, time.perf_counter() + seconds
        async with RawClient(port) as client:
            while time.perf_counter() < deadline:
                status, _ = await client.post(path, events)
                assert status == 201
                count += batch
        return count

    single = sum(await asyncio.gather(*(loop(1) for _ in range(32)))) / seconds
    batched = sum(await asyncio.gather(*(loop(100) for _ in range(8)))) / seconds
    return single, batched


async def measure(quick: bool, postgres: str | None) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        results["replay ev/s"], results["ceiling ev/s"] = await replay(folder, 200_000)
        live = await server(str(folder / "live.db")).start()
        try:
            for streams in [1000] if quick else [1000, 5000]:
                fan = await fanout(live.url, live.url, streams, 5 if quick else 10)
                results[f"fanout {streams} p50 ms"] = fan["p50_ms"]
                results[f"fanout {streams} p99 ms"] = fan["p99_ms"]
                results[f"fanout {streams} delivered"] = fan["received"]
                results[f"fanout {streams} appended"] = fan["sent"]
                results["streams"] = streams
                results["rss mb"] = live.rss_mb()
            results["http single ev/s"], results["http batch100 ev/s"] = await append_rates(
                live.port, 3 if quick else 5
            )
        finally:
            await live.stop()
    if postgres:
        results.update(await cross_server(postgres, quick))
    return results


async def cross_server(base: str, quick: bool) -> dict[str, float]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    url = f"{base}?options=-csearch_path%3D{schema}"
    a, b = await server(url).start(), await server(url).start()
    try:
        fan = await fanout(a.url, b.url, 1000 if quick else 2000, 5 if quick else 10)
    finally:
        await a.stop()
        await b.stop()
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"cross-server p50 ms": fan["p50_ms"], "cross-server p99 ms": fan["p99_ms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 60 s")
    parser.add_argument("--postgres", default=os.environ.get("RUNTRACK_BENCH_POSTGRES"))
    args = parser.parse_args()
    print(describe_machine())
    results = asyncio.run(measure(args.quick, args.postgres))
    for name, value in results.items():
        print(f"  {name:<26} {value:>12,.1f}")
    worst = max(v for k, v in results.items() if k.startswith("fanout") and k.endswith("p99 ms"))
    print(
        f"sse: replay/ceiling={results['replay ev/s'] / results['ceiling ev/s']:.2f} "
        f"fanout_p99_ms={worst:.0f} streams={results['streams']:.0f} "
        f"rss_mb={results['rss mb']:.0f} "
        f"http_append_ev_s={results['http single ev/s']:.0f}"
    )


if __name__ == "__main__":
    main()
