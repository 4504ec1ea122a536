"""Callbacks to a real receiver: signed, retried with backoff, recorded, durable."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from projections.callbacks import organization_secret, sign
from tests.api.conftest import LiveServer, ServerFactory
from tests.receiver import Receiver

pytestmark = pytest.mark.anyio
FAST = {
    "callback_retry_base": 0.05,
    "callback_poll_seconds": 0.05,
    "leader_interval": 0.05,
    "callback_allow_networks": ("127.0.0.0/8",),  # the receivers listen on loopback
}


@pytest.fixture
async def receiver(receivers: Any) -> Receiver:
    started: Receiver = await receivers()
    return started


async def finished_run(
    client: httpx.AsyncClient, url: str, *, steps: list[str] | None = None
) -> str:
    run = (
        await client.post(
            "/v1/runs", json={"agent_id": "a", "callback_url": url, "metadata": {"k": "v"}}
        )
    ).json()
    await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    for status in steps or []:
        body = {"events": [{"event_type": "run_status_changed", "payload": {"to": status}}]}
        assert (await client.post(f"/v1/runs/{run['id']}/events", json=body)).status_code == 201
    end = {"events": [{"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}]}
    assert (await client.post(f"/v1/runs/{run['id']}/events", json=end)).status_code == 201
    return str(run["id"])


async def attempts_until_final(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    """Follow the firehose until this run's final callback attempt is in the log."""
    attempts: list[dict[str, Any]] = []
    async with aconnect_sse(
        client, "GET", "/v1/events", headers={"Accept": "text/event-stream"}
    ) as source:
        async for event in source.aiter_sse():
            if event.event == "callback_attempted":
                data = json.loads(event.data)
                if data["run_id"] == run_id:
                    attempts.append(data["payload"])
                    if data["payload"]["final"]:
                        return attempts
    return attempts


async def test_a_terminal_run_is_called_back_once_signed(
    server_factory: ServerFactory, receiver: Receiver
) -> None:
    live = await server_factory(callback_secret="s3cret", **FAST)
    async with live.client() as client:
        run_id = await finished_run(client, receiver.url, steps=["waiting_on_tool", "running"])
        attempts = await attempts_until_final(client, run_id)
        run = (await client.get(f"/v1/runs/{run_id}")).json()
    [request] = receiver.requests  # nothing for the non-terminal changes before
    body = json.loads(request.body)
    assert body == {
        "organization_id": "default",
        "run_id": run_id,
        "status": "completed",
        "stop_reason": "end_turn",
        "completed_at": run["completed_at"],
        "metadata": {"k": "v"},
    }
    timestamp = request.headers["x-runtrack-timestamp"]
    secret = organization_secret("s3cret", "default")  # what `runtrack callbacks secret` prints
    assert request.headers["x-runtrack-signature"] == sign(secret, timestamp, request.body)
    assert request.headers["x-runtrack-delivery"] == run["callback_delivery_id"]
    assert [(a["attempt"], a["status_code"], a["final"]) for a in attempts] == [(1, 200, True)]
    assert (run["callback_status_code"], run["callback_pending"], run["callback_attempts"]) == (
        200,
        False,
        1,
    )
    assert run["callback_sent_at"] is not None


async def test_failures_are_retried_and_every_attempt_recorded(
    server_factory: ServerFactory, receivers: Any
) -> None:
    receiver = await receivers(failures=2)
    live = await server_factory(**FAST)
    async with live.client() as client:
        run_id = await finished_run(client, receiver.url)
        attempts = await attempts_until_final(client, run_id)
        run = (await client.get(f"/v1/runs/{run_id}")).json()
    assert [(a["attempt"], a["status_code"], a["final"]) for a in attempts] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert attempts[0]["error"] == "http_status"
    assert len({r.headers["x-runtrack-delivery"] for r in receiver.requests}) == 1
    assert (run["callback_status_code"], run["callback_error"], run["callback_attempts"]) == (
        200,
        None,
        3,
    )


async def test_delivery_gives_up_after_the_limit(
    server_factory: ServerFactory, receivers: Any
) -> None:
    receiver = await receivers(failures=99)
    live = await server_factory(callback_max_attempts=3, **FAST)
    async with live.client() as client:
        run_id = await finished_run(client, receiver.url)
        attempts = await attempts_until_final(client, run_id)
    assert [(a["attempt"], a["final"]) for a in attempts] == [(1, False), (2, False), (3, True)]


async def test_only_http_callback_urls_are_accepted(server: LiveServer) -> None:
    async with server.client() as client:
        response = await client.post(
            "/v1/runs", json={"agent_id": "a", "callback_url": "file:///etc/passwd"}
        )
    assert response.status_code == 422
