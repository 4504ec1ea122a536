"""Helper processes for ``bench/sse.py``: the bare-stream ceiling, and the fan-out clients.

    python -m bench.sse_clients ceiling DATABASE PORT
        serve DATABASE's log as the frames runtrack would send, encoded in advance, from a bare
        Starlette StreamingResponse on 127.0.0.1:PORT (``GET /v1/events``, ``GET /readyz``)
    python -m bench.sse_clients fanout URL STREAMS AFTER_ID OPEN_SECONDS DEADLINE_SECONDS
        open STREAMS firehose streams on URL after AFTER_ID (within OPEN_SECONDS), print one JSON
        line ``{"opened", "refused"}``, then read ``stop LAST_ID DRAIN_SECONDS`` on stdin, wait
        (at most DRAIN_SECONDS) until every stream has received LAST_ID, and print one JSON line
        of results; the process gives up after DEADLINE_SECONDS whatever happens
    python -m bench.sse_clients channels URL TOKEN AFTER_ID FIRST COUNT FIREHOSES OPEN DEADLINE
        open a stream on each conversation ch-conv-FIRST … ch-conv-(FIRST+COUNT-1) and FIREHOSES
        firehose streams, with the key TOKEN; print ``{"opened", "refused"}``, read one JSON line
        of what was appended (ticks and last id per run, and in all), wait until every stream
        has exactly its ticks, and print the counts and both latency histograms (sparse, so
        that several processes' can be merged)

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
LINE_LIMIT = 1 << 24
"""The longest JSON line between the processes (what each of 10,000 runs was sent, twice)."""


RUN_PREFIX = "ch-"
"""The channels scenario's run ``ch-<n>`` lives in conversation ``ch-conv-<n>``."""


def run_id(index: int) -> str:
    return f"{RUN_PREFIX}{index}"


def conversation_id(index: int) -> str:
    return f"{RUN_PREFIX}conv-{index}"


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

    def sparse(self) -> dict[int, int]:
        """The histogram's non-empty buckets, to be merged across processes (``merged``)."""
        return {index: count for index, count in enumerate(self.histogram) if count}

    @classmethod
    def merged(cls, sparse: list[dict[str, int]]) -> Tally:
        tally = cls()
        for buckets in sparse:
            for index, count in buckets.items():
                tally.histogram[int(index)] += count
                tally.samples += count
        return tally

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
        self.ticks = 0

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
        ticks = frames.count(SENT_AT_KEY)
        self.ticks += ticks
        self.tally.received += ticks
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


def stream_request(host: str, port: int, path: str, token: str = "") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Accept: text/event-stream\r\n\r\n"
    ).encode()


async def open_streams(
    url: str, count: int, after: int, tally: Tally, until: float
) -> list[SseStream]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = stream_request(host, port, f"/v1/events?after_event_id={after}")
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
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
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


# -- the channels clients: a stream per conversation, and a few firehose streams ------------------


@dataclass
class Channels:
    """This process's streams: conversation ``first + i`` is ``conversations[i]``."""

    first: int
    conversations: list[SseStream | None]
    firehoses: list[SseStream | None]
    conversation_tally: Tally
    firehose_tally: Tally

    def opened(self) -> list[SseStream]:
        return [s for s in (*self.conversations, *self.firehoses) if s is not None]


async def open_channels(
    url: str, token: str, after: int, span: tuple[int, int], firehoses: int, until: float
) -> Channels:
    """Every stream of this process is sampled: conversation streams receive a few events each."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    gate = asyncio.Semaphore(OPENING)

    async def one(path: str, tally: Tally) -> SseStream | None:
        request = stream_request(host, port, f"{path}?after_event_id={after}", token)
        async with gate:
            return await open_stream(host, port, request, tally, until, sampled=True)

    first, count = span
    conversation, firehose = Tally(), Tally()
    paths = [f"/v1/conversations/{conversation_id(first + i)}/agent-events" for i in range(count)]
    opened = await asyncio.gather(
        *(one(path, conversation) for path in paths),
        *(one("/v1/events", firehose) for _ in range(firehoses)),
    )
    return Channels(first, list(opened[:count]), list(opened[count:]), conversation, firehose)


def channels_complete(channels: Channels, expect: dict[str, Any]) -> int:
    """Streams that received exactly what was appended to them, up to their last event."""
    counts, last = expect["counts"], expect["last"]
    complete = 0
    for i, stream in enumerate(channels.conversations):
        index = channels.first + i
        if stream is not None and stream.ticks == counts[index] and stream.last_id >= last[index]:
            complete += 1
    sent, head = expect["sent"], expect["head"]
    for stream in channels.firehoses:
        if stream is not None and stream.ticks == sent and stream.last_id >= head:
            complete += 1
    return complete


async def drain_channels(channels: Channels, expect: dict[str, Any]) -> tuple[int, float]:
    started = time.perf_counter()
    opened = len(channels.opened())
    complete = 0
    for _ in range(int(expect["drain"] / 0.05) + 1):
        complete = channels_complete(channels, expect)
        if complete == opened or time.perf_counter() - started > expect["drain"]:
            break
        await asyncio.sleep(0.05)
    return complete, time.perf_counter() - started


async def channels(args: list[str]) -> None:
    """``channels URL TOKEN AFTER FIRST COUNT FIREHOSES OPEN_SECONDS DEADLINE``; then one JSON
    line on stdin: ``{"counts", "last", "sent", "head", "drain"}`` (counts and last by run)."""
    url, token = args[0], args[1]
    after, first, count, firehoses = (int(a) for a in args[2:6])
    opening, deadline = float(args[6]), float(args[7])
    loop = asyncio.get_running_loop()
    held: Channels | None = None
    try:
        async with asyncio.timeout(deadline):
            span = (first, count)
            held = await open_channels(url, token, after, span, firehoses, loop.time() + opening)
            opened = len(held.opened())
            say({"opened": opened, "refused": count + firehoses - opened})
            expect = json.loads(await stdin_line())
            complete, waited = await drain_channels(held, expect)
            say(channels_summary(held, complete, waited))
    finally:
        for stream in held.opened() if held is not None else []:
            stream.close()


def channels_summary(held: Channels, complete: int, waited: float) -> dict[str, Any]:
    tallies = {"conversation": held.conversation_tally, "firehose": held.firehose_tally}
    return {
        "opened": len(held.opened()),
        "complete": complete,
        "drain_s": waited,
        "received": {name: tally.received for name, tally in tallies.items()},
        "histograms": {name: tally.sparse() for name, tally in tallies.items()},
        "max_ms": max(tally.worst_ms for tally in tallies.values()),
    }


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "ceiling": lambda args: ceiling(args[0], int(args[1])),
    "channels": lambda args: run(channels(args)),
    "fanout": lambda args: run(
        fanout(args[0], int(args[1]), int(args[2]), float(args[3]), float(args[4]))
    ),
}


if __name__ == "__main__":
    raise_file_limit()
    COMMANDS[sys.argv[1]](sys.argv[2:])
