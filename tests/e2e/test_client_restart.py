"""The client's stream survives a server restart: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import signal

import pytest

from api.client import RuntrackClient

from .conftest import ProcessFactory

pytestmark = pytest.mark.anyio


async def test_the_client_stream_survives_a_restart(server_process: ProcessFactory) -> None:
    first = await server_process()
    seen: list[int] = []
    reached = {5: asyncio.Event(), 15: asyncio.Event()}

    async def follow() -> None:
        async with RuntrackClient(first.url, max_backoff=0.2) as client:
            async for event in client.stream():
                seen.append(event.id)
                for count, flag in reached.items():
                    if len(seen) >= count:
                        flag.set()
                if len(seen) >= 15:
                    return

    follower = asyncio.ensure_future(follow())
    async with RuntrackClient(first.url) as client:
        run = await client.create_run("agent")
        for n in range(4):
            await client.append(run.id, [{"event_type": "custom.n", "payload": {"n": n}}])
    await asyncio.wait_for(reached[5].wait(), 20)
    await first.signal(signal.SIGKILL)
    second = await server_process(database=first.database, port=first.port)
    async with RuntrackClient(second.url) as client:
        for n in range(10):
            await client.append(run.id, [{"event_type": "custom.n", "payload": {"n": n}}])
    await asyncio.wait_for(follower, 30)
    assert seen == list(range(1, 16))
