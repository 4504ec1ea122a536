"""The worker SDK in this process against a real server: how a handler's outcome ends a run,
tool errors and their replay, child runs, heartbeats that keep a long run alive."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from api.client import (
    RunContext,
    RuntrackClient,
    SyncRunContext,
    SyncWorker,
    ToolCallFailed,
    Worker,
)
from api.client.worker import Handler
from tests.api.conftest import LiveServer, ServerFactory

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def serving(url: str, handlers: dict[str, Handler]) -> AsyncIterator[Worker]:
    worker = Worker(url, wait_seconds=1.0)
    for agent, handler in handlers.items():
        worker.serve(agent, handler)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        yield worker
    finally:
        worker.stop()
        await task


@pytest.fixture
async def live(server_factory: ServerFactory) -> LiveServer:
    return await server_factory()


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[RuntrackClient]:
    async with RuntrackClient(live.url) as opened:
        yield opened


async def play(
    live: LiveServer, client: RuntrackClient, handler: Callable[[RunContext], Awaitable[str | None]]
) -> tuple[str, str | None, str | None]:
    run = await client.create_run("a")
    async with serving(live.url, {"a": handler}):
        done = await client.wait(run.id)
    return done.status, done.stop_reason, done.error


async def test_a_return_without_a_value_completes_the_run_end_turn(
    live: LiveServer, client: RuntrackClient
) -> None:
    async def handler(ctx: RunContext) -> None:
        await ctx.message("assistant", "done")

    assert await play(live, client, handler) == ("completed", "end_turn", None)


async def test_a_returned_stop_reason_ends_the_run_as_it_maps(
    live: LiveServer, client: RuntrackClient
) -> None:
    async def handler(ctx: RunContext) -> str:
        return "max_steps"

    async def failing(ctx: RunContext) -> str:
        return "llm_api_error"

    assert await play(live, client, handler) == ("completed", "max_steps", None)
    assert (await play(live, client, failing))[:2] == ("failed", "llm_api_error")


async def test_an_exception_fails_the_run_with_its_message(
    live: LiveServer, client: RuntrackClient
) -> None:
    async def handler(ctx: RunContext) -> None:
        raise ValueError("the model said no")

    assert await play(live, client, handler) == ("failed", "error", "ValueError: the model said no")


async def test_a_return_that_is_no_stop_reason_fails_the_run_saying_so(
    live: LiveServer, client: RuntrackClient
) -> None:
    async def handler(ctx: RunContext) -> str:
        return "the answer is 42"

    status, reason, error = await play(live, client, handler)
    assert (status, reason) == ("failed", "error")
    assert error is not None
    assert "the answer is 42" in error


async def test_a_tool_error_is_raised_and_replayed_as_the_same_error(
    live: LiveServer, client: RuntrackClient
) -> None:
    calls: list[int] = []
    attempts: list[str] = []

    def broken(n: int) -> None:
        calls.append(n)
        raise RuntimeError("disk full")

    async def handler(ctx: RunContext) -> None:
        if ctx.state is None:
            await ctx.checkpoint("input", {"attempt": 1})
        try:
            await ctx.tool("write", {"n": 1}, broken)
        except ToolCallFailed as failed:
            attempts.append(str(failed.error))
        if len(attempts) == 1:
            raise ConnectionError("the model went away")  # fails, resumable

    run = await client.create_run("a")
    async with serving(live.url, {"a": handler}):
        assert (await client.wait(run.id)).status == "failed"
        await client.resume(run.id)
        done = await client.wait(run.id)
    assert done.status == "completed"
    assert calls == [1]  # not called again on the resumed run
    assert attempts == ["RuntimeError: disk full", "RuntimeError: disk full"]


async def test_a_child_run_is_started_once_and_waited_for(
    live: LiveServer, client: RuntrackClient
) -> None:
    async def parent(ctx: RunContext) -> None:
        child = await ctx.start_child("child", message="check my work")
        done = await ctx.wait_child(child)
        await ctx.message("assistant", f"child {done.status}")

    async def child(ctx: RunContext) -> str:
        return "end_turn"

    run = await client.create_run("parent")
    async with serving(live.url, {"parent": parent, "child": child}):
        done = await client.wait(run.id)
    assert done.status == "completed"
    assert len(done.child_run_ids) == 1
    assert (await client.get_run(done.child_run_ids[0])).parent_run_id == run.id
    assert (await client.messages(run.id))[-1].content == "child completed"


async def test_heartbeats_keep_a_long_run_alive_past_the_heartbeat_timeout(
    server_factory: ServerFactory,
) -> None:
    """A run claimed by hand beside it, never heartbeating, times out: the SDK's does not."""
    live = await server_factory(heartbeat_timeout=1.0, reconcile_seconds=0.1)
    release = asyncio.Event()

    async def handler(ctx: RunContext) -> None:
        await release.wait()
        await ctx.message("assistant", "still mine")

    async with RuntrackClient(live.url) as client:
        ours = await client.create_run("a", conversation_id="ours")
        async with serving(live.url, {"a": handler}):
            await anext(
                e
                async for e in client.stream(run_id=ours.id)
                if e.event_type == "run_status_changed" and e.payload["to"] == "running"
            )
            control = await client.create_run("b", conversation_id="control")
            assert (await client.claim("by-hand", agent_id="b")) is not None
            assert (await client.wait(control.id)).status == "timed_out"
            assert (await client.get_run(ours.id)).status == "running"
            release.set()
            done = await client.wait(ours.id)
    assert done.status == "completed"


async def test_the_sync_worker_asks_a_human_and_gets_the_answer_on_the_next_attempt(
    live: LiveServer, client: RuntrackClient
) -> None:
    calls: list[str] = []

    def lookup(what: str) -> str:
        calls.append(what)
        return f"{what} found"

    def handler(ctx: SyncRunContext) -> None:
        found = ctx.tool("lookup", {"what": "notes"}, lookup)
        ctx.checkpoint("tool_result", {"found": found})
        ctx.progress(progress=1, total=2)
        answer = ctx.ask_human("Publish?", choices=["yes", "no"])
        ctx.message("assistant", f"{found}, publish: {answer}")

    worker = SyncWorker(live.url, wait_seconds=1.0)
    worker.handler("a")(handler)
    thread = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    thread.start()
    try:
        run = await client.create_run("a")
        await anext(
            e
            async for e in client.stream(run_id=run.id)
            if e.event_type == "run_status_changed" and e.payload["to"] == "waiting_on_human"
        )
        asked = await client.get_run(run.id)
        assert asked.metadata == {"progress": 1, "total": 2}
        await client.answer(run.id, "yes")
        done = await client.wait(run.id)
    finally:
        worker.stop()
        await asyncio.to_thread(thread.join)
    assert done.status == "completed"
    assert calls == ["notes"]
    assert (await client.messages(run.id))[-1].content == "notes found, publish: yes"
