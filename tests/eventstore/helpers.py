"""Small builders shared by the event store tests."""

from __future__ import annotations

from typing import Any

from eventstore import AgentEvent, EventFilter, EventStore, NewEvent

ORG = "org-test"


def created(agent_id: str = "agent-1") -> NewEvent:
    return NewEvent("run_created", {"agent_id": agent_id})


def message(content: str = "hello", role: str = "user") -> NewEvent:
    return NewEvent("message_created", {"role": role, "content": content})


def custom(n: int, **extra: Any) -> NewEvent:
    return NewEvent("custom.tick", {"n": n, **extra})


async def new_run(
    store: EventStore, run_id: str, conversation_id: str = "conv-1", org: str = ORG
) -> list[AgentEvent]:
    return await store.append(org, run_id, [created()], conversation_id=conversation_id)


async def all_events(store: EventStore) -> list[AgentEvent]:
    from eventstore import EventFilter

    events: list[AgentEvent] = []
    cursor = 0
    while True:
        page = await store.read(EventFilter(), after=cursor, limit=1000)
        events.extend(page.events)
        if not page.events:
            return events
        cursor = page.position


async def collect(store: EventStore, flt: EventFilter, after: int, until: int) -> list[AgentEvent]:
    """What a stream of ``flt`` from ``after`` receives until its position reaches ``until``."""
    received: list[AgentEvent] = []
    async for page in store.subscribe(flt, after=after):
        received.extend(page.events)
        if page.position >= until:
            return received
    raise AssertionError("the stream ended early")
