"""What a run recorded, read back: the adapters' tests compare it with what the framework did."""

from __future__ import annotations

from typing import Any

from api.client import RuntrackClient
from api.client.models import StoredEvent


async def events_of(client: RuntrackClient, run_id: str) -> list[StoredEvent]:
    events, _ = await client.events(run_id=run_id, limit=1000, visibility="internal")
    return events


def of_type(events: list[StoredEvent], event_type: str) -> list[dict[str, Any]]:
    return [e.payload for e in events if e.event_type == event_type]
