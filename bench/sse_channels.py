"""The channels scenario and the HTTP append ceiling of ``bench/sse.py`` (issue 16).

channels   N runs, each in a conversation of its own, and a stream on each conversation plus
           FIREHOSES firehose streams (clients: bench/sse_clients.py, two processes), while
           appender processes (bench/http_load.py, raw sockets) offer RATE single-event appends
           a second to runs picked at random; append→receive latency of every reception,
           whether every stream received exactly its events, server RSS, CPU of each process
http/bare  single-event appends back to back over 32 keep-alive connections, by wrk when it is
           installed (else by two processes of bench/http_load.py), against runtrack and
           against a bare Starlette route on the same server stack that parses the same body

runtrack runs as deployed: with an operator API key (every request carries it), the default
heartbeat and limits, raised only where the scenario needs it (its streams; one key's append
rate). The runs and the key are written to the database before the server starts.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.server.auth import KeyRing, Role
from bench._servers import (
    FAST_APPENDS,
    ROOT,
    Child,
    CpuMeter,
    free_port,
    peak_rss,
    profile_table,
    read_json,
    rss_mb,
    runtrack,
    start_profile,
    stop_process,
    stream_limits,
    tell,
)
from bench.sse_clients import LINE_LIMIT, Tally, conversation_id, run_id
from eventstore import NewEvent, SQLiteEventStore
from projections import RunProjection

RATE = 1000
"""Appends offered a second, in all."""
FIREHOSES = 10
TARGET_P99_MS = 250
TARGET_RSS_MB = 1024
APPENDERS = 2
"""Appender processes, each offering RATE / APPENDERS over CONNECTIONS // APPENDERS."""
CONNECTIONS = 32
CLIENTS = 2
"""Stream client processes, each holding half the conversations and half the firehoses."""


async def prepare(database: Path, runs: int) -> tuple[str, int]:
    """An operator key and ``runs`` runs (run ch-n in conversation ch-conv-n): (token, head)."""
    async with SQLiteEventStore(database, projections=[RunProjection()]) as store:
        ring = KeyRing(store)
        await ring.setup()
        token = await ring.create("default", Role.OPERATOR, "bench")
        created = [NewEvent("run_created", {"agent_id": "bench"})]
        for start in range(0, runs, 500):
            await asyncio.gather(
                *(
                    store.append("default", run_id(n), created, conversation_id=conversation_id(n))
                    for n in range(start, min(runs, start + 500))
                )
            )
        head = await store.head()
    return token, head


def module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *module(*args),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
    )


# -- channels ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Channels:
    requested: int
    opened: int
    sent: int
    errors: int
    window_s: float
    complete: int
    drain_s: float
    conversation_p50_ms: float
    conversation_p99_ms: float
    firehose_p99_ms: float
    max_ms: float
    rss_idle_mb: float
    rss_peak_mb: float
    cpu: dict[str, float]

    @property
    def streams(self) -> int:
        """Conversation streams (the firehoses come on top)."""
        return self.requested - FIREHOSES

    @property
    def rate(self) -> float:
        return self.sent / max(self.window_s, 1e-9)

    @property
    def p99_ms(self) -> float:
        """The worse of the two kinds of stream: both must meet the target."""
        return max(self.conversation_p99_ms, self.firehose_p99_ms)

    @property
    def meets_target(self) -> bool:
        return (
            self.opened == self.requested
            and self.complete == self.opened
            and self.errors == 0
            and self.rate >= 0.95 * RATE
            and self.p99_ms < TARGET_P99_MS
            and self.rss_peak_mb < TARGET_RSS_MB
        )


def spans(runs: int) -> list[tuple[int, int, int]]:
    """(first conversation, conversations, firehoses) of each client process."""
    share, hoses = -(-runs // CLIENTS), FIREHOSES // CLIENTS
    firsts = [min(runs, n * share) for n in range(CLIENTS)]
    return [
        (first, min(share, runs - first), hoses + (FIREHOSES % CLIENTS if n == 0 else 0))
        for n, first in enumerate(firsts)
    ]


async def open_clients(
    server: Child, token: str, head: int, runs: int, deadline: float
) -> tuple[list[asyncio.subprocess.Process], int]:
    opening = 20 + runs / 250
    clients = []
    for first, count, hoses in spans(runs):
        args = [server.url, token, str(head), str(first), str(count), str(hoses)]
        clients.append(
            await spawn("bench.sse_clients", "channels", *args, str(opening), str(deadline))
        )
    said = await asyncio.gather(*(read_json(c, opening + 15) for c in clients))
    return clients, sum(int(s["opened"]) for s in said)


async def append_load(port: int, token: str, runs: int, seconds: float) -> list[dict[str, Any]]:
    share, conns = RATE / APPENDERS, CONNECTIONS // APPENDERS
    load = [str(port), token, str(runs), str(share), str(seconds), str(conns)]
    appenders = [await spawn("bench.http_load", "paced", *load, str(n)) for n in range(APPENDERS)]
    try:
        return list(await asyncio.gather(*(read_json(a, seconds + 90) for a in appenders)))
    finally:
        for appender in appenders:
            await stop_process(appender)


def merged_load(loads: list[dict[str, Any]], runs: int) -> dict[str, Any]:
    counts = [sum(load["counts"][n] for load in loads) for n in range(runs)]
    last = [max(load["last"][n] for load in loads) for n in range(runs)]
    return {
        "counts": counts,
        "last": last,
        "sent": sum(counts),
        "head": max(last, default=0),
        "errors": sum(int(load["errors"]) for load in loads),
        "window_s": max(float(load["window_s"]) for load in loads),
        "cpu_s": [float(load["cpu_s"]) for load in loads],
    }


async def load_while_metering(
    server: Child, clients: list[asyncio.subprocess.Process], token: str, runs: int, seconds: float
) -> tuple[dict[str, Any], float, dict[str, float]]:
    pids = {"server": server.pid} | {f"clients {n}": c.pid for n, c in enumerate(clients)}
    meter = CpuMeter.start(pids)
    loads, peak = await asyncio.gather(
        append_load(server.port, token, runs, seconds), peak_rss([server.pid], seconds)
    )
    load = merged_load(loads, runs)
    cpu = meter.percent()
    for n, used in enumerate(load["cpu_s"]):
        cpu[f"appenders {n}"] = 100 * used / max(load["window_s"], 1e-9)
    return load, peak, cpu


async def channels(folder: Path, runs: int, seconds: float, drain: float) -> Channels:
    """One count on a fresh database and server, so that no count inherits another's log."""
    database = folder / f"channels{runs}.db"
    token, head = await prepare(database, runs)
    requested = runs + FIREHOSES
    raised = [*stream_limits(requested), *FAST_APPENDS]
    server = runtrack(str(database), folder / f"channels{runs}.log", *raised, deployed=True)
    clients: list[asyncio.subprocess.Process] = []
    try:
        await server.start()
        deadline = 20 + runs / 250 + seconds + drain + 120
        clients, opened = await open_clients(server, token, head, runs, deadline)
        idle = rss_mb(server.pid)
        load, peak, cpu = await load_while_metering(server, clients, token, runs, seconds)
        wanted = {k: load[k] for k in ("counts", "last", "sent", "head")}
        for client in clients:
            await tell(client, json.dumps({**wanted, "drain": drain}) + "\n")
        results = await asyncio.gather(*(read_json(c, drain + 30) for c in clients))
    finally:
        for client in clients:
            await stop_process(client)
        await server.stop()
    return channel_figures(requested, opened, load, results, (idle, max(idle, peak)), cpu)


def channel_figures(
    requested: int,
    opened: int,
    load: dict[str, Any],
    results: list[dict[str, Any]],
    rss: tuple[float, float],
    cpu: dict[str, float],
) -> Channels:
    conversation = Tally.merged([r["histograms"]["conversation"] for r in results])
    firehose = Tally.merged([r["histograms"]["firehose"] for r in results])
    return Channels(
        requested,
        opened,
        int(load["sent"]),
        int(load["errors"]),
        float(load["window_s"]),
        sum(int(r["complete"]) for r in results),
        max(float(r["drain_s"]) for r in results),
        conversation.quantile_ms(0.5),
        conversation.quantile_ms(0.99),
        firehose.quantile_ms(0.99),
        max(float(r["max_ms"]) for r in results),
        *rss,
        cpu,
    )


def channels_table(results: list[Channels]) -> list[str]:
    lines = [
        f"channels: a stream per conversation + {FIREHOSES} firehose streams, {RATE:,} "
        f"single-event appends/s offered over HTTP ({APPENDERS} processes, {CONNECTIONS} "
        "connections, raw sockets) to random runs, with an API key",
        f"  {'streams':<16}{'opened':>8}{'append/s':>9}{'complete':>9}{'drain s':>8}"
        f"{'conv p50':>9}{'conv p99':>9}{'fire p99':>9}{'max ms':>8}{'RSS MB idle/peak':>18}",
    ]
    for c in results:
        label = f"{c.streams:,} + {FIREHOSES}"
        lines.append(
            f"  {label:<16}{c.opened:>8,}{c.rate:>9,.0f}{c.complete:>9,}{c.drain_s:>8.1f}"
            f"{c.conversation_p50_ms:>9.0f}{c.conversation_p99_ms:>9.0f}"
            f"{c.firehose_p99_ms:>9.0f}{c.max_ms:>8.0f}"
            f"{c.rss_idle_mb:>10.0f} / {c.rss_peak_mb:<5.0f}"
        )
        cpu = ", ".join(f"{name} {value:.0f}%" for name, value in c.cpu.items())
        lines.append(f"  {'':<16}CPU while appending (100% = one core): {cpu}")
        if c.errors:
            lines.append(f"  {'':<16}{c.errors:,} appends refused (see the appenders' stderr)")
    met = [f"{c.streams:,}" for c in results if c.meets_target]
    lines.append(
        f"  within the target (p99 < {TARGET_P99_MS} ms on both kinds, >= 95% of {RATE:,}/s, "
        f"every stream exactly its events, RSS < {TARGET_RSS_MB} MB): {', '.join(met) or 'none'}"
    )
    return lines


# -- the HTTP append ceiling ---------------------------------------------------------------------

WRK_SCRIPT = """
local token, body, runs = "{token}", '{body}', {runs}
local requests = {{}}
function init(args)
  for n = 0, runs - 1 do
    requests[n + 1] = wrk.format("POST", "/v1/runs/ch-" .. n .. "/events",
      {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}}, body)
  end
end
local next = 0
function request()
  next = next % runs + 1
  return requests[next]
end
"""


@dataclass(frozen=True)
class Ceiling:
    client: str
    runtrack: float
    bare: float
    batch_ev_s: float
    """Events/s appended in batches of 100 over 8 connections (runtrack only)."""
    base: float | None = None
    """runtrack from another checkout (``--base``), in the same rounds."""
    profile: list[str] | None = None

    @property
    def ratio(self) -> float:
        return self.runtrack / self.bare


async def wrk_rate(port: int, script: Path, seconds: float) -> float:
    wrk = shutil.which("wrk") or "wrk"
    args = ["-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "-s", str(script)]
    process = await asyncio.create_subprocess_exec(
        wrk, *args, f"http://127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE
    )
    out = (await process.communicate())[0].decode()
    if "Non-2xx" in out or process.returncode:
        raise RuntimeError(f"wrk against port {port}:\n{out}")
    found = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    if found is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(found.group(1))


async def python_rate(
    port: int, token: str, seconds: float, *, batch: int = 1, connections: int = CONNECTIONS
) -> float:
    """Requests/s of bench/http_load.py's back-to-back appends, in APPENDERS processes."""
    loaders = []
    for n in range(APPENDERS):
        share = connections // APPENDERS
        runs = [run_id(n * share + k) for k in range(share)]
        args = [str(port), token, str(seconds), str(share), str(batch), *runs]
        loaders.append(await spawn("bench.http_load", "flat", *args))
    said = await asyncio.gather(*(read_json(p, seconds + 90) for p in loaders))
    for loader in loaders:
        await stop_process(loader)
    if any(s["errors"] for s in said):
        raise RuntimeError(f"appends refused: {said}")
    return sum(float(s["requests"]) / float(s["seconds"]) for s in said)


def wrk_script(folder: Path, token: str) -> Path:
    tick = {"event_type": "custom.tick", "payload": {"n": 0, "r": 0, "t": 0.0}}
    body = json.dumps({"events": [tick]}, separators=(",", ":"))
    script = folder / "append.lua"
    script.write_text(WRK_SCRIPT.format(token=token, body=body, runs=CONNECTIONS))
    return script


@dataclass(frozen=True)
class CeilingOptions:
    """What ``bench/sse.py --only http`` may add: another checkout to compare (``--base``) and
    a py-spy profile of runtrack's first round (``--profile SECONDS``)."""

    base: Path | None = None
    profile: float = 0.0


async def ceiling(
    folder: Path, seconds: float, rounds: int, options: CeilingOptions | None = None
) -> Ceiling:
    """Alternating rounds, the best of each side (the machine is shared)."""
    options = options or CeilingOptions()
    trees = {"runtrack": ROOT, **({"base": options.base} if options.base else {})}
    servers = {name: await _ceiling_server(folder, name, tree) for name, tree in trees.items()}
    port = free_port()
    bare = Child(["bench.http_load", "bare", str(port)], port, folder / "bare.log")
    servers["bare"] = (bare, servers["runtrack"][1])
    rates: dict[str, list[float]] = {name: [] for name in servers}
    profile = None
    try:
        for child, _ in servers.values():
            await child.start()
        for round_ in range(rounds):
            for name, (child, token) in servers.items():
                spy = None
                if name == "runtrack" and round_ == 0 and options.profile:
                    spy = start_profile(child.pid, options.profile, folder / "profile.txt")
                rates[name].append(await _rate(folder, child.port, token, seconds))
                if spy is not None:
                    await asyncio.to_thread(spy.wait)
                    profile = profile_table(folder / "profile.txt")
        server, token = servers["runtrack"]
        batches = 100 * await python_rate(server.port, token, seconds, batch=100, connections=8)
    finally:
        for child, _ in servers.values():
            await child.stop()
    client = "wrk" if shutil.which("wrk") else "bench/http_load.py"
    base = max(rates["base"]) if "base" in rates else None
    return Ceiling(client, max(rates["runtrack"]), max(rates["bare"]), batches, base, profile)


async def _ceiling_server(folder: Path, name: str, tree: Path) -> tuple[Child, str]:
    """runtrack from ``tree`` as deployed (a key, every check on) but for one key's append
    rate, on a database of its own with CONNECTIONS runs; and its token."""
    database = folder / f"{name}.db"
    token, _ = await prepare(database, CONNECTIONS)
    log = folder / f"{name}.log"
    return runtrack(str(database), log, *FAST_APPENDS, deployed=True, tree=tree), token


async def _rate(folder: Path, port: int, token: str, seconds: float) -> float:
    if shutil.which("wrk"):
        return await wrk_rate(port, wrk_script(folder, token), seconds)
    return await python_rate(port, token, seconds)


def ceiling_table(result: Ceiling) -> list[str]:
    return [
        f"HTTP appends: POST /v1/runs/{{id}}/events, keep-alive connections, a run per "
        f"connection; single events by {result.client}, batches by bench/http_load.py",
        f"  {'single events, 32 connections, runtrack':<48}{result.runtrack:>12,.0f} events/s",
        f"  {'single events, 32 connections, bare route':<48}{result.bare:>12,.0f} events/s",
        f"  {'batches of 100, 8 connections, runtrack':<48}{result.batch_ev_s:>12,.0f} events/s",
        *_base_lines(result),
        f"  http/bare {result.ratio:.2f} (target >= 0.5; the bare route: a Starlette route on "
        "the same uvicorn stack that parses the same body and answers 201 with JSON)",
    ]


def _base_lines(result: Ceiling) -> list[str]:
    if result.base is None:
        return []
    return [
        f"  {'single events, 32 connections, --base':<48}{result.base:>12,.0f} events/s",
        f"  runtrack/base {result.runtrack / result.base:.2f} (the same rounds)",
    ]


async def demo() -> None:
    """Both scenarios once, small: ``python -m bench.sse_channels``."""
    with tempfile.TemporaryDirectory(prefix="bench-channels-") as name:
        print("\n".join(channels_table([await channels(Path(name), 200, 3.0, 5.0)])))
        print("\n".join(ceiling_table(await ceiling(Path(name), 2.0, 1))))


if __name__ == "__main__":
    from bench.sse_clients import raise_file_limit, run

    raise_file_limit()
    run(demo())
