"""What only the PostgreSQL backend has: the cross-server id lock, NOTIFY, locked migrations."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from eventstore import (
    AgentEvent,
    EventFilter,
    WriteContext,
    open_store,
    prepare_append,
)
from eventstore.postgres import MIGRATIONS
from tests.conftest import require_postgres
from tests.waiting import eventually

from .helpers import ORG, all_events, custom, new_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def url(postgres_schema_url: str) -> str:
    require_postgres()
    return postgres_schema_url


def waiting_on_the_log_lock(url: str) -> bool:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%log_head FOR UPDATE%'"
        ).fetchone()
    return bool(row and row[0] > 0)


async def test_a_later_commit_never_overtakes_an_earlier_id(url: str) -> None:
    """Writer A holds its transaction after taking an id; writer B must wait, never skip it."""
    async with open_store(url) as store_a, open_store(url) as store_b, open_store(url) as tailer:
        await new_run(store_a, "run-a")
        holding, release = threading.Event(), threading.Event()
        request = prepare_append(ORG, "run-a", [custom(1)])

        def slow_unit(context: WriteContext) -> list[AgentEvent]:
            events = context.append(request)
            holding.set()
            release.wait(30)
            return events

        received: list[int] = []

        async def tail() -> None:
            async for page in tailer.subscribe(EventFilter(ORG), after=0):
                received.extend(e.id for e in page.events)
                if len(received) >= 3:
                    return

        tailing = asyncio.ensure_future(tail())
        a = asyncio.ensure_future(store_a.transact(slow_unit))
        await asyncio.get_running_loop().run_in_executor(None, holding.wait, 30)
        b = asyncio.ensure_future(store_b.append(ORG, "run-a", [custom(2)]))
        await eventually(lambda: waiting_on_the_log_lock(url), within=10)
        assert not b.done()
        release.set()
        a_events, b_events = await a, await b
        await asyncio.wait_for(tailing, 10)
    assert a_events[0].id < b_events[0].id
    assert received == [1, a_events[0].id, b_events[0].id]


async def test_two_stores_see_each_others_appends_live(url: str) -> None:
    async with open_store(url) as writer, open_store(url, poll_interval=30) as reader:
        await new_run(writer, "run-a")
        stream = reader.subscribe(EventFilter(ORG), after=0)
        first = await anext(stream)
        assert [e.id for e in first.events] == [1]
        pending = asyncio.ensure_future(anext(stream))
        await writer.append(ORG, "run-a", [custom(1)])
        page = await asyncio.wait_for(pending, 10)  # woken by NOTIFY, not by the 30 s poll
        assert [e.id for e in page.events] == [2]
        await stream.aclose()
        assert len(await all_events(reader)) == 2


async def test_a_migration_waits_for_a_write_in_flight_without_deadlock(url: str) -> None:
    """A server starting on a database one migration behind, while another server's write
    group is between its row lock and its use of the events table: the migration waits for
    that group, which runs once and commits (the other lock order can deadlock)."""
    async with open_store(url) as older:
        await new_run(older, "run-a")

        def back_to_version_1(context: WriteContext) -> None:
            context.tx.execute("ALTER TABLE events DROP COLUMN plain_names")
            context.tx.execute("DELETE FROM schema_migrations WHERE version = 2")

        await older.transact(back_to_version_1)
        holding, release = threading.Event(), threading.Event()
        attempts: list[int] = []

        def group_in_flight(context: WriteContext) -> int:
            attempts.append(1)
            holding.set()
            release.wait(30)
            rows = context.tx.fetchall("SELECT count(*) FROM events")
            return int(rows[0][0])

        write = asyncio.create_task(older.transact(group_in_flight))
        await asyncio.to_thread(holding.wait, 30)
        newer = open_store(url)
        opening = asyncio.create_task(newer.open())
        await eventually(lambda: waiting_on_the_log_lock(url), within=10)
        release.set()
        assert await write == 1
        await opening
        await newer.aclose()
    assert attempts == [1]
    with psycopg.connect(url) as connection:
        versions = connection.execute("SELECT version FROM schema_migrations ORDER BY 1")
        assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]
