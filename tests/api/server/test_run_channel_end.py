"""A run channel ends at the run's end: a terminal status no later status change has left."""

from __future__ import annotations

import asyncio
import json

import pytest

from api.server.replay import PAGE
from api.server.sse import Channel, frames
from eventstore import EventFilter, NewEvent, Visibility
from tests.conftest import StoreFactory

pytestmark = pytest.mark.anyio


def moved_to(status: str) -> NewEvent:
    return NewEvent("run_status_changed", {"from": None, "to": status})


async def stream_text(store_factory: StoreFactory, *, after_failed: int) -> str:
    """The whole run channel from the start, read from the database (a store opened after
    the run was written), for a run that failed, was resumed and completed. The first page
    holds ids 1 to PAGE; ``failed`` is ``after_failed`` events before its end."""
    async with store_factory() as store:
        created = NewEvent("run_created", {"agent_id": "a"})
        await store.append("org", "run-a", [created], conversation_id="c")
        fillers = [NewEvent("custom.n", {"n": n}) for n in range(PAGE - 3 - after_failed)]
        await store.append("org", "run-a", [moved_to("running"), *fillers, moved_to("failed")])
        if after_failed:
            await store.append("org", "run-a", [NewEvent("custom.n", {"n": -1})] * after_failed)
        await store.append("org", "run-a", [moved_to(s) for s in ("resuming", "running")])
        await store.append("org", "run-a", [moved_to("completed")])
    async with store_factory() as store:
        channel = Channel(EventFilter("org", run_id="run-a"), 0, "run-a")
        chunks = [chunk async for chunk in frames(store, channel, retry_ms=1000, heartbeat=60)]
        assert await store.head() == PAGE + 3
    return b"".join(chunks).decode()


@pytest.mark.parametrize("after_failed", [0, 1, 7])
async def test_a_resumed_run_is_streamed_to_its_real_end_wherever_pages_break(
    store_factory: StoreFactory, after_failed: int
) -> None:
    """With nothing after ``failed`` in its page, that page's last status is terminal: the
    stream must still go on to the resume and end at ``completed``."""
    sent = await stream_text(store_factory, after_failed=after_failed)
    ends = [line for line in sent.splitlines() if line.startswith('data: {"run_id"')]
    assert len(ends) == 1
    assert json.loads(ends[0].removeprefix("data: ")) == {
        "run_id": "run-a",
        "status": "completed",
        "last_event_id": PAGE + 3,
    }
    assert sent.count("\nevent: run_status_changed\n") == 5
    assert sent.index('"to":"failed"') < sent.index('"to":"resuming"')


async def test_a_terminal_status_the_stream_may_not_see_still_ends_it(
    store_factory: StoreFactory,
) -> None:
    """docs/design.md's example event is a status change at ``operator``: a ``user`` stream
    must end on it too, with an id-only block moving its cursor past it, from the log and live."""
    created = NewEvent("run_created", {"agent_id": "a"})
    hidden_end = NewEvent("run_status_changed", {"from": None, "to": "completed"}, "operator")
    user_only = Channel(EventFilter("org", run_id="run-a", visibility=Visibility.USER), 0, "run-a")
    async with store_factory() as store:
        await store.append("org", "run-a", [created, moved_to("running")], conversation_id="c")
        await store.append("org", "run-b", [created], conversation_id="c")
        live = frames(store, user_only, retry_ms=1000, heartbeat=60)
        sent = [await anext(live), await anext(live)]  # the prelude, then what the log holds
        await store.append("org", "run-a", [hidden_end])
        async with asyncio.timeout(10):  # without an end, the stream would wait for ever
            sent += [chunk async for chunk in live]
            replayed = [c async for c in frames(store, user_only, retry_ms=1, heartbeat=60)]
    for chunks in (sent, replayed):
        text = b"".join(chunks).decode()
        assert '"to":"completed"' not in text
        assert text.endswith(
            'id: 4\n\nevent: end\ndata: {"run_id": "run-a", "status": "completed", '
            '"last_event_id": 4}\n\n'
        )
