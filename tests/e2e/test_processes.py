"""``runtrack serve --processes 2``: several processes behind one port, on one PostgreSQL DB."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx
import pytest
from httpx_sse import aconnect_sse

from .conftest import ProcessFactory, free_port, run_cli

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}
STREAMS = 6
EVENTS = 30


async def answered_by_both_processes(url: str) -> bool:
    """Fresh connections land on either process; only one of them is the services' leader."""

    async def leader() -> bool:
        async with httpx.AsyncClient(base_url=url) as client:
            return bool((await client.get("/readyz")).json()["leader"])

    leaders: set[bool] = set()
    for _ in range(20):  # ten connections at a time, so that both processes are asked to accept
        leaders.update(await asyncio.gather(*(leader() for _ in range(10))))
        if leaders == {True, False}:
            return True
    return False


async def read_ids(url: str, run_id: str, ready: asyncio.Event, opened: list[int]) -> list[int]:
    ids: list[int] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        aconnect_sse(client, "GET", f"/v1/runs/{run_id}/events", headers=SSE) as source,
    ):
        opened.append(1)
        if len(opened) == STREAMS:
            ready.set()
        async for event in source.aiter_sse():
            if event.event == "custom.n":
                ids.append(int(event.id))
            if len(ids) == EVENTS:
                return ids
    return ids


async def test_every_stream_gets_every_event_whichever_process_serves_it(
    server_process: ProcessFactory, postgres_schema_url: str
) -> None:
    server = await server_process("--processes", "2", database=postgres_schema_url)
    assert await answered_by_both_processes(server.url)
    async with httpx.AsyncClient(base_url=server.url) as client:
        run_id = (await client.post("/v1/runs", json={"agent_id": "x"})).json()["id"]
    ready, opened = asyncio.Event(), list[int]()
    readers = [
        asyncio.ensure_future(read_ids(server.url, run_id, ready, opened)) for _ in range(STREAMS)
    ]
    await asyncio.wait_for(ready.wait(), 30)
    appended: list[int] = []
    for n in range(EVENTS):
        async with httpx.AsyncClient(base_url=server.url) as client:  # a new connection each
            body = {"events": [{"event_type": "custom.n", "payload": {"n": n}}]}
            reply = await client.post(f"/v1/runs/{run_id}/events", json=body)
            assert reply.status_code == 201, reply.text
            appended.append(reply.json()["events"][0]["id"])
    received = await asyncio.wait_for(asyncio.gather(*readers), 60)
    assert all(ids == appended for ids in received)
    log = await server.signal(signal.SIGTERM)
    assert "Finished server process" in log


async def test_a_process_that_cannot_start_fails_the_server(postgres_schema_url: str) -> None:
    """A public address with no API keys: each process refuses to start, and so does serve."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "api", "serve", "--processes", "2", "--host", "0.0.0.0"),
        *("--port", str(free_port()), "--database", postgres_schema_url),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 3, err.decode(errors="replace")[-2000:]
    assert b"without API keys" in err


async def test_processes_are_refused_on_sqlite(server_process: ProcessFactory) -> None:
    server = await server_process()
    code, _, err = await run_cli(server, "serve", "--processes", "2", "--database", server.database)
    assert code == 2
    assert "--processes needs PostgreSQL" in err
