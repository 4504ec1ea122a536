"""HTTP load for ``bench/sse.py``, in processes of its own: appenders and the bare append route.

    python -m bench.http_load paced PORT TOKEN RUNS RATE SECONDS CONNECTIONS SEED
        single-event appends to runs ch-0 … ch-(RUNS-1), chosen at random, paced at RATE per
        second for SECONDS over CONNECTIONS keep-alive connections; prints one JSON line:
        ``{"sent", "errors", "window_s", "cpu_s", "counts", "last"}`` (per run: ticks appended,
        last id; cpu_s: this process's CPU seconds)
    python -m bench.http_load flat PORT TOKEN SECONDS CONNECTIONS BATCH RUN...
        appends of BATCH events back to back on each connection (a run per connection, round
        robin) for SECONDS; prints ``{"requests", "errors", "seconds"}``
    python -m bench.http_load bare PORT
        a bare Starlette route, ``POST /v1/runs/{run_id}/events``, on runtrack's server stack
        (uvicorn with its connection limits, ``api/server/runner.py``): parses the body and
        answers 201 with JSON shaped like runtrack's answer; ``GET /readyz`` too

The client is a raw socket per connection (an asyncio protocol on uvloop, no HTTP library):
one shared httpx client measured itself (179 appends/s where wrk reached 2,920/s against the
same server). Each tick carries ``t``, the appender's ``time.time()`` as its request is written:
the stream clients (bench/sse_clients.py) subtract it from their receive time, so the latency
needs no table of send times by event id.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bench.sse_clients import run, run_id


def tick_body(n: int, run_index: int, batch: int = 1) -> bytes:
    tick = {"event_type": "custom.tick", "payload": {"n": n, "r": run_index, "t": time.time()}}
    return json.dumps({"events": [tick] * batch}, separators=(",", ":")).encode()


def request_head(path: str, token: str, length: int) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {length}\r\n\r\n"
    ).encode()


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection, one request at a time: the reply's status and body."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        length = content_length(self.buffer[:end])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(self.buffer[9:12])
        body, self.buffer = self.buffer[end + 4 : end + 4 + length], self.buffer[end + 4 + length :]
        if not self.waiter.done():
            self.waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            return int(line[15:])
    return 0


async def connect(port: int) -> HttpConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(HttpConnection, "127.0.0.1", port)
    return protocol


# -- paced appends to random runs ----------------------------------------------------------------


@dataclass
class Paced:
    """Send slots at ``rate`` per second for ``seconds``, and what each run was sent."""

    rate: float
    seconds: float
    runs: int
    started: float = field(default_factory=time.perf_counter)
    slots: int = 0
    sent: int = 0
    errors: int = 0
    ended: float = 0.0
    counts: list[int] = field(default_factory=list)
    last: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = [0] * self.runs
        self.last = [0] * self.runs

    def next_delay(self) -> float | None:
        now = time.perf_counter() - self.started
        if now >= self.seconds:
            return None
        due = self.slots / self.rate
        self.slots += 1
        return max(0.0, due - now)

    def done(self, run_index: int, event_id: int) -> None:
        self.sent += 1
        self.counts[run_index] += 1
        self.last[run_index] = max(self.last[run_index], event_id)
        self.ended = time.perf_counter() - self.started


async def paced_sender(connection: HttpConnection, token: str, pacer: Paced, seed: int) -> None:
    pick = random.Random(seed)
    for _ in range(int(pacer.rate * pacer.seconds) + 1):
        delay = pacer.next_delay()
        if delay is None:
            return
        if delay:
            await asyncio.sleep(delay)
        index = pick.randrange(pacer.runs)
        body = tick_body(pacer.slots, index)
        head = request_head(f"/v1/runs/{run_id(index)}/events", token, len(body))
        status, reply = await connection.request(head + body)
        if status != 201:
            pacer.errors += 1
            print(f"append {status}: {reply[:300]!r}", file=sys.stderr)
            continue
        pacer.done(index, int(json.loads(reply)["events"][-1]["id"]))


async def paced(port: int, token: str, runs: int, rate: float, seconds: float, conns: int) -> Paced:
    connections = [await connect(port) for _ in range(conns)]
    pacer = Paced(rate, seconds, runs)
    seed = random.randrange(1 << 30)
    try:
        async with asyncio.timeout(seconds + 60):
            await asyncio.gather(
                *(paced_sender(c, token, pacer, seed + n) for n, c in enumerate(connections))
            )
    finally:
        for connection in connections:
            connection.close()
    return pacer


def paced_main(args: list[str]) -> None:
    port, token, runs, rate, seconds, conns = args[:6]
    random.seed(int(args[6]))
    before = time.process_time()
    pacer = run(paced(int(port), token, int(runs), float(rate), float(seconds), int(conns)))
    report = {"sent": pacer.sent, "errors": pacer.errors, "window_s": pacer.ended}
    report["cpu_s"] = time.process_time() - before  # what the appending cost this client
    print(json.dumps({**report, "counts": pacer.counts, "last": pacer.last}), flush=True)


# -- back-to-back appends (the ceiling comparison) ------------------------------------------------


async def flat_sender(port: int, request: bytes, until: float) -> tuple[int, int]:
    connection = await connect(port)
    done = errors = 0
    try:
        while time.perf_counter() < until:
            status, _ = await connection.request(request)
            done += 1
            errors += status != 201
    finally:
        connection.close()
    return done, errors


async def flat(
    port: int, token: str, seconds: float, conns: int, batch: int, runs: list[str]
) -> dict[str, Any]:
    body = tick_body(0, 0, batch)
    requests = [request_head(f"/v1/runs/{r}/events", token, len(body)) + body for r in runs]
    started = time.perf_counter()
    until = started + seconds
    async with asyncio.timeout(seconds + 60):
        counts = await asyncio.gather(
            *(flat_sender(port, requests[n % len(requests)], until) for n in range(conns))
        )
    elapsed = time.perf_counter() - started
    done = sum(c[0] for c in counts)
    return {"requests": done, "errors": sum(c[1] for c in counts), "seconds": elapsed}


def flat_main(args: list[str]) -> None:
    port, token, seconds, conns, batch, *runs = args
    done = run(flat(int(port), token, float(seconds), int(conns), int(batch), runs))
    print(json.dumps(done), flush=True)


# -- the bare route ------------------------------------------------------------------------------


def bare_app() -> Starlette:
    """Parses the body as runtrack does (one ``json.loads``) and answers the same shape."""
    counter = iter(range(1, 1 << 62))

    async def append(request: Request) -> Response:
        body = json.loads(await request.body())
        events = [
            {"id": next(counter), "run_id": request.path_params["run_id"], **event}
            for event in body["events"]
        ]
        return JSONResponse({"events": events}, status_code=201)

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/v1/runs/{run_id}/events", append, methods=["POST"]),
        Route("/readyz", ready),
    ]
    return Starlette(routes=routes)


def bare_main(args: list[str]) -> None:
    from api.server.runner import server_config
    from api.server.settings import Settings

    config = server_config(bare_app(), Settings(port=int(args[0])), log_level="warning")
    uvicorn.Server(config).run()


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "paced": paced_main,
    "flat": flat_main,
    "bare": bare_main,
}


if __name__ == "__main__":
    COMMANDS[sys.argv[1]](sys.argv[2:])
