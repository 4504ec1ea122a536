"""What one HTTP connection is held to (api/server/transport/protocol.py): a bounded request
head (431, 414) and a deadline for a request's body, against real uvicorn servers spoken to over
raw sockets.

These tests also guard the uvicorn internals the protocol overrides: if uvicorn stopped calling
a hook (a parser callback, ``data_received``, ``send_400_response``), one of them fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import httpx
import pytest

from api.server.auth import Role
from api.server.settings import Settings
from tests.e2e.conftest import ProcessFactory, server_process
from tests.security.conftest import served

__all__ = ["server_process"]

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
PARTIAL_REQUEST = HEAD + b"X-Slow: "
SLOW_BODY = (
    b"POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000000\r\n\r\n"
)


def small_limits(tmp_path: Path, **options: float) -> Settings:
    """Limits small enough to reach quickly; the store is beside the point: SQLite."""
    limits: dict[str, float] = {"max_header_bytes": 4096, "max_headers": 20, "body_timeout": 0.5}
    return Settings(database=str(tmp_path / "events.db"), **{**limits, **options})  # type: ignore[arg-type]


async def until_closed(port: int, sent: bytes) -> bytes:
    """Connect, send ``sent``, and read everything until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


def padded(size: int) -> bytes:
    return b"X-Pad: " + b"a" * size + b"\r\n"


@pytest.mark.parametrize("finished", [True, False], ids=["complete head", "unfinished value"])
async def test_an_oversize_head_gets_431_and_the_connection_closes(
    tmp_path: Path, finished: bool
) -> None:
    head = HEAD + padded(5000) + (b"\r\n" if finished else b"")
    async with served(small_limits(tmp_path)) as server:
        answer = await until_closed(server.port, head)
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).status_code == 200  # the server goes on
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b"a request's headers take at most 4096 bytes")


async def test_a_head_of_many_small_fields_gets_431(tmp_path: Path) -> None:
    fields = b"".join(b"X-F%d: 1\r\n" % number for number in range(30))
    async with served(small_limits(tmp_path)) as server:
        answer = await until_closed(server.port, HEAD + fields + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert answer.endswith(b"a request has at most 20 header fields")


async def test_an_oversize_url_gets_414(tmp_path: Path) -> None:
    request_line = b"GET /healthz?pad=" + b"a" * 5000 + b" HTTP/1.1\r\n"
    async with served(small_limits(tmp_path)) as server:
        answer = await until_closed(server.port, request_line + b"Host: 127.0.0.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 414 ")


ATTACKS = {
    "1 MB URL": (b"GET /healthz?pad=" + b"a" * 1_000_000 + b" HTTP/1.1\r\n\r\n", 414),
    "4 fields of 1 MiB": (HEAD + padded(1_048_576) * 4 + b"\r\n", 431),
    "200,000 small fields": (HEAD + b"X-F: 1\r\n" * 200_000 + b"\r\n", 431),
}


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
async def test_the_default_limits_refuse_the_attacks(
    tmp_path: Path, attack: tuple[bytes, int]
) -> None:
    """The answer arrives although the client is still sending when the server refuses."""
    sent, status = attack
    async with served(Settings(database=str(tmp_path / "events.db"))) as server:
        answer = await until_closed(server.port, sent)
    assert answer.startswith(b"HTTP/1.1 %d " % status)


async def test_the_default_head_limit_holds_a_large_but_sane_head(tmp_path: Path) -> None:
    fields = {f"x-f{number}": "v" * 500 for number in range(90)}  # 45 KB in 90 fields
    async with (
        served(Settings(database=str(tmp_path / "events.db"))) as server,
        httpx.AsyncClient(base_url=server.url) as client,
    ):
        assert (await client.get("/healthz", headers=fields)).status_code == 200


async def send_slowly(writer: asyncio.StreamWriter) -> None:
    """Trickle a body, ten bytes at a time, until the server goes away."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(b'{"agent":"')
            await writer.drain()
            await asyncio.sleep(0.1)  # the pace of the attack, not a synchronisation


async def closed_while_trickling(port: int, head: bytes) -> bytes:
    """Send ``head``, then trickle its body; what the server answered before it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    trickle = asyncio.create_task(send_slowly(writer))
    try:
        writer.write(head)
        return await asyncio.wait_for(read_until_closed(reader), 30)
    finally:
        trickle.cancel()
        writer.close()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What arrived before the server closed; a close with the client's bytes still unread is a
    reset, which ends the connection as well."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def trickle_line_ends(writer: asyncio.StreamWriter) -> None:
    """Empty lines between requests, which HTTP allows, each resetting uvicorn's idle timer."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)  # the pace of the attack, not a synchronisation


async def test_line_ends_after_a_request_do_not_escape_the_header_deadline(
    tmp_path: Path,
) -> None:
    async with served(small_limits(tmp_path, header_timeout=0.5)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(HEAD + b"\r\n")
        trickle = asyncio.create_task(trickle_line_ends(writer))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            rest = await asyncio.wait_for(read_until_closed(reader), 30)  # body, then close
        finally:
            trickle.cancel()
            writer.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert rest.endswith(b"}")


async def test_a_slow_body_is_cut_at_the_body_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runtrack.http")
    async with served(small_limits(tmp_path)) as server:
        assert await closed_while_trickling(server.port, SLOW_BODY) == b""
    assert "no complete request body within 0.5 s" in caplog.text
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_an_early_401_does_not_keep_a_connection_with_an_unread_body(
    tmp_path: Path,
) -> None:
    async with served(small_limits(tmp_path)) as server:
        await server.app.state.keys.create("org-a", Role.USER, name="closes open mode")
        answer = await closed_while_trickling(server.port, SLOW_BODY)
    assert answer.startswith(b"HTTP/1.1 401 ")


async def test_a_stream_outlives_the_header_and_body_deadlines(tmp_path: Path) -> None:
    settings = small_limits(tmp_path, header_timeout=0.5)
    async with (
        served(settings) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        run_id = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        async with client.stream("GET", f"/v1/runs/{run_id}/events", headers=SSE) as stream:
            assert await until_closed(server.port, PARTIAL_REQUEST) == b""  # both deadlines
            assert await closed_while_trickling(server.port, SLOW_BODY) == b""  # have passed
            body = {"events": [{"event_type": "custom.after", "payload": {}}]}
            async with httpx.AsyncClient(base_url=server.url) as writer:
                assert (await writer.post(f"/v1/runs/{run_id}/events", json=body)).is_success
            async for line in stream.aiter_lines():
                if line == "event: custom.after":
                    break


async def test_a_body_of_the_largest_accepted_size_still_uploads(tmp_path: Path) -> None:
    settings = Settings(database=str(tmp_path / "events.db"))
    payload = {"text": "x" * (settings.max_body_bytes - 200)}
    events = {"events": [{"event_type": "custom.big", "payload": payload}]}
    async with (
        served(settings) as server,
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
    ):
        run_id = (await client.post("/v1/runs", json={"agent_id": "a"})).json()["id"]
        response = await client.post(f"/v1/runs/{run_id}/events", json=events)
    assert response.is_success, response.text


async def test_serve_flags_set_the_head_limits(server_process: ProcessFactory) -> None:
    server = await server_process("--max-headers", "5", "--max-header-bytes", "2048")
    try:
        many = b"".join(b"X-F%d: 1\r\n" % number for number in range(6))
        assert (await until_closed(server.port, HEAD + many + b"\r\n")).startswith(b"HTTP/1.1 431")
        large = HEAD + padded(3000) + b"\r\n"
        assert (await until_closed(server.port, large)).startswith(b"HTTP/1.1 431")
    finally:
        await server.stop()
