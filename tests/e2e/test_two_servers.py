"""Two ``runtrack serve`` processes on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict

import httpx
import pytest
from httpx_sse import aconnect_sse

from .conftest import ProcessFactory, ServerProcess

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}


async def leader_of(*servers: ServerProcess) -> list[bool]:
    flags = []
    for server in servers:
        async with httpx.AsyncClient(base_url=server.url) as client:
            flags.append(bool((await client.get("/readyz")).json()["leader"]))
    return flags


async def wait_for_leaders(servers: tuple[ServerProcess, ...], expected: list[bool]) -> None:
    async def poll() -> None:
        while await leader_of(*servers) != expected:  # noqa: ASYNC110 - state of other processes
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), 20)


async def test_a_stream_on_one_server_carries_what_the_other_appends(
    server_process: ProcessFactory, postgres_schema_url: str
) -> None:
    a = await server_process(database=postgres_schema_url)
    b = await server_process(database=postgres_schema_url)
    async with httpx.AsyncClient(base_url=a.url) as on_a, httpx.AsyncClient(base_url=b.url) as on_b:
        run = (await on_b.post("/v1/runs", json={"agent_id": "x"})).json()["id"]
        seen: list[int] = []
        async with aconnect_sse(on_a, "GET", "/v1/events", headers=SSE) as source:
            for n in range(20):
                client = on_b if n % 3 else on_a
                body = {"events": [{"event_type": "custom.n", "payload": {"n": n}}]}
                assert (await client.post(f"/v1/runs/{run}/events", json=body)).status_code == 201
            async for event in source.aiter_sse():
                if event.data:
                    seen.append(int(event.id))
                if len(seen) == 21:
                    break
    assert seen == list(range(1, 22))


async def test_claims_from_both_servers_keep_one_active_run_per_lane(
    server_process: ProcessFactory, postgres_schema_url: str
) -> None:
    servers = [await server_process(database=postgres_schema_url) for _ in range(2)]
    clients = [httpx.AsyncClient(base_url=s.url) for s in servers]
    created = defaultdict(list)
    for n in range(12):
        lane = f"lane-{n % 3}"
        run = (
            await clients[n % 2].post("/v1/runs", json={"agent_id": "x", "lane_key": lane})
        ).json()
        created[lane].append(run["id"])
    claimed: dict[str, list[str]] = defaultdict(list)

    async def worker(client: httpx.AsyncClient, name: str) -> None:
        while sum(len(v) for v in claimed.values()) < 12:
            response = await client.post("/v1/runs/claim", json={"worker_id": name})
            if response.status_code == 204:
                await asyncio.sleep(0.01)
                continue
            run = response.json()["run"]
            claimed[run["lane_key"]].append(run["id"])
            end = {
                "events": [
                    {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}}
                ]
            }
            assert (await client.post(f"/v1/runs/{run['id']}/events", json=end)).status_code == 201

    await asyncio.wait_for(asyncio.gather(*(worker(clients[n % 2], f"w{n}") for n in range(6))), 60)
    peak = await most_active_in_one_lane(clients[0])
    for client in clients:
        await client.aclose()
    assert peak == 1
    assert dict(claimed) == dict(created)  # FIFO per lane, across both servers


async def most_active_in_one_lane(client: httpx.AsyncClient) -> int:
    """Replay the log: the most runs of one lane that were ever active at the same time."""
    lane_of: dict[str, str] = {}
    status: dict[str, str] = {}
    active = {"running", "waiting_on_tool", "waiting_on_child", "resuming"}
    peak = 0
    cursor: str | None = "0"
    while cursor is not None:
        page = (
            await client.get("/v1/events", params={"after_event_id": cursor, "limit": 1000})
        ).json()
        for event in page["items"]:
            if event["event_type"] == "run_created":
                lane_of[event["run_id"]] = event["payload"]["lane_key"]
            elif event["event_type"] == "run_status_changed":
                status[event["run_id"]] = event["payload"]["to"]
                lane = lane_of[event["run_id"]]
                peak = max(
                    peak, sum(1 for r, s in status.items() if lane_of[r] == lane and s in active)
                )
        cursor = page["next_cursor"]
    return peak


async def test_killing_the_leader_hands_leadership_to_the_other(
    server_process: ProcessFactory, postgres_schema_url: str
) -> None:
    first = await server_process("--leader-interval", "0.1", database=postgres_schema_url)
    await wait_for_leaders((first,), [True])
    second = await server_process("--leader-interval", "0.1", database=postgres_schema_url)
    await wait_for_leaders((first, second), [True, False])
    await first.signal(signal.SIGKILL)
    await wait_for_leaders((second,), [True])
