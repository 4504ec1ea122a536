"""The server as a process: SIGTERM drains open streams, and clients resume after a restart."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from httpx_sse import aconnect_sse

from .conftest import ProcessFactory

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}


class Reader:
    """Collects a stream's event ids and says when it has ``want`` of them."""

    def __init__(self, want: int) -> None:
        self.seen: list[int] = []
        self.want = want
        self.reached = asyncio.Event()

    def add(self, event_id: int) -> None:
        self.seen.append(event_id)
        if len(self.seen) >= self.want:
            self.reached.set()


async def read_until_closed(url: str, last_event_id: int, reader: Reader) -> None:
    headers = {**SSE, "Last-Event-ID": str(last_event_id)} if last_event_id else SSE
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        try:
            async with aconnect_sse(client, "GET", "/v1/events", headers=headers) as source:
                async for event in source.aiter_sse():
                    if event.data:
                        reader.add(int(event.id))
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server went away mid-stream: the client resumes by cursor


async def append_notes(url: str, run: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for n in range(count):
            response = await client.post(
                f"/v1/runs/{run}/events",
                json={"events": [{"event_type": "custom.n", "payload": {"n": n}}]},
            )
            assert response.status_code == 201


async def test_sigterm_drains_open_streams_and_clients_resume_after_restart(
    server_process: ProcessFactory,
) -> None:
    first = await server_process("--heartbeat-seconds", "0.2")
    async with httpx.AsyncClient(base_url=first.url) as client:
        run = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
    await append_notes(first.url, run, 10)
    streams = [Reader(want=11) for _ in range(3)]
    readers = [asyncio.ensure_future(read_until_closed(first.url, 0, r)) for r in streams]
    await asyncio.gather(*(r.reached.wait() for r in streams))

    log = await first.signal(signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*readers), 15)  # every stream was closed by the drain
    assert "Application shutdown complete" in log  # a graceful exit, not a kill

    second = await server_process(
        "--heartbeat-seconds", "0.2", database=first.database, port=first.port
    )
    await append_notes(second.url, run, 5)
    for before in streams:
        resumed = Reader(want=5)
        task = asyncio.ensure_future(read_until_closed(second.url, before.seen[-1], resumed))
        await resumed.reached.wait()
        task.cancel()
        assert before.seen + resumed.seen == list(range(1, 17))
