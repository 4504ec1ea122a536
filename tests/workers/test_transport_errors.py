"""The worker rides out transport errors: a reset on a reused connection, a server restart.

The worker runs in this process (its handler waits on events the test sets), the server in
its own; nothing in between is simulated. On the code before the SDK repeated its calls, the
handler's append raised ``httpx.ReadError`` or ``httpx.ConnectError`` and the run ended
``failed``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from api.client import RunContext, RuntrackClient, Worker
from api.client.async_client import KEEPALIVE_EXPIRY
from tests.e2e.conftest import ProcessFactory
from tests.waiting import eventually, request_unread

pytestmark = pytest.mark.anyio
AGENT = "restartable"


class Held:
    """A handler that makes a step, waits for ``go`` before its tool call, and for ``finish``
    (set from the start unless cleared) before its message: the test changes the server's
    state in between."""

    def __init__(self) -> None:
        self.stepped = asyncio.Event()
        self.go = asyncio.Event()
        self.finish = asyncio.Event()
        self.finish.set()

    async def __call__(self, ctx: RunContext) -> None:
        await ctx.step("model", {"prompt_tokens": 1, "completion_tokens": 1})
        self.stepped.set()
        await self.go.wait()
        await ctx.tool("lookup", {"query": "q"}, lookup)
        await self.finish.wait()
        await ctx.message("assistant", "done")


async def lookup(query: str) -> str:
    return f"found {query}"


class Logged(logging.Handler):
    """Sets ``seen`` once the worker logs a line holding ``text`` (the same event loop)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@asynccontextmanager
async def serving(url: str, handler: Held) -> AsyncIterator[Worker]:
    worker = Worker(url, concurrency=1, wait_seconds=0.5)
    worker.serve(AGENT, handler)
    running = asyncio.ensure_future(worker.run(handle_signals=False))
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)


async def event_types(url: str, run_id: str) -> list[str]:
    async with RuntrackClient(url) as client:
        events, _ = await client.events(run_id=run_id, limit=1000)
    return [e.event_type for e in events]


def assert_played_once(types: list[str]) -> None:
    """Every event of the handler once: a repeated append wrote nothing twice."""
    for event_type in ("step_completed", "tool_started", "tool_finished", "message_created"):
        assert types.count(event_type) == 1, (event_type, types)


async def test_an_append_reset_on_a_reused_connection_is_sent_again(
    server_process: ProcessFactory,
) -> None:
    # A keep-alive below the client's expiry: the handler's next append reuses the connection
    # of its step, and the server closes it with that append unread (the race under load).
    server = await server_process("--keep-alive-timeout", "1")
    assert server.process is not None
    handler = Held()
    async with serving(server.url, handler):
        async with RuntrackClient(server.url) as client:
            run = await client.create_run(AGENT)
        await asyncio.wait_for(handler.stepped.wait(), 30)
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            # The subject: the connection idles past the server's keep-alive (1 s), within
            # the client's expiry, while the stopped server cannot close it yet.
            await asyncio.sleep((1 + KEEPALIVE_EXPIRY) / 2)
            handler.go.set()
            await eventually(lambda: request_unread(server.port))
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        async with RuntrackClient(server.url) as client:  # no connection of its own to lose
            final = await asyncio.wait_for(client.wait(run.id), 30)
    assert (final.status, final.stop_reason) == ("completed", "end_turn"), final.detail
    assert_played_once(await event_types(server.url, run.id))


async def test_a_worker_holding_a_run_rides_out_a_server_restart(
    server_process: ProcessFactory,
) -> None:
    # A heartbeat every 20/3 s, and room for a slow restart (6 s were too few under load)
    # before the reconciler, which also runs at the start, would time the run out.
    first = await server_process("--heartbeat-timeout", "20")
    handler = Held()
    handler.finish.clear()  # the run is held until a heartbeat reached the new server
    async with serving(first.url, handler):
        async with RuntrackClient(first.url) as client:
            run = await client.create_run(AGENT)
        await asyncio.wait_for(handler.stepped.wait(), 30)
        await first.signal(signal.SIGKILL)
        with logged("an append failed") as refused:
            handler.go.set()
            await asyncio.wait_for(refused.wait(), 30)  # the handler's append met no server
        with logged(f"heartbeat of {run.id} answered") as beaten:
            second = await server_process(
                "--heartbeat-timeout", "20", database=first.database, port=first.port
            )
            await asyncio.wait_for(beaten.wait(), 30)  # the heartbeats reach the new server
        handler.finish.set()
        async with RuntrackClient(second.url) as client:
            final = await asyncio.wait_for(client.wait(run.id), 30)
    assert (final.status, final.stop_reason) == ("completed", "end_turn"), final.detail
    assert_played_once(await event_types(second.url, run.id))


@contextmanager
def logged(text: str) -> Iterator[asyncio.Event]:
    """An event set once the worker logs a line holding ``text`` (debug lines included)."""
    worker_log = logging.getLogger("runtrack.worker")
    handler, level = Logged(text), worker_log.level
    worker_log.addHandler(handler)
    worker_log.setLevel(logging.DEBUG)
    try:
        yield handler.seen
    finally:
        worker_log.removeHandler(handler)
        worker_log.setLevel(level)
