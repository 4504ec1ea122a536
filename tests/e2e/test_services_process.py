"""Background services as real processes: callbacks survive SIGKILL; two servers act once."""

from __future__ import annotations

import json
import signal
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from .conftest import ProcessFactory, free_port

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}
FAST = (
    *("--callback-retry-base", "0.2", "--leader-interval", "0.1", "--reconcile-seconds", "0.2"),
    *("--callback-allow-network", "127.0.0.0/8"),  # the receivers listen on loopback
)


async def follow(url: str, wanted: Any, count: int = 1) -> list[dict[str, Any]]:
    """Follow the firehose from the start until ``count`` events satisfy ``wanted``."""
    found: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as client,
        aconnect_sse(client, "GET", "/v1/events", headers=SSE) as source,
    ):
        async for event in source.aiter_sse():
            if event.data and wanted(data := json.loads(event.data)):
                found.append(data)
                if len(found) == count:
                    return found
    return found


def final_attempt(data: dict[str, Any]) -> bool:
    return data["event_type"] == "callback_attempted" and bool(data["payload"]["final"])


async def ended_run(client: httpx.AsyncClient, callback_url: str) -> str:
    run = (
        await client.post("/v1/runs", json={"agent_id": "a", "callback_url": callback_url})
    ).json()
    await client.post("/v1/runs/claim", json={"worker_id": "w", "lane_key": run["lane_key"]})
    end = {"events": [{"event_type": "run_status_changed", "payload": {"stop_reason": "error"}}]}
    assert (await client.post(f"/v1/runs/{run['id']}/events", json=end)).status_code == 201
    return str(run["id"])


async def test_a_callback_pending_when_the_server_is_killed_is_delivered_after_restart(
    server_process: ProcessFactory, receivers: Any
) -> None:
    port = free_port()  # nothing listens here yet: the receiver is down
    first = await server_process(*FAST)
    async with httpx.AsyncClient(base_url=first.url) as client:
        run_id = await ended_run(client, f"http://127.0.0.1:{port}/hook")
    failed = await follow(first.url, lambda d: d["event_type"] == "callback_attempted")
    assert failed[0]["payload"]["status_code"] is None
    assert failed[0]["payload"]["error"]
    await first.signal(signal.SIGKILL)

    receiver = await receivers(port=port)
    second = await server_process(*FAST, database=first.database, port=first.port)
    [request] = await receiver.wait_for(1)
    [final] = await follow(second.url, final_attempt)
    assert json.loads(request.body)["run_id"] == run_id
    assert final["payload"]["status_code"] == 200
    assert final["payload"]["attempt"] >= 2


async def test_two_servers_deliver_each_callback_once_and_reconcile_once(
    server_process: ProcessFactory, postgres_schema_url: str, receivers: Any
) -> None:
    receiver = await receivers()
    args = (*FAST, "--heartbeat-timeout", "1")
    servers = [await server_process(*args, database=postgres_schema_url) for _ in range(2)]
    clients = [httpx.AsyncClient(base_url=s.url) for s in servers]
    runs = [await ended_run(clients[n % 2], receiver.url) for n in range(6)]
    silent = (await clients[1].post("/v1/runs", json={"agent_id": "a"})).json()["id"]
    await clients[1].post("/v1/runs/claim", json={"worker_id": "gone", "agent_id": "a"})

    finals = await follow(servers[0].url, final_attempt, count=6)
    [timed_out] = await follow(
        servers[1].url,
        lambda d: (
            d["run_id"] == silent
            and d["event_type"] == "run_status_changed"
            and d["payload"]["to"] == "timed_out"
        ),
    )
    for client in clients:
        await client.aclose()
    assert sorted(f["run_id"] for f in finals) == sorted(runs)
    assert all(f["payload"]["attempt"] == 1 for f in finals)
    assert len(receiver.requests) == 6
    assert len({r.headers["x-runtrack-delivery"] for r in receiver.requests}) == 6
    assert timed_out["payload"]["stop_reason"] == "timed_out"
