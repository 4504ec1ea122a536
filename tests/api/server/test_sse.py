"""The SSE streams over a real uvicorn server: the ten requirements of docs/design.md."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from starlette.types import Message

from api.server.auth import Role
from api.server.replay import AHEAD, PAGE, READER_TASK
from eventstore import PARALLEL_READS, NewEvent
from projections import RunProjection
from tests.api.conftest import LiveServer, ServerFactory
from tests.conftest import StoreFactory
from tests.waiting import eventually

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}


async def new_run(client: httpx.AsyncClient, conversation: str = "conv-1", **body: Any) -> str:
    response = await client.post(
        "/v1/runs", json={"agent_id": "a", "conversation_id": conversation, **body}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def add(client: httpx.AsyncClient, run_id: str, *events: dict[str, Any]) -> list[int]:
    response = await client.post(f"/v1/runs/{run_id}/events", json={"events": list(events)})
    assert response.status_code == 201, response.text
    return [e["id"] for e in response.json()["events"]]


def note(n: int) -> dict[str, Any]:
    return {"event_type": "custom.note", "payload": {"n": n}}


async def ids_until(
    client: httpx.AsyncClient, url: str, last: int, headers: dict[str, str] | None = None
) -> list[int]:
    seen: list[int] = []
    async with aconnect_sse(client, "GET", url, headers={**SSE, **(headers or {})}) as source:
        async for event in source.aiter_sse():
            if event.data:
                seen.append(int(event.id))
            if event.id and int(event.id) >= last:
                return seen
    return seen


async def raw_until(
    client: httpx.AsyncClient, url: str, marker: str, headers: dict[str, str] | None = None
) -> str:
    text = ""
    async with client.stream("GET", url, headers={**SSE, **(headers or {})}) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_text():
            text += chunk
            if marker in text:
                return text
    return text


async def test_a_stream_starts_at_once_with_retry_and_the_right_headers(
    client: httpx.AsyncClient,
) -> None:
    async with client.stream("GET", "/v1/events", headers=SSE) as response:
        first = await anext(response.aiter_text())
        headers = response.headers
    assert first.startswith("retry: 3000\n: stream open at 0")
    assert headers["content-type"].startswith("text/event-stream")
    assert "no-cache" in headers["cache-control"]
    assert headers["x-accel-buffering"] == "no"
    assert "content-encoding" not in headers


async def test_each_event_is_framed_with_its_id_and_type(client: httpx.AsyncClient) -> None:
    run = await new_run(client)
    async with aconnect_sse(client, "GET", f"/v1/runs/{run}/events", headers=SSE) as source:
        event = await anext(e async for e in source.aiter_sse() if e.data)
    assert (event.id, event.event) == ("1", "run_created")
    body = json.loads(event.data)
    assert (body["id"], body["run_id"], body["sequence"], body["visibility"]) == (1, run, 1, "user")


async def test_cursor_priority(client: httpx.AsyncClient) -> None:
    run = await new_run(client)
    await add(client, run, note(1), note(2), note(3))
    base = f"/v1/conversations/conv-1/agent-events?run_id={run}"
    assert await ids_until(
        client, f"{base}&after_event_id=1&after_sequence=3", 4, {"Last-Event-ID": "2"}
    ) == [3, 4]
    assert await ids_until(client, f"{base}&after_event_id=1&after_sequence=3", 4) == [2, 3, 4]
    assert await ids_until(client, f"{base}&after_sequence=3", 4) == [4]
    conversation = "/v1/conversations/conv-1/agent-events?after_sequence=3"
    assert await ids_until(client, conversation, 4) == [1, 2, 3, 4]  # ignored off run channels


@pytest.mark.parametrize(
    "query",
    [
        "after_event_id=abc",
        "after_event_id=-1",
        "after_event_id=999",
        "after_sequence=99&run_id=RUN",
        "after_sequence=x&run_id=RUN",
    ],
)
async def test_bad_cursors_are_a_400(client: httpx.AsyncClient, query: str) -> None:
    run = await new_run(client)
    response = await client.get(
        f"/v1/conversations/conv-1/agent-events?{query.replace('RUN', run)}", headers=SSE
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_cursor"


async def test_a_malformed_last_event_id_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/events", headers={**SSE, "Last-Event-ID": "seven"})
    assert response.status_code == 400


VISIBLE = {
    Role.USER: ["run_created", "run_status_changed"],
    Role.OPERATOR: ["run_created", "run_status_changed", "tool_started"],
    Role.ADMIN: ["run_created", "run_status_changed", "tool_started", "checkpoint_created"],
}


@pytest.mark.parametrize("role", list(Role))
async def test_visibility_is_capped_by_the_role(server: LiveServer, role: Role) -> None:
    admin, key = await server.key(Role.ADMIN), await server.key(role)
    async with server.client(admin) as boss, server.client(key) as client:
        run = await new_run(boss)
        await boss.post("/v1/runs/claim", json={"worker_id": "w"})
        await add(
            boss,
            run,
            {"event_type": "tool_started", "payload": {"tool_call_id": "t", "name": "x"}},
            {
                "event_type": "checkpoint_created",
                "payload": {"checkpoint_id": "c", "kind": "input"},
            },
        )
        types: list[str] = []
        async with aconnect_sse(
            client, "GET", "/v1/events?visibility=internal", headers=SSE
        ) as source:
            assert (
                source.response.headers["x-runtrack-visibility"]
                == min(role, Role.ADMIN).name.lower()
                if role != Role.ADMIN
                else "internal"
            )
            async for event in source.aiter_sse():
                if event.data:
                    types.append(event.event)
                if int(event.id or 0) >= 4:
                    break
    assert types == VISIBLE[role]


async def test_filtered_events_still_move_the_cursor(client: httpx.AsyncClient) -> None:
    run = await new_run(client)
    await client.post("/v1/runs/claim", json={"worker_id": "w"})
    await add(
        client, run, {"event_type": "tool_started", "payload": {"tool_call_id": "t", "name": "x"}}
    )
    text = await raw_until(client, "/v1/events?visibility=user", "id: 3\n\n")
    assert "event: tool_started" not in text
    assert text.endswith("id: 3\n\n")  # an id-only block: no data, so nothing is dispatched


async def test_idle_streams_get_heartbeats(server_factory: ServerFactory) -> None:
    live = await server_factory(heartbeat_seconds=0.05)
    async with live.client() as client:
        text = await raw_until(client, "/v1/events", ": heartbeat\n\n: heartbeat\n\n")
    assert text.count(": heartbeat") >= 2


async def test_a_run_channel_ends_and_a_reconnect_past_the_end_gets_204(
    client: httpx.AsyncClient,
) -> None:
    run = await new_run(client)
    await client.post("/v1/runs/claim", json={"worker_id": "w"})
    events: list[tuple[str, str]] = []
    async with aconnect_sse(client, "GET", f"/v1/runs/{run}/events", headers=SSE) as source:
        await add(
            client,
            run,
            note(1),
            {"event_type": "run_status_changed", "payload": {"stop_reason": "end_turn"}},
        )
        async for event in source.aiter_sse():
            events.append((event.event, event.id))
    assert events[-2:] == [("run_status_changed", "4"), ("end", "4")]
    again = await client.get(f"/v1/runs/{run}/events", headers={**SSE, "Last-Event-ID": "4"})
    assert again.status_code == 204
    earlier = await ids_until(client, f"/v1/runs/{run}/events", 4, {"Last-Event-ID": "2"})
    assert earlier == [3, 4]


async def test_past_the_stream_cap_the_answer_is_503(server_factory: ServerFactory) -> None:
    live = await server_factory(max_streams=2)
    async with live.client() as client:
        async with (
            client.stream("GET", "/v1/events", headers=SSE) as one,
            client.stream("GET", "/v1/events", headers=SSE) as two,
        ):
            assert (one.status_code, two.status_code) == (200, 200)
            third = await client.get("/v1/events", headers=SSE)
            assert third.status_code == 503
            assert third.headers["retry-after"] == "5"
        await eventually(lambda: live.app.state.streams.open == 0)
        async with client.stream("GET", "/v1/events", headers=SSE) as again:
            assert again.status_code == 200


async def test_streams_are_cleaned_up_when_clients_leave(server: LiveServer) -> None:
    async with server.client() as client:
        for _ in range(5):
            async with client.stream("GET", "/v1/events", headers=SSE) as response:
                await anext(response.aiter_text())
        await eventually(lambda: server.app.state.streams.open == 0, within=2.0)
        await eventually(lambda: server.app.state.store.subscriber_count == 0, within=2.0)
        metrics = (await client.get("/metrics")).text
    assert "runtrack_open_streams 0.0" in metrics


async def test_a_stalled_client_is_dropped_without_blocking_others(
    server_factory: ServerFactory,
) -> None:
    live = await server_factory(send_timeout=0.5)
    uvicorn_log = Records()
    logging.getLogger("uvicorn.error").addHandler(uvicorn_log)
    async with live.client() as client:
        run = await new_run(client)
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
            stalled.sendall(
                b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
            reader = asyncio.ensure_future(ids_until(client, "/v1/events", 41))
            big = "x" * 200_000
            for n in range(40):
                await add(
                    client, run, {"event_type": "custom.blob", "payload": {"n": n, "blob": big}}
                )
            assert await reader == list(range(1, 42))
            await eventually(lambda: live.app.state.streams.open == 0, within=10)
            metrics = (await client.get("/metrics")).text
    logging.getLogger("uvicorn.error").removeHandler(uvicorn_log)
    assert "runtrack_dropped_slow_clients_total 1.0" in metrics
    assert uvicorn_log.errors == []  # a deliberate drop is not reported as an app error


async def test_the_watchdog_drops_a_stream_whose_chunk_is_never_taken(
    server_factory: ServerFactory,
) -> None:
    """The app called directly, with an ASGI ``send`` that takes the response start but never
    returns from a body chunk: only the gate's watchdog can end the stream (nothing times a
    chunk's send otherwise), so without it the call would never return."""
    live = await server_factory(send_timeout=0.2)
    port = int(live.url.rsplit(":", 1)[1])
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", f"127.0.0.1:{port}".encode()), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", port),
        "state": {},
    }
    started, never = asyncio.Event(), asyncio.Event()

    async def receive() -> Message:
        await never.wait()  # the client never leaves
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.set()
        elif message.get("more_body"):
            await never.wait()  # the client never reads

    await asyncio.wait_for(live.app(scope, receive, send), 10)
    assert started.is_set()
    assert live.app.state.streams.open == 0
    async with live.client() as client:
        metrics = (await client.get("/metrics")).text
    assert "runtrack_dropped_slow_clients_total 1.0" in metrics


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())


async def test_exactly_once_in_order_while_writers_append_and_clients_reconnect(
    client: httpx.AsyncClient,
) -> None:
    """8 writers append while 20 clients connect and reconnect at random cursors."""
    runs = [await new_run(client, conversation=f"c{n}") for n in range(8)]
    per_writer = 25
    total = len(runs) + per_writer * len(runs)
    rng = random.Random(11)

    async def writer(run: str) -> None:
        for n in range(per_writer):
            await add(client, run, note(n))

    async def reconnecting_reader() -> tuple[int, list[int]]:
        await asyncio.sleep(rng.random() * 0.2)
        head = int((await client.get("/readyz")).json()["head_id"])
        start = rng.randint(0, head)
        seen: list[int] = []
        cursor = start
        while cursor < total:
            budget = rng.randint(1, 40)
            headers = {**SSE, "Last-Event-ID": str(cursor)} if cursor else SSE
            async with aconnect_sse(client, "GET", "/v1/events", headers=headers) as source:
                async for event in source.aiter_sse():
                    if event.data:
                        seen.append(int(event.id))
                    if event.id:
                        cursor = int(event.id)
                    budget -= 1
                    if budget == 0 or cursor >= total:
                        break
        return start, seen

    results = await asyncio.gather(
        *(reconnecting_reader() for _ in range(20)), *(writer(r) for r in runs)
    )
    for start, seen in results[:20]:  # type: ignore[misc]
        assert seen == list(range(start + 1, total + 1))


async def test_a_replay_from_the_log_spans_pages_then_follows_live(
    store_factory: StoreFactory, server_factory: ServerFactory
) -> None:
    """Events stored before the server started are read from the database, a page at a time
    (pages are read ahead of the sending), and the stream carries on live after them."""
    stored = PAGE * 2 + 345
    async with store_factory(projections=[RunProjection()]) as store:
        await store.append(
            "default", "run-old", [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
        )
        for start in range(1, stored, 500):
            notes = [
                NewEvent("custom.note", {"n": n}) for n in range(start, min(start + 500, stored))
            ]
            await store.append("default", "run-old", notes)
    server = await server_factory()
    assert not server.app.state.store.live_from(0)  # the replay has to read the log
    assert server.app.state.store.parallel_reads == PARALLEL_READS  # pages framed at once
    async with server.client() as client:
        run = await new_run(client)
        live = (await add(client, run, note(0)))[-1]
        seen = await ids_until(client, "/v1/events", live)
        from_run = await ids_until(client, "/v1/runs/run-old/events", stored)
    assert seen == list(range(1, live + 1))
    assert from_run == list(range(1, stored + 1))


async def test_leaving_in_the_middle_of_a_replay_stops_its_reading(
    store_factory: StoreFactory,
    server_factory: ServerFactory,
) -> None:
    async with store_factory(projections=[RunProjection()]) as store:
        await store.append(
            "default", "run-old", [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
        )
        for _ in range(PAGE * (AHEAD + 3) // 500):
            await store.append("default", "run-old", [NewEvent("custom.note", {})] * 500)
    server = await server_factory()
    async with server.client() as client:
        for _ in range(3):
            async with client.stream("GET", "/v1/events", headers=SSE) as response:
                chunks = response.aiter_bytes()
                while b"id: 1\n" not in await anext(chunks):
                    pass

    def readers_left() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name() == READER_TASK]

    await eventually(lambda: server.app.state.streams.open == 0, within=2.0)
    await eventually(lambda: not readers_left(), within=2.0)
