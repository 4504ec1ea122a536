"""SSE and HTTP costs against real server processes.

    python -m bench.sse [--quick] [--postgres URL]

  replay    one client (httpx) catching up 200,000 events over SSE from ``runtrack serve``,
            against a bare Starlette StreamingResponse sending the same pre-encoded frames
  fan-out   a separate client process (bench/sse_clients.py) holding 1,000 streams (full mode:
            also 5,000 and 10,000) while ~1,000 events/s are appended over HTTP; append→receive
            latency over every reception, server RSS, CPU of each process
  channels  a stream per conversation (2,000; full mode: also 10,000) + 10 firehose streams,
            1,000 single-event appends/s offered to random runs by raw-socket appender processes
            (bench/sse_channels.py), with an API key; latency, completeness, RSS, CPU
  http      HTTP appends: single events (32 connections) against runtrack and against a bare
            Starlette route on the same stack (``http/bare``), by wrk when installed (else by
            bench/http_load.py); batches of 100 (8 connections)
``--only channels,http`` runs some of them; ``--streams 2000,10000`` sets the channels' counts.
For the http scenario, ``--base TREE`` also runs ``runtrack serve`` from another checkout (a
worktree of main) in the same rounds (``http_runtrack/base`` on the last line), ``--profile S``
records runtrack's first round with py-spy for S seconds and prints its top frames, and
``--rounds N`` / ``--seconds S`` set its rounds and their length. ``python -m bench.http_append``
is ``python -m bench.sse --only http``.
With PostgreSQL (--postgres URL, or RUNTRACK_BENCH_POSTGRES): the fan-out again with the streams
on server A and the appends through server B, in a fresh schema dropped afterwards.

The last line's fanout_p99_ms, streams and rss_mb are those of the most streams held within
the target (p99 < 250 ms while ~1,000 events/s are appended, every event delivered), or of the
fewest streams when no count met it; the table shows every count. The CPU columns (100% = one
core) say which process was the limit. Its channels_p99_ms, channels_rate and channels_streams
are those of the most conversation streams run (the target is at 10,000), channels_p99_ms the
worse of the conversation and the firehose streams' p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from bench._servers import (
    FAST_APPENDS,
    MANY_STREAMS,
    ROOT,
    Child,
    CpuMeter,
    free_port,
    peak_rss,
    read_json,
    rss_mb,
    runtrack,
    stop_process,
    tell,
)
from bench.sse_channels import (
    FIREHOSES,
    Ceiling,
    CeilingOptions,
    Channels,
    ceiling,
    ceiling_table,
    channels,
    channels_table,
)
from bench.sse_clients import raise_file_limit, run
from eventstore import NewEvent, SQLiteEventStore, create_scratch_schema, drop_scratch_schema
from projections import RunProjection

T = TypeVar("T")
REPLAY_EVENTS = 200_000
TICK_RATE = 1000
"""Events per second appended during a fan-out."""
TARGET_P99_MS = 250
"""The fan-out's target: append→receive p99 below this, while TICK_RATE events/s are appended."""
TICKERS = 32
"""Connections sharing those appends (one request each at a time)."""
EVENT_LINE = b"\nevent: "
CATCH_UP_LIMIT = 60.0


@dataclass(frozen=True)
class Mode:
    replay_rounds: int
    stream_counts: tuple[int, ...]
    fanout_seconds: float
    drain_seconds: float
    append_seconds: float
    channel_counts: tuple[int, ...]
    channels_seconds: float
    ceiling_rounds: int


QUICK = Mode(2, (1000,), 5.0, 5.0, 3.0, (2000,), 4.0, 1)
FULL = Mode(3, (1000, 5000, 10_000), 10.0, 20.0, 5.0, (2000, 10_000), 20.0, 3)
SCENARIOS = ("replay", "fanout", "channels", "http")


# -- a raw keep-alive HTTP/1.1 connection (httpx would measure itself at these rates) ------------


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status = int((await self._reader.readline()).split()[1])
        length = 0
        for _ in range(100):
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, await self._reader.readexactly(length)

    async def post_json(self, path: str, body: Any, expect: int = 201) -> Any:
        status, reply = await self.post(path, json.dumps(body).encode())
        if status != expect:
            raise RuntimeError(f"POST {path}: {status} {reply[:300]!r}")
        return json.loads(reply)

    def close(self) -> None:
        self._writer.close()


async def create_run(port: int, agent: str) -> tuple[str, int]:
    """A new run: its id and its ``run_created`` event id."""
    async with asyncio.timeout(30):
        connection = await Connection.open(port)
        try:
            run = await connection.post_json("/v1/runs", {"agent_id": agent})
        finally:
            connection.close()
    return str(run["id"]), int(run["last_event_id"])


# -- (a) replay ----------------------------------------------------------------------------------


async def fill(database: Path, events: int) -> int:
    """One run of ``events`` custom ticks, written directly; the last event id."""
    async with SQLiteEventStore(database, projections=[RunProjection()]) as store:
        created = NewEvent("run_created", {"agent_id": "a"})
        await store.append("default", "run-replay", [created], conversation_id="c")
        last = 0
        for start in range(0, events, 1000):
            batch = [NewEvent("custom.tick", {"n": n}) for n in range(start, start + 1000)]
            last = (await store.append("default", "run-replay", batch))[-1].id
    return last


@dataclass(frozen=True)
class CatchUp:
    events: int
    size: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def catch_up(url: str, last_id: int) -> CatchUp:
    """Read the firehose from the start until ``last_id`` arrives: frames, bytes, seconds."""
    marker = f"\nid: {last_id}\n".encode()
    frames = size = 0
    tail = b""
    headers = {"Accept": "text/event-stream"}
    started = time.perf_counter()
    async with (
        asyncio.timeout(CATCH_UP_LIMIT + 30),
        httpx.AsyncClient(timeout=30) as client,
        client.stream("GET", f"{url}/v1/events", headers=headers) as response,
    ):
        if response.status_code != 200:
            raise RuntimeError(f"{url}/v1/events: {response.status_code}")
        async for chunk in response.aiter_bytes():
            frames += (tail[1 - len(EVENT_LINE) :] + chunk).count(EVENT_LINE)
            size += len(chunk)
            if marker in tail + chunk or time.perf_counter() - started > CATCH_UP_LIMIT:
                break
            tail = (tail + chunk)[-len(marker) :]
    return CatchUp(frames, size, time.perf_counter() - started)


async def metered_catch_up(child: Child, last_id: int) -> CatchUp:
    meter = CpuMeter.start({"server": child.pid})
    result = await catch_up(child.url, last_id)
    return replace(result, cpu=meter.percent())


@dataclass(frozen=True)
class Replay:
    runtrack: CatchUp
    ceiling: CatchUp
    expected: int

    @property
    def ratio(self) -> float:
        return self.runtrack.rate / self.ceiling.rate


async def replay(folder: Path, rounds: int) -> Replay:
    database = folder / "replay.db"
    last_id = await fill(database, REPLAY_EVENTS)
    port = free_port()
    bare = Child(["bench.sse_clients", "ceiling", str(database), str(port)], port, folder / "c.log")
    server = runtrack(str(database), folder / "replay.log")
    ours: list[CatchUp] = []
    theirs: list[CatchUp] = []
    try:
        await bare.start()
        await server.start()
        for _ in range(rounds):
            ours.append(await metered_catch_up(server, last_id))
            theirs.append(await metered_catch_up(bare, last_id))
    finally:
        await server.stop()
        await bare.stop()
    best = max(ours, key=lambda c: c.rate), max(theirs, key=lambda c: c.rate)
    return Replay(*best, expected=last_id)


# -- (b) fan-out ---------------------------------------------------------------------------------


@dataclass
class Pacer:
    """Hands out send slots at ``rate`` per second for ``seconds``; counts what was sent."""

    rate: float
    seconds: float
    started: float = field(default_factory=time.perf_counter)
    slots: int = 0
    sent: int = 0
    last_id: int = 0
    ended: float = 0.0

    def next_delay(self) -> float | None:
        """Seconds until the next slot, or None once the window is over."""
        now = time.perf_counter() - self.started
        if now >= self.seconds:
            return None
        due = self.slots / self.rate
        self.slots += 1
        return max(0.0, due - now)

    def done(self, last_id: int) -> None:
        self.sent += 1
        self.last_id = max(self.last_id, last_id)
        self.ended = time.perf_counter() - self.started


async def send_ticks(connection: Connection, path: str, pacer: Pacer) -> None:
    for _ in range(int(pacer.rate * pacer.seconds) + 1):
        delay = pacer.next_delay()
        if delay is None:
            return
        await asyncio.sleep(delay)
        tick = {"event_type": "custom.tick", "payload": {"n": pacer.slots, "t": time.time()}}
        reply = await connection.post_json(path, {"events": [tick]})
        pacer.done(int(reply["events"][-1]["id"]))


async def paced_ticks(port: int, run_id: str, seconds: float) -> Pacer:
    """~TICK_RATE single-event appends per second for ``seconds``, over TICKERS connections."""
    connections = [await Connection.open(port) for _ in range(TICKERS)]
    pacer = Pacer(TICK_RATE, seconds)
    path = f"/v1/runs/{run_id}/events"
    try:
        async with asyncio.timeout(seconds + 60):
            await asyncio.gather(*(send_ticks(c, path, pacer) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return pacer


@dataclass(frozen=True)
class Fanout:
    label: str
    requested: int
    opened: int
    sent: int
    window_s: float
    received: int
    complete: int
    drain_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_idle_mb: float
    rss_peak_mb: float
    cpu: dict[str, float]

    @property
    def delivered(self) -> float:
        expected = self.sent * self.opened
        return self.received / expected if expected else 0.0

    @property
    def append_rate(self) -> float:
        return self.sent / max(self.window_s, 1e-9)

    @property
    def meets_target(self) -> bool:
        """Every event reached every stream, at (nearly) the target rate, within the p99."""
        return (
            self.opened == self.requested
            and self.delivered >= 1.0
            and self.append_rate >= 0.95 * TICK_RATE
            and self.p99_ms < TARGET_P99_MS
        )


async def spawn_clients(
    url: str, streams: int, after: int, open_seconds: float, deadline: float
) -> asyncio.subprocess.Process:
    args = [url, str(streams), str(after), str(open_seconds), str(deadline)]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sse_clients",
        "fanout",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def fanout(label: str, streamer: Child, appender: Child, streams: int, mode: Mode) -> Fanout:
    """Clients on ``streamer``, ticks appended through ``appender`` (the same server or not)."""
    run_id, after = await create_run(appender.port, "fanout")
    open_seconds = 20 + streams / 250
    deadline = open_seconds + mode.fanout_seconds + mode.drain_seconds + 60
    clients = await spawn_clients(streamer.url, streams, after, open_seconds, deadline)
    try:
        opened = int((await read_json(clients, open_seconds + 15))["opened"])
        idle = rss_mb(streamer.pid)
        pids = {"server": streamer.pid, "clients": clients.pid}
        if appender is not streamer:
            pids = {"server A": streamer.pid, "server B": appender.pid, "clients": clients.pid}
        meter = CpuMeter.start(pids)
        window = mode.fanout_seconds
        pacer, peak = await asyncio.gather(
            paced_ticks(appender.port, run_id, window), peak_rss([streamer.pid], window)
        )
        cpu = meter.percent()
        await tell(clients, f"stop {pacer.last_id} {mode.drain_seconds}\n")
        result = await read_json(clients, mode.drain_seconds + 30)
    finally:
        await stop_process(clients)
    rss = (idle, max(peak, idle))
    return Fanout(label, streams, opened, pacer.sent, pacer.ended, *numbers(result), *rss, cpu)


def numbers(result: dict[str, Any]) -> tuple[int, int, float, float, float, float]:
    """The client process's figures, in Fanout's order."""
    return (
        int(result["received"]),
        int(result["complete"]),
        float(result["drain_s"]),
        float(result["p50_ms"]),
        float(result["p99_ms"]),
        float(result["max_ms"]),
    )


async def fanouts(folder: Path, mode: Mode, files: int) -> list[Fanout]:
    """One fresh server per stream count; stops growing once a count cannot be held."""
    results: list[Fanout] = []
    for streams in mode.stream_counts:
        if streams + 1000 > files:
            print(f"  (skipping {streams:,} streams: the open-files limit is {files:,})")
            break
        database, log = folder / f"fanout{streams}.db", folder / f"fanout{streams}.log"
        server = runtrack(str(database), log, *MANY_STREAMS, *FAST_APPENDS)
        try:
            await server.start()
            result = await fanout(f"{streams:,}", server, server, streams, mode)
        finally:
            await server.stop()
        results.append(result)
        if result.opened < streams:
            break
    return results


# -- (b') across two servers on PostgreSQL -------------------------------------------------------


async def cross_server(folder: Path, base: str, mode: Mode) -> Fanout:
    schema = await asyncio.to_thread(create_scratch_schema, base, "bench_sse_")
    url = schema.url
    a = runtrack(url, folder / "pg-a.log", *MANY_STREAMS)
    b = runtrack(url, folder / "pg-b.log", *FAST_APPENDS)
    try:
        await a.start()
        await b.start()
        return await fanout("1,000 (PostgreSQL, A←B)", a, b, 1000, mode)
    finally:
        await a.stop()
        await b.stop()
        await asyncio.to_thread(drop_scratch_schema, schema)


# -- the run and its report ----------------------------------------------------------------------


@dataclass
class Report:
    replay: Replay | None = None
    fanouts: list[Fanout] = field(default_factory=list)
    channels: list[Channels] = field(default_factory=list)
    ceiling: Ceiling | None = None
    cross: Fanout | None = None


async def measure(
    mode: Mode, postgres: str | None, files: int, only: set[str], http: CeilingOptions
) -> Report:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="bench-sse-") as name:
        folder = Path(name)
        if "replay" in only:
            report.replay = await step("replay", replay(folder, mode.replay_rounds))
        if "fanout" in only:
            report.fanouts = await step("fan-out", fanouts(folder, mode, files))
        if "channels" in only:
            report.channels = await step("channels", channel_runs(folder, mode, files))
        if "http" in only:
            ceiling_run = ceiling(folder, mode.append_seconds, mode.ceiling_rounds, http)
            report.ceiling = await step("HTTP appends", ceiling_run)
        if postgres and "fanout" in only:
            report.cross = await step("cross-server", cross_server(folder, postgres, mode))
    return report


async def channel_runs(folder: Path, mode: Mode, files: int) -> list[Channels]:
    results = []
    for streams in mode.channel_counts:
        if streams + FIREHOSES + 1000 > files:
            print(f"  (skipping {streams:,} channels: the open-files limit is {files:,})")
            break
        results.append(await channels(folder, streams, mode.channels_seconds, mode.drain_seconds))
    return results


async def step(name: str, work: Awaitable[T]) -> T:
    started = time.perf_counter()
    result = await work
    print(f"  ({name}: {time.perf_counter() - started:.1f} s)", flush=True)
    return result


def header(files: int) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    ram_gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return (
        f"date {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC | Python {platform.python_version()} | "
        f"nproc {len(os.sched_getaffinity(0))} | CPU {cpu} | RAM {ram_gb:.1f} GB | "
        f"open files {files:,}"
    )


def replay_table(result: Replay) -> list[str]:
    ours, bare = result.runtrack, result.ceiling
    return [
        f"replay: one httpx client catching up {result.expected:,} events (best of rounds)",
        f"  {'source':<40}{'events/s':>11}{'MB/s':>7}{'seconds':>8}{'frames':>9}"
        f"{'CPU % server/client':>21}",
        *(
            f"  {name:<40}{c.rate:>11,.0f}{c.size / c.seconds / 1e6:>7.1f}"
            f"{c.seconds:>8.2f}{c.events:>9,}{c.cpu['server']:>14.0f} / {c.cpu['bench']:<4.0f}"
            for name, c in [
                ("runtrack serve, GET /v1/events (SSE)", ours),
                ("bare StreamingResponse, same frames", bare),
            ]
        ),
        f"  replay/ceiling {result.ratio:.2f} (target >= 0.5)",
        *(
            f"  INCOMPLETE: {name} sent {c.events:,} of {result.expected:,} events"
            for name, c in [("runtrack", ours), ("ceiling", bare)]
            if c.events != result.expected
        ),
    ]


def fanout_table(results: list[Fanout]) -> list[str]:
    lines = [
        f"fan-out: target {TICK_RATE:,} single-event appends/s over HTTP ({TICKERS} connections);",
        "  latency = receive time - send time, over every reception of every stream",
        f"  {'streams':<25}{'opened':>7}{'append/s':>9}{'deliv.':>8}{'drain s':>8}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'max ms':>8}{'RSS MB idle/peak':>18}",
    ]
    for f in results:
        lines.append(
            f"  {f.label:<25}{f.opened:>7,}{f.append_rate:>9,.0f}"
            f"{f.delivered:>8.1%}{f.drain_s:>8.1f}{f.p50_ms:>8.0f}{f.p99_ms:>8.0f}"
            f"{f.max_ms:>8.0f}{f.rss_idle_mb:>10.0f} / {f.rss_peak_mb:<5.0f}"
        )
        cpu = ", ".join(f"{name} {value:.0f}%" for name, value in f.cpu.items())
        lines.append(f"  {'':<25}CPU while appending (100% = one core): {cpu}")
    met = [f"{f.opened:,}" for f in results if f.meets_target]
    lines.append(
        f"  within the target (p99 < {TARGET_P99_MS} ms at >= 95% of {TICK_RATE:,} appends/s, "
        f"every event delivered): {', '.join(met) or 'none'}"
    )
    return lines


def within_target(fanouts: list[Fanout]) -> Fanout:
    """The most streams held within the fan-out target; the fewest if no count met it."""
    met = [f for f in fanouts if f.meets_target]
    return max(met, key=lambda f: f.opened) if met else min(fanouts, key=lambda f: f.requested)


def summary_line(report: Report) -> str:
    fields = []
    if report.replay is not None:
        fields.append(f"replay/ceiling={report.replay.ratio:.2f}")
    if report.fanouts:
        shown = within_target(report.fanouts)
        fields.append(
            f"fanout_p99_ms={shown.p99_ms:.0f} streams={shown.opened} "
            f"rss_mb={shown.rss_peak_mb:.0f}"
        )
    if report.channels:
        most = max(report.channels, key=lambda c: c.streams)
        fields.append(
            f"channels_p99_ms={most.p99_ms:.0f} channels_rate={most.rate:.0f} "
            f"channels_streams={most.streams}"
        )
    if report.ceiling is not None:
        fields.append(
            f"http_append_ev_s={report.ceiling.runtrack:.0f} http/bare={report.ceiling.ratio:.2f}"
        )
        if report.ceiling.base is not None:
            fields.append(f"http_runtrack/base={report.ceiling.runtrack / report.ceiling.base:.2f}")
    return "sse: " + " ".join(fields)


def print_report(report: Report) -> None:
    lines = []
    if report.replay is not None:
        lines += [*replay_table(report.replay), ""]
    if report.fanouts:
        lines += [*fanout_table(report.fanouts), ""]
    if report.channels:
        lines += [*channels_table(report.channels), ""]
    if report.ceiling is not None:
        lines += ceiling_table(report.ceiling)
        lines += report.ceiling.profile or []
    if report.cross is not None:
        cross = report.cross
        lines += ["", "across two servers on PostgreSQL (streams on A, appends through B)"]
        lines += fanout_table([cross])[2:]
        lines.append(f"  cross_server_p99_ms {cross.p99_ms:.0f} (p50 {cross.p50_ms:.0f})")
    print("\n".join(line.rstrip() for line in lines))
    print(summary_line(report), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="SSE replay, fan-out and HTTP append costs")
    parser.add_argument("--quick", action="store_true", help="1,000 streams, short; under 60 s")
    parser.add_argument("--postgres", default=os.environ.get("RUNTRACK_BENCH_POSTGRES"))
    parser.add_argument("--only", default=",".join(SCENARIOS), help="e.g. channels,http")
    parser.add_argument("--streams", help="the channels' stream counts, e.g. 2000,10000")
    parser.add_argument("--base", type=Path, help="http: also runtrack from this checkout")
    parser.add_argument("--profile", type=float, default=0, help="http: py-spy, seconds")
    parser.add_argument("--rounds", type=int, help="http: rounds (best of each side)")
    parser.add_argument("--seconds", type=float, help="http: seconds of each measurement")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(SCENARIOS):
        parser.error(f"--only takes some of {', '.join(SCENARIOS)}")
    mode = QUICK if args.quick else FULL
    if args.streams:
        mode = replace(mode, channel_counts=tuple(int(n) for n in args.streams.split(",")))
    mode = replace(
        mode,
        ceiling_rounds=args.rounds or mode.ceiling_rounds,
        append_seconds=args.seconds or mode.append_seconds,
    )
    http = CeilingOptions(args.base, args.profile)
    files = raise_file_limit()
    print(header(files), flush=True)
    print_report(run(measure(mode, args.postgres, files, only, http)))


if __name__ == "__main__":
    main()
