"""An archived prefix over real HTTP: 410 for expired cursors of every kind, archived runs
still readable (from the segments with ``--archive-dir``, else a 410 naming the segment), and
retention on the leader's schedule. Both backends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.server.openapi import openapi_document
from api.server.replay import PAGE
from api.server.runner import check_settings
from api.server.settings import Settings
from api.server.sse import Channel, frames
from eventstore import CursorExpired, EventFilter, EventStore
from projections import archive
from tests.api.conftest import LiveServer, ServerFactory
from tests.api.server.test_runs import append, claim, create, status
from tests.conftest import StoreFactory
from tests.eventstore.helpers import ORG, created, custom

pytestmark = pytest.mark.anyio
SSE = {"Accept": "text/event-stream"}


async def finished_run(client: httpx.AsyncClient, conversation: str) -> dict[str, Any]:
    run = await create(client, conversation_id=conversation, message="hello")
    claimed = await claim(client)
    assert claimed["run"]["id"] == run["id"]
    message = {"event_type": "message_created", "payload": {"role": "assistant", "content": "hi"}}
    response = await append(client, run["id"], message, status(stop_reason="end_turn"))
    assert response.status_code == 201, response.text
    return run


def store_of(server: LiveServer) -> EventStore:
    store: EventStore = server.app.state.store
    return store


async def archived_server(
    server_factory: ServerFactory, tmp_path: Path
) -> tuple[LiveServer, str, int]:
    """A server with ``--archive-dir``, an archived finished run, and a live run after it."""
    server = await server_factory(archive_dir=str(tmp_path / "archive"))
    async with server.client() as client:
        run = await finished_run(client, "old")
        report = await archive(
            store_of(server), await store_of(server).head(), tmp_path / "archive"
        )
        await create(client, conversation_id="new")
    return server, run["id"], report.cut


async def test_expired_cursors_answer_410_and_no_cursor_starts_at_the_oldest(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server, _, cut = await archived_server(server_factory, tmp_path)
    async with server.client() as client:
        for url, headers in [
            ("/v1/events?after_event_id=1", {}),
            ("/v1/events?after_event_id=1", SSE),
            ("/v1/events", {**SSE, "Last-Event-ID": "1"}),
            ("/v1/conversations/new/agent-events?after_event_id=1", SSE),
            ("/v1/audit/export?after_event_id=1", {}),
        ]:
            response = await client.get(url, headers=headers)
            assert response.status_code == 410, (url, headers, response.text)
            error = response.json()["error"]
            assert error["code"] == "cursor_expired"
            assert error["details"]["oldest_event_id"] == cut + 1
            assert response.headers["Runtrack-Oldest-Event-Id"] == str(cut + 1)
        for after in ("", "?after_event_id=0", f"?after_event_id={cut}"):
            for path in ("/v1/events", "/v1/audit/export"):
                page = (await client.get(f"{path}{after}")).json()
                assert page["items"][0]["id"] == cut + 1, (path, after)


async def test_an_archived_run_is_read_from_the_segments(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server, run_id, cut = await archived_server(server_factory, tmp_path)
    async with server.client() as client:
        run = (await client.get(f"/v1/runs/{run_id}")).json()
        assert run["status"] == "completed"
        listed = (await client.get("/v1/runs", params={"status": "completed"})).json()
        assert [r["id"] for r in listed["items"]] == [run_id]
        page = (await client.get(f"/v1/runs/{run_id}/events")).json()
        assert [e["sequence"] for e in page["items"]] == list(range(1, len(page["items"]) + 1))
        assert page["items"][-1]["id"] <= cut
        assert page["position"] == cut
        messages = (await client.get(f"/v1/runs/{run_id}/messages")).json()["items"]
        assert [m["content"] for m in messages] == ["hello", "hi"]
        stream = await client.get(f"/v1/runs/{run_id}/events", headers=SSE)
        assert stream.status_code == 410
        assert stream.json()["error"]["details"]["segment"].startswith("events-000000000001-")
        stream = await client.get(f"/v1/runs/{run_id}/events?after_sequence=1", headers=SSE)
        assert stream.status_code == 410
        ended = await client.get(f"/v1/runs/{run_id}/events?after_event_id={cut}", headers=SSE)
        assert ended.status_code == 204


async def test_a_server_without_the_segments_names_them(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """A second server on the database (started before the archive: on PostgreSQL, another
    server follows the new oldest id) with no ``--archive-dir``."""
    other = await server_factory()
    async with other.client() as client:
        assert (await client.get("/v1/events")).status_code == 200
    server, run_id, cut = await archived_server(server_factory, tmp_path)
    async with server.client() as owner, other.client() as client:
        expired = await client.get("/v1/events?after_event_id=1", headers=SSE)
        assert expired.status_code == 410
        assert expired.headers["Runtrack-Oldest-Event-Id"] == str(cut + 1)
        assert (await client.get("/v1/events")).json()["items"][0]["id"] == cut + 1
        assert (await client.get(f"/v1/runs/{run_id}")).json()["status"] == "completed"
        for path in ("events", "messages", "usage", "journal", "tool-results"):
            response = await client.get(f"/v1/runs/{run_id}/{path}")
            assert response.status_code == 410, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "run_archived"
            assert error["details"]["segment"] in error["message"]
            assert (await owner.get(f"/v1/runs/{run_id}/{path}")).status_code == 200


async def test_retention_archives_on_the_leaders_schedule(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """``--retain 1s``: the leader archives the finished run once it is a second old."""
    server = await server_factory(
        archive_dir=str(tmp_path / "archive"), retain="1s", archive_interval=0.2
    )
    async with server.client() as client:
        run = await finished_run(client, "old")
        last = (await client.get(f"/v1/runs/{run['id']}")).json()["last_event_id"]
        store = store_of(server)

        async def archived() -> None:
            # retention runs on a timer, and nothing signals its pass
            while (anchor := await store.anchor()) is None or anchor.cut_id < last:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        await asyncio.wait_for(archived(), 10)
        assert list((tmp_path / "archive").glob("*.manifest.json"))
        messages = await client.get(f"/v1/runs/{run['id']}/messages")
        assert [m["content"] for m in messages.json()["items"]] == ["hello", "hi"]


async def test_a_replay_overtaken_by_an_archive_ends_instead_of_skipping(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    """A firehose replaying from the database when an archive cuts past its cursor ends after
    the page it had (the reconnect from its cursor then gets 410), never sending a gap."""
    async with store_factory(tail_capacity=10) as store:
        for n in range(3):
            await store.append(ORG, f"run-{n}", [created()], conversation_id="c")
            await store.append(ORG, f"run-{n}", [custom(i) for i in range(PAGE)])
        stream = frames(store, Channel(EventFilter(), 0), retry_ms=1000, heartbeat=60)
        chunks = [await anext(stream), await anext(stream)]
        sent = [
            int(line[4:])
            for line in b"".join(chunks).decode().splitlines()
            if line.startswith("id: ")
        ]
        assert sent[-1] == PAGE
        await store.archive_through(PAGE + 500, tmp_path / "archive")
        with pytest.raises(StopAsyncIteration):  # not the next page, from past the cut
            await asyncio.wait_for(anext(stream), 10)
        with pytest.raises(CursorExpired):
            await store.check_cursor(sent[-1])


def test_retention_needs_an_archive_dir_and_an_age() -> None:
    check_settings(Settings(retain="30d", archive_dir="/tmp/archive"))
    with pytest.raises(ValueError, match="--retain needs --archive-dir"):
        check_settings(Settings(retain="30d"))
    with pytest.raises(ValueError, match="whole number and a unit"):
        check_settings(Settings(retain="a month", archive_dir="/tmp/archive"))


def test_openapi_lists_the_410_and_its_header() -> None:
    document = openapi_document(1024)
    paths = ("/v1/events", "/v1/runs/{run_id}/events", "/v1/runs/{run_id}/messages")
    for path in (*paths, "/v1/audit/export"):
        gone = document["paths"][path]["get"]["responses"]["410"]
        assert "Runtrack-Oldest-Event-Id" in gone["headers"]
