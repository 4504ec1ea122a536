"""``serve --demo``: simulated agents play runs through the real commands, callbacks included."""

from __future__ import annotations

import pytest

from api.client import RuntrackClient
from tests.api.conftest import ServerFactory

pytestmark = pytest.mark.anyio


async def test_the_demo_plays_runs_to_the_end_with_callbacks(server_factory: ServerFactory) -> None:
    live = await server_factory(
        demo=True, demo_pace=0.02, callback_poll_seconds=0.05, leader_interval=0.05
    )
    seen: set[str] = set()
    async with RuntrackClient(live.url) as client:
        async for event in client.stream(visibility="operator"):
            if event.event_type == "run_status_changed" and event.payload["to"] == "completed":
                seen.add("completed")
            if event.event_type == "tool_finished":
                seen.add("tool")
            if event.event_type == "callback_attempted" and event.payload["status_code"] == 200:
                seen.add("callback")
            if seen == {"completed", "tool", "callback"}:
                break
        assert (await client.verify()).ok is True
