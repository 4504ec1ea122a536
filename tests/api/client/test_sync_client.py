"""The synchronous client, used from a plain thread as a script would."""

from __future__ import annotations

import asyncio

import pytest

from api.client import RuntrackError, SyncRuntrackClient
from tests.api.conftest import LiveServer

pytestmark = pytest.mark.anyio


def script(url: str) -> tuple[str, list[str], str]:
    with SyncRuntrackClient(url) as client:
        run = client.create_run("sync-agent", message="hi")
        assert client.claim("w") is not None
        end = {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}
        client.append(run.id, [end])
        kinds = [event.event_type for event in client.stream(run_id=run.id)]
        with pytest.raises(RuntrackError, match="run_not_found"):
            client.get_run("run-missing")
        return client.wait(run.id).status, kinds, client.messages(run.id)[0].content


def answering_script(url: str) -> tuple[str, str]:
    with SyncRuntrackClient(url) as client:
        run = client.create_run("sync-agent", conversation_id="conv-sync")
        assert client.claim("w") is not None
        waits = {"event_type": "run_status_changed", "payload": {"to": "waiting_on_human"}}
        client.append(run.id, [waits])
        answered = client.answer(run.id, "go ahead")
        return answered.status, client.cancel_conversation("conv-sync").status


async def test_a_script_answers_and_cancels_a_conversation(server: LiveServer) -> None:
    assert await asyncio.to_thread(answering_script, server.url) == ("queued", "cancelled")


async def test_a_script_drives_a_run_synchronously(server: LiveServer) -> None:
    status, kinds, first = await asyncio.to_thread(script, server.url)
    assert status == "completed"
    assert kinds == ["run_created", "message_created", "run_status_changed", "run_status_changed"]
    assert first == "hi"
