"""Per-tenant limits: stream caps per key and per organization, rate limits on creating runs and
appending, and a deadline for a request's headers (slowloris), against real servers."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from api.server.auth import Role
from api.server.openapi import openapi_document
from api.server.settings import Settings
from tests.api.conftest import LiveServer, ServerFactory
from tests.e2e.conftest import ProcessFactory, server_process
from tests.security.conftest import Tenants, served
from tests.waiting import eventually

__all__ = ["server_process"]

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}
DEFAULT_PER_KEY = Settings().max_streams_per_key
PARTIAL_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def sse_client(server: LiveServer, key: str | None) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    return server.client(key, limits=limits)


async def open_streams(
    stack: AsyncExitStack, client: httpx.AsyncClient, count: int
) -> list[httpx.Response]:
    """``count`` firehose streams held open by ``stack``; each one's response."""
    opened = []
    for _ in range(count):
        stream = client.stream("GET", "/v1/events", headers=SSE)
        opened.append(await stack.enter_async_context(stream))
    return opened


async def one_stream_status(client: httpx.AsyncClient) -> httpx.Response:
    """Open one more stream; a refusal's body is read, a stream is closed at once."""
    async with client.stream("GET", "/v1/events", headers=SSE) as response:
        if response.status_code != 200:
            await response.aread()
        return response


def assert_tenant_refusal(response: httpx.Response, cap: str, limit: int) -> None:
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == f"too_many_streams_{cap}"
    assert error["details"] == {"cap": cap, "limit": limit}
    assert cap.replace("_", "-") in error["message"]


async def test_a_key_past_its_stream_cap_gets_429_and_other_keys_still_stream(
    tenants: Tenants,
) -> None:
    server = tenants.server
    async with AsyncExitStack() as stack:
        greedy = await stack.enter_async_context(
            sse_client(server, tenants.key("org-a", Role.USER))
        )
        held = await open_streams(stack, greedy, DEFAULT_PER_KEY)
        assert all(response.status_code == 200 for response in held)
        assert_tenant_refusal(await one_stream_status(greedy), "per_key", DEFAULT_PER_KEY)
        for organization, role in (("org-a", Role.OPERATOR), ("org-b", Role.USER)):
            async with sse_client(server, tenants.key(organization, role)) as other:
                assert (await one_stream_status(other)).status_code == 200


async def test_an_organization_past_its_stream_cap_gets_429_and_another_still_streams(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(max_streams_per_organization=3, max_streams_per_key=2)
    first, second, third = [await server.key(Role.USER, "org-a") for _ in range(3)]
    async with AsyncExitStack() as stack:
        for key, count in ((first, 2), (second, 1)):
            client = await stack.enter_async_context(sse_client(server, key))
            assert all(r.status_code == 200 for r in await open_streams(stack, client, count))
        async with sse_client(server, third) as refused:
            assert_tenant_refusal(await one_stream_status(refused), "per_organization", 3)
        async with sse_client(server, await server.key(Role.USER, "org-b")) as other:
            assert (await one_stream_status(other)).status_code == 200


async def test_the_server_wide_stream_cap_stays_a_503(server_factory: ServerFactory) -> None:
    server = await server_factory(max_streams=2)
    keys = [await server.key(Role.USER, organization) for organization in ("org-a", "org-b")]
    async with AsyncExitStack() as stack:
        for key in keys:
            client = await stack.enter_async_context(sse_client(server, key))
            await open_streams(stack, client, 1)
        async with sse_client(server, await server.key(Role.USER, "org-c")) as late:
            refused = await one_stream_status(late)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "too_many_streams"


async def test_a_closed_stream_frees_its_place_under_the_key_cap(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(max_streams_per_key=1)
    async with sse_client(server, await server.key(Role.USER, "org-a")) as client:
        for _ in range(3):  # each stream ends before the next opens
            async with client.stream("GET", "/v1/events", headers=SSE) as response:
                assert response.status_code == 200
            await wait_for_no_streams(server)


async def wait_for_no_streams(server: LiveServer) -> None:
    await eventually(lambda: server.app.state.streams.open == 0)


async def create_outcomes(client: httpx.AsyncClient, count: int) -> list[httpx.Response]:
    return [await client.post("/v1/runs", json={"agent_id": "a"}) for _ in range(count)]


async def test_a_key_over_its_run_creation_rate_gets_429_and_another_key_does_not(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(run_create_rate=0.01)  # one run, then one per 100 s
    fast, other = await server.key(Role.USER, "org-a"), await server.key(Role.USER, "org-a")
    async with server.client(fast) as client, server.client(other) as second:
        outcomes = await create_outcomes(client, 5)
        unaffected = await create_outcomes(second, 1)
    assert [r.status_code for r in outcomes] == [201, 429, 429, 429, 429]
    refused = outcomes[1]
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limited"
    assert refused.json()["error"]["details"] == {"cap": "run_creation", "limit": 0.01}
    assert unaffected[0].status_code == 201
    async with server.client(fast) as client:
        listed = (await client.get("/v1/runs")).json()["items"]
    assert len(listed) == 2  # nothing was written for a refused request


async def test_a_key_over_its_append_rate_gets_429_and_another_key_does_not(
    server_factory: ServerFactory,
) -> None:
    server = await server_factory(append_rate=0.01)
    worker, other = await server.key(Role.OPERATOR, "org-a"), await server.key(Role.OPERATOR)
    body = {"events": [{"event_type": "custom.n", "payload": {}}]}
    async with server.client(worker) as client, server.client(other) as second:
        run_id = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        other_run = (await second.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        appends = [await client.post(f"/v1/runs/{run_id}/events", json=body) for _ in range(3)]
        unaffected = await second.post(f"/v1/runs/{other_run}/events", json=body)
    assert [r.status_code for r in appends] == [201, 429, 429]
    assert int(appends[1].headers["Retry-After"]) >= 1
    assert appends[1].json()["error"]["details"]["cap"] == "append"
    assert unaffected.status_code == 201


# -- the header deadline --------------------------------------------------------------------------


@asynccontextmanager
async def uvicorn_server(settings: Settings) -> AsyncIterator[int]:
    """A real uvicorn server built as ``runtrack serve`` builds it; its port."""
    async with served(settings) as server:
        yield server.port


async def closed_by_server(port: int, sent: bytes) -> bytes:
    """Connect, send ``sent`` (never finishing a request), and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)  # b"" once closed
    finally:
        writer.close()


def short_deadline(tmp_path: Path) -> Settings:
    """The header deadline concerns connections, not the store: SQLite is enough."""
    return Settings(database=str(tmp_path / "events.db"), header_timeout=0.5)


async def test_a_slowloris_connection_is_closed_by_the_header_deadline(tmp_path: Path) -> None:
    settings = short_deadline(tmp_path)
    async with uvicorn_server(settings) as port:
        assert await closed_by_server(port, PARTIAL_REQUEST) == b""
        assert await closed_by_server(port, b"") == b""  # connects and sends nothing
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/healthz")).status_code == 200


def content_length(head: bytes) -> int:
    lines = head.lower().split(b"\r\n")
    return int(next(line for line in lines if line.startswith(b"content-length:"))[15:])


async def test_a_kept_alive_connection_must_finish_its_next_headers_too(tmp_path: Path) -> None:
    async with uvicorn_server(short_deadline(tmp_path)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
            writer.write(PARTIAL_REQUEST)  # the next request never finishes its headers
            rest = await asyncio.wait_for(reader.read(), 30)
        finally:
            writer.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert rest == b""


async def test_a_stream_outlives_the_header_deadline(tmp_path: Path) -> None:
    async with (
        uvicorn_server(short_deadline(tmp_path)) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        run_id = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        async with client.stream("GET", f"/v1/runs/{run_id}/events", headers=SSE) as stream:
            assert await closed_by_server(port, PARTIAL_REQUEST) == b""  # a deadline passed
            body = {"events": [{"event_type": "custom.after", "payload": {}}]}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as writer:
                assert (await writer.post(f"/v1/runs/{run_id}/events", json=body)).is_success
            async for line in stream.aiter_lines():
                if line == "event: custom.after":
                    break


async def test_serve_with_processes_applies_the_header_deadline(
    server_process: ProcessFactory, postgres_schema_url: str
) -> None:
    server = await server_process(
        "--processes", "2", "--header-timeout", "0.5", database=postgres_schema_url
    )
    try:
        for _ in range(4):  # fresh connections land on either process
            assert await closed_by_server(server.port, PARTIAL_REQUEST) == b""
    finally:
        await server.signal(signal.SIGTERM)  # the children too (a SIGKILL would orphan them)


def test_the_openapi_document_declares_the_limits() -> None:
    paths = openapi_document(Settings().max_body_bytes)["paths"]
    for path, method in (
        ("/v1/runs", "post"),
        ("/v1/runs/{run_id}/events", "post"),
        ("/v1/runs/{run_id}/tool-results", "post"),
    ):
        assert "429" in paths[path][method]["responses"], (method, path)
    for path in ("/v1/events", "/v1/runs/{run_id}/events"):
        assert {"429", "503"} <= set(paths[path]["get"]["responses"]), path
