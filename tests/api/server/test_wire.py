"""The server's answers are the client's wire models, field for field: one wire format."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from api.client.models import Claim, Error, EventList, Run, RunList, RunStats, StoredEvent

pytestmark = pytest.mark.anyio


def assert_is(model: type[BaseModel], data: dict[str, Any]) -> None:
    """``data`` has exactly the model's fields, and reading it through the model changes nothing."""
    assert set(data) == set(model.model_fields)
    assert model.model_validate(data).model_dump() == data


async def ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


async def test_runs_and_events_are_the_wire_models(client: httpx.AsyncClient) -> None:
    created = await ok(await client.post("/v1/runs", json={"agent_id": "a", "message": "hi"}))
    claimed = await ok(await client.post("/v1/runs/claim", json={"worker_id": "w"}))
    checkpoint = {"checkpoint_id": "c1", "kind": "input", "state": {"n": 1}}
    events = [
        {"event_type": "checkpoint_created", "payload": checkpoint},
        {"event_type": "tool_started", "payload": {"tool_call_id": "t1", "name": "search"}},
        {"event_type": "run_status_changed", "payload": {"to": "failed", "detail": "boom"}},
    ]
    run_id = created["id"]
    await ok(await client.post(f"/v1/runs/{run_id}/events", json={"events": events}))
    ended = await ok(await client.get(f"/v1/runs/{run_id}"))
    listed = await ok(await client.get("/v1/runs"))
    page = await ok(await client.get(f"/v1/runs/{run_id}/events"))
    conversation = created["conversation_id"]
    panel = await ok(await client.get(f"/v1/conversations/{conversation}/agent-status"))
    stats = await ok(await client.get("/v1/runs/stats"))
    missing = await client.get("/v1/runs/run-none")
    for run in (created, claimed["run"], ended, *listed["items"], panel["run"]):
        assert_is(Run, run)
    for event in page["items"]:
        assert_is(StoredEvent, event)
    answers: list[tuple[type[BaseModel], Any]] = [
        (RunList, listed),
        (EventList, page),
        (Claim, claimed),
        (RunStats, stats),
        (Error, missing.json()),
    ]
    for model, answer in answers:
        assert_is(model, answer)
    assert missing.status_code == 404
    assert ended["checkpoint_id"] == "c1"
    assert ended["tools_used"] == ["search"]
    assert [e["event_type"] for e in page["items"]][-1] == "run_status_changed"
