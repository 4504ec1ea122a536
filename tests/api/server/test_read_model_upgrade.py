"""A server refills a read model whose tables are missing or changed from the log before serving."""

from __future__ import annotations

import pytest

from eventstore import NewEvent
from tests.api.conftest import ServerFactory
from tests.conftest import StoreFactory

pytestmark = pytest.mark.anyio


async def test_runs_written_without_the_read_model_are_served_after_a_rebuild(
    store_factory: StoreFactory, server_factory: ServerFactory
) -> None:
    """As after an upgrade that changed the runs table: the log holds runs the tables lack."""
    async with store_factory() as store:  # no projections: only the log is written
        await store.append(
            "default",
            "run-from-the-log",
            [
                NewEvent("run_created", {"agent_id": "agent-old", "lane_key": "lane-1"}),
                NewEvent("message_created", {"role": "user", "content": "hi"}),
            ],
            conversation_id="conv-old",
        )
    server = await server_factory()
    assert server.app.state.store.stale_projections == ["runs"]
    async with server.client() as client:
        run = (await client.get("/v1/runs/run-from-the-log")).json()
        assert (run["agent_id"], run["status"], run["num_messages"]) == ("agent-old", "queued", 1)
        created = await client.post("/v1/runs", json={"agent_id": "agent-new"})
        assert created.status_code == 201
    await server.stop()

    again = await server_factory()
    assert again.app.state.store.stale_projections == []  # the rebuild recorded the schema
    async with again.client() as client:
        listed = (await client.get("/v1/runs")).json()["items"]
    assert {r["agent_id"] for r in listed} == {"agent-old", "agent-new"}
