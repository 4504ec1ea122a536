"""The Python client against a live server: every call, typed errors, streams and wait."""

from __future__ import annotations

import asyncio

import pytest

from api.client import RuntrackClient, RuntrackError
from api.server.auth import Role
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.anyio


async def test_the_worker_calls(server: LiveServer) -> None:
    async with RuntrackClient(server.url) as client:
        run = await client.create_run("agent-1", message="hi", metadata={"team": "a"})
        assert (run.status, run.num_messages) == ("queued", 1)
        claimed = await client.claim("w1")
        assert claimed is not None
        assert claimed.run.id == run.id
        assert await client.claim("w2") is None
        beat = await client.heartbeat(run.id, "w1")
        assert beat.cancel_requested is False
        steps = [
            {
                "event_type": "step_completed",
                "payload": {"prompt_tokens": 3, "completion_tokens": 2},
            },
            {"event_type": "message_created", "payload": {"role": "assistant", "content": "ok"}},
        ]
        appended = await client.append(run.id, steps)
        assert [e.sequence for e in appended.events] == [4, 5]
        assert (await client.usage(run.id)).total_tokens == 5
        assert [m.content for m in await client.messages(run.id)] == ["hi", "ok"]
        runs, cursor = await client.list_runs(agent_id="agent-1", status=["running"])
        assert ([r.id for r in runs], cursor) == ([run.id], None)
        events, position = await client.events(after_event_id=0, limit=2)
        assert ([e.id for e in events], position) == ([1, 2], 2)
        assert (await client.verify()).ok is True


async def test_a_person_answers_and_a_conversation_is_cancelled(server: LiveServer) -> None:
    async with RuntrackClient(server.url, timeout=5) as client:
        run = await client.create_run("agent-h", conversation_id="conv-h")
        claimed = await client.claim("w1", wait_seconds=10)
        assert claimed is not None
        assert claimed.heartbeat_interval_seconds == claimed.heartbeat_timeout_seconds / 3
        ask = {"question_id": "q-1", "question": "Deploy?", "choices": ["yes", "no"]}
        await client.append(
            run.id,
            [
                {"event_type": "human_input_requested", "payload": ask},
                {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}},
            ],
        )
        assert (await client.get_run(run.id)).question is not None
        answered = await client.answer(run.id, {"choice": "yes"})
        assert (answered.status, answered.question) == ("queued", None)
        with pytest.raises(RuntrackError) as again:
            await client.answer(run.id, "no")
        assert (again.value.status, again.value.code) == (409, "not_waiting_on_human")
        cancelled = await client.cancel_conversation("conv-h", reason="enough")
        assert (cancelled.id, cancelled.status) == (run.id, "cancelled")
        with pytest.raises(RuntrackError) as none:
            await client.cancel_conversation("conv-h")
        assert (none.value.status, none.value.code) == (404, "no_active_run")


async def test_a_claim_waits_longer_than_the_clients_timeout(server: LiveServer) -> None:
    """The request's timeout grows by ``wait_seconds``: a wait past the client's own timeout
    ends in None (the server's 204), not in a timeout error."""
    async with RuntrackClient(server.url, timeout=0.2) as client:
        assert await client.claim("w1", wait_seconds=0.5) is None


async def test_errors_carry_the_server_code(server: LiveServer) -> None:
    async with RuntrackClient(server.url) as client:
        with pytest.raises(RuntrackError) as missing:
            await client.get_run("run-nope")
        assert (missing.value.status, missing.value.code) == (404, "run_not_found")
        run = await client.create_run("agent")
        with pytest.raises(RuntrackError) as refused:
            await client.resume(run.id)
        assert refused.value.code == "resume_refused"
        assert refused.value.details["current_status"] == "queued"
    async with RuntrackClient(server.url, key="rtk_bad_key") as stranger:
        await server.key(Role.ADMIN)
        with pytest.raises(RuntrackError) as denied:
            await stranger.get_run(run.id)
        assert denied.value.code == "unauthorized"


async def test_a_run_stream_ends_with_the_run_and_wait_returns_it(server: LiveServer) -> None:
    async with RuntrackClient(server.url) as client:
        run = await client.create_run("agent")
        await client.claim("w")
        stream = client.stream(run_id=run.id)
        seen = [(await anext(stream)).event_type]  # the stream is live from here
        waiting = asyncio.ensure_future(client.wait(run.id))
        await client.append(run.id, [{"event_type": "custom.n", "payload": {"n": 1}}])
        end = {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}
        await client.append(run.id, [end])
        seen += [event.event_type async for event in stream]
        final = await waiting
    assert seen == ["run_created", "run_status_changed", "custom.n", "run_status_changed"]
    assert (final.status, final.stop_reason, final.terminal) == ("completed", "end_turn", True)


async def test_stream_of_an_ended_run_from_its_end_yields_nothing(server: LiveServer) -> None:
    async with RuntrackClient(server.url) as client:
        run = await client.create_run("agent")
        await client.cancel(run.id)
        ended = await client.get_run(run.id)
        assert [e async for e in client.stream(run_id=run.id, after=ended.last_event_id)] == []
        assert (await client.wait(run.id)).status == "cancelled"
