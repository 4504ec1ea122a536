"""Helper processes for ``bench/sse.py``: the bare-stream ceiling, and the fan-out clients.

    python -m bench.sse_clients ceiling DATABASE PORT
        serve DATABASE's log as the frames runtrack would send, encoded in advance, from a bare
        Starlette StreamingResponse on 127.0.0.1:PORT (``GET /v1/events``, ``GET /readyz``)
    python -m bench.sse_clients fanout URL STREAMS AFTER_ID OPEN_SECONDS DEADLINE_SECONDS
        open STREAMS firehose streams on URL after AFTER_ID (within OPEN_SECONDS), print one JSON
        line ``{"opened", "refused"}``, then read ``stop LAST_ID DRAIN_SECONDS`` on stdin, wait
        (at most DRAIN_SECONDS) until every stream has received LAST_ID, and print one JSON line
        of results; the process gives up after DEADLINE_SECONDS whatever happens

Frames are read without a JSON parse (one client process cannot parse a million events a
second): every stream counts its ticks and keeps its last id; on 100 streams spread
evenly over the opening order, each tick (an event whose payload carries ``t``, the appender's
``time.time()`` just before its POST) adds ``now - t`` to a latency histogram (0.1 ms buckets).
All streams follow the same firehose, so the sample sees what every stream sees.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from api.server.sse import encode_page
from eventstore import EventFilter, SQLiteEventStore

T = TypeVar("T")
SENT_AT_KEY = b'"t":'
WHOLE = b"\n\n\r\n"
"""How a read ends when it ends with a whole HTTP chunk of whole frames."""
SAMPLED_STREAMS = 100
"""Streams whose every tick's latency is recorded (evenly spread); the others only count."""
NUMBER = re.compile(rb" ?[0-9.e+-]+")
PAGE_SIZE = 1000
"""Events per write, as the server's replay pages."""
MAX_PAGES = 10_000
BUCKET_MS = 0.1
BUCKETS = 600_000
"""0.1 ms buckets up to 60 s; anything later lands in the last one."""
OPENING = 200
"""Streams being opened at once (the server's listen backlog is 2048)."""
OPEN_TIMEOUT = 10.0


def raise_file_limit() -> int:
    """Raise this process's open-files limit as far as allowed; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(hard, 65_536), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):
            continue
    return soft


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop (as uvicorn does), which keeps the clients' own cost low."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


# -- the ceiling ---------------------------------------------------------------------------------


async def encoded_log(database: str) -> list[bytes]:
    """The log as runtrack's replay sends it: a prelude, then one chunk per page of 1000."""
    chunks = [b"retry: 3000\n: stream open at 0\n\n"]
    async with SQLiteEventStore(database) as store:
        cursor = 0
        for _ in range(MAX_PAGES):
            page = await store.read(EventFilter(), after=cursor, limit=PAGE_SIZE)
            if not page.events:
                break
            chunks.append(encode_page(page))
            cursor = page.position
    return chunks


def ceiling(database: str, port: int) -> None:
    chunks = asyncio.run(encoded_log(database))

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def stream(request: Request) -> Response:
        return StreamingResponse(body(), media_type="text/event-stream")

    async def ready(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/v1/events", stream), Route("/readyz", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- the fan-out clients -------------------------------------------------------------------------


@dataclass
class Tally:
    """What every stream of this process received."""

    histogram: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    received: int = 0
    """Ticks received by every stream."""
    samples: int = 0
    """Latencies recorded: every tick, on the sampled streams only."""
    worst_ms: float = 0.0

    def record(self, now: float, sent_at: float) -> None:
        latency_ms = (now - sent_at) * 1000
        self.histogram[min(BUCKETS - 1, max(0, int(latency_ms / BUCKET_MS)))] += 1
        self.samples += 1
        self.worst_ms = max(self.worst_ms, latency_ms)

    def quantile_ms(self, q: float) -> float:
        wanted, seen = q * self.samples, 0
        for index, count in enumerate(self.histogram):
            seen += count
            if count and seen >= wanted:
                return (index + 1) * BUCKET_MS
        return 0.0


class SseStream(asyncio.Protocol):
    """One firehose stream over a raw socket: headers, then whole frames (see ``_frames``)."""

    def __init__(
        self, request: bytes, tally: Tally, opened: asyncio.Future[bool], *, sampled: bool
    ) -> None:
        self.request = request
        self.tally = tally
        self.sampled = sampled
        self.opened = opened
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.body = b""
        self.in_body = False
        self.last_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle(False)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.in_body:
            data = self._headers(data)
        if not self.in_body:
            return
        if not self.body and data.endswith(WHOLE):  # the usual case: whole chunks, no copying
            self._frames(now, data)
        else:
            self.body += data
            cut = self.body.rfind(b"\n\n")
            if cut < 0:
                return
            frames, self.body = self.body[: cut + 2], self.body[cut + 2 :]
            self._frames(now, frames)
        if not self.opened.done():
            self._settle(True)  # the body starts with the retry prelude: the stream is open

    def _headers(self, data: bytes) -> bytes:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return b""
        if self.head.split(b" ", 2)[1] != b"200":
            self._settle(False)
            self.close()
            return b""
        self.in_body = True
        return self.head[end + 4 :]

    def _frames(self, now: float, frames: bytes) -> None:
        """Whole frames, read without a JSON parse per event: at a million receptions a second
        the clients would otherwise measure their own parsing."""
        last = frames.rfind(b"\nid: ") + 1  # 0 when the only id line starts the chunk
        if last or frames.startswith(b"id: "):
            self.last_id = int(frames[last + 4 : frames.index(b"\n", last)])
        self.tally.received += frames.count(SENT_AT_KEY)
        if not self.sampled:
            return
        for part in frames.split(SENT_AT_KEY)[1:]:
            number = NUMBER.match(part)
            if number is not None:
                self.tally.record(now, float(number.group()))

    def _settle(self, opened: bool) -> None:
        if not self.opened.done():
            self.opened.set_result(opened)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_stream(
    host: str, port: int, request: bytes, tally: Tally, until: float, *, sampled: bool
) -> SseStream | None:
    loop = asyncio.get_running_loop()
    stream = SseStream(request, tally, loop.create_future(), sampled=sampled)
    remaining = until - loop.time()
    if remaining <= 0:
        return None
    try:
        async with asyncio.timeout(min(OPEN_TIMEOUT, remaining)):
            await loop.create_connection(lambda: stream, host, port)
            if await stream.opened:
                return stream
    except (OSError, TimeoutError):
        pass
    stream.close()
    return None


async def open_streams(
    url: str, count: int, after: int, tally: Tally, until: float
) -> list[SseStream]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET /v1/events?after_event_id={after} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    gate = asyncio.Semaphore(OPENING)
    every = max(1, count // SAMPLED_STREAMS)

    async def one(index: int) -> SseStream | None:
        async with gate:
            sampled = index % every == 0
            return await open_stream(host, port, request, tally, until, sampled=sampled)

    streams = await asyncio.gather(*(one(index) for index in range(count)))
    return [stream for stream in streams if stream is not None]


async def stdin_line() -> str:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return (await reader.readline()).decode()


async def drain(streams: list[SseStream], last_id: int, seconds: float) -> tuple[int, float]:
    """Wait until every stream has seen ``last_id`` (at most ``seconds``): (complete, waited)."""
    started = time.perf_counter()
    complete = 0
    for _ in range(int(seconds / 0.05) + 1):
        complete = sum(stream.last_id >= last_id for stream in streams)
        if complete == len(streams) or time.perf_counter() - started > seconds:
            break
        await asyncio.sleep(0.05)
    return complete, time.perf_counter() - started


async def fanout(url: str, count: int, after: int, opening: float, deadline: float) -> None:
    tally = Tally()
    loop = asyncio.get_running_loop()
    streams: list[SseStream] = []
    try:
        async with asyncio.timeout(deadline):
            streams = await open_streams(url, count, after, tally, loop.time() + opening)
            say({"opened": len(streams), "refused": count - len(streams)})
            words = (await stdin_line()).split()
            last_id, seconds = int(words[1]), float(words[2])
            complete, waited = await drain(streams, last_id, seconds)
            say(summary(tally, len(streams), complete, waited))
    finally:
        for stream in streams:
            stream.close()


def summary(tally: Tally, opened: int, complete: int, waited: float) -> dict[str, float]:
    return {
        "opened": opened,
        "complete": complete,
        "drain_s": waited,
        "received": tally.received,
        "p50_ms": tally.quantile_ms(0.5),
        "p99_ms": tally.quantile_ms(0.99),
        "max_ms": tally.worst_ms,
    }


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "ceiling": lambda args: ceiling(args[0], int(args[1])),
    "fanout": lambda args: run(
        fanout(args[0], int(args[1]), int(args[2]), float(args[3]), float(args[4]))
    ),
}


if __name__ == "__main__":
    raise_file_limit()
    COMMANDS[sys.argv[1]](sys.argv[2:])
