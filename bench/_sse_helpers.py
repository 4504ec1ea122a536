"""Processes for bench/sse.py: a bare SSE ceiling server, and a client holding many streams.

python -m bench._sse_helpers ceiling DB PORT        serve DB's events as pre-encoded frames
python -m bench._sse_helpers fanout URL STREAMS SECONDS
    hold STREAMS firehose streams, print "ready", then measure append→receive latency of
    events carrying {"t": <send time>} for SECONDS, and print one JSON line of results
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from eventstore import AgentEvent
from eventstore.appending import EVENT_COLUMNS
from eventstore.records import EventPage

SAMPLED = 50
"""Streams that time every event they get; the others only count (a 2-core client cannot parse
a million frames a second, and its own lag would be measured as the server's)."""


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def ceiling(database: str, port: int) -> None:
    """The same frames runtrack would send, encoded in advance, from a bare StreamingResponse."""
    from api.sse import encode_page

    rows = sqlite3.connect(database).execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY id")
    events = [AgentEvent.from_row(row) for row in rows]
    chunks = [
        encode_page(EventPage(events[i : i + 1000], events[min(i + 999, len(events) - 1)].id))
        for i in range(0, len(events), 1000)
    ]

    async def stream(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/events", stream)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


SENT_AT = re.compile(rb'"t":([0-9.]+)')


async def hold_stream(
    host: str, port: int, latencies: list[float] | None, ready: asyncio.Event, counts: list[int]
) -> None:
    """Read a stream to the end; a sampled stream (``latencies``) also times every event."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    await writer.drain()
    ready.set()
    while chunk := await reader.read(262_144):
        counts[0] += chunk.count(b"\ndata: ")
        if latencies is not None:
            now = time.time()
            latencies.extend(now - float(sent) for sent in SENT_AT.findall(chunk))


async def fanout(url: str, streams: int, seconds: float) -> None:
    raise_file_limit()
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    latencies: list[float] = []
    counts = [0]
    events = [asyncio.Event() for _ in range(streams)]
    tasks = [
        asyncio.create_task(hold_stream(host, port, latencies if n < SAMPLED else None, e, counts))
        for n, e in enumerate(events)
    ]
    await asyncio.gather(*(e.wait() for e in events))
    print("ready", flush=True)
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    latencies.sort()
    result = {
        "received": counts[0],
        "p50_ms": _quantile(latencies, 0.5),
        "p99_ms": _quantile(latencies, 0.99),
    }
    print(json.dumps(result), flush=True)


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


if __name__ == "__main__":
    if sys.argv[1] == "ceiling":
        ceiling(sys.argv[2], int(sys.argv[3]))
    else:
        asyncio.run(fanout(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
