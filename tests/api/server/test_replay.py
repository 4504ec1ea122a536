"""A stream's replay from the database, with one read at a time and with several at once."""

from __future__ import annotations

import asyncio
import logging
import re
from contextlib import aclosing

import anyio
import pytest

from api.server.replay import AHEAD, PAGE, Replay
from eventstore import EventFilter, NewEvent, encode_event
from tests.conftest import StoreFactory
from tests.waiting import eventually

pytestmark = pytest.mark.anyio
DATA_ID = re.compile(r"^id: (\d+)\nevent: ", re.MULTILINE)
ID_ONLY = re.compile(r"^id: \d+\n\n", re.MULTILINE)
"""Blocks that move the client's cursor past events the filter left out."""


async def fill(store_factory: StoreFactory, events: int) -> None:
    async with store_factory() as store:
        await store.append(
            "org", "run-a", [NewEvent("run_created", {"agent_id": "a"})], conversation_id="c"
        )
        await store.append(
            "org", "run-b", [NewEvent("run_created", {"agent_id": "b"})], conversation_id="d"
        )
        for start in range(0, events, 500):
            await store.append("org", "run-a", [NewEvent("custom.n", {"n": start})] * 250)
            await store.append("org", "run-b", [NewEvent("custom.n", {"n": start})] * 250)


@pytest.mark.parametrize("readers", [1, 4])
async def test_pages_read_one_or_several_at_once_carry_the_log_in_order(
    store_factory: StoreFactory, readers: int
) -> None:
    await fill(store_factory, PAGE * 3 + 500)
    async with store_factory(readers=readers) as store:
        assert store.parallel_reads == min(readers, 3)
        for flt in (EventFilter(organization_id="org"), EventFilter(run_id="run-b")):
            expected = (await store.read(flt, after=3, limit=10 * PAGE)).events
            pages = [page async for page in Replay(store, flt, 3).pages()]
            text = b"".join(page.chunk for page in pages).decode()
            assert [int(i) for i in DATA_ID.findall(text)] == [e.id for e in expected]
            assert ID_ONLY.sub("", text) == "".join(encode_event(e) for e in expected)
            positions = [page.position for page in pages]
            assert positions == sorted(set(positions))  # strictly increasing
            assert positions[-1] == await store.head()


async def test_a_consumer_that_stops_taking_pages_stops_the_reads(
    store_factory: StoreFactory,
) -> None:
    """A stream whose client stops reading holds its current page and AHEAD more, at most."""
    await fill(store_factory, PAGE * 12)
    async with store_factory(readers=4) as store:
        replay = Replay(store, EventFilter(organization_id="org"), 0)
        async with aclosing(replay.pages()) as pages:
            await anext(pages)
            await eventually(lambda: replay.pages_framed >= 1 + AHEAD)
            await asyncio.sleep(0.3)  # time for a reader that ignored its credits to read on
            assert replay.pages_framed == 1 + AHEAD
            await anext(pages)  # taking a page gives one credit back: one more page is read
            await eventually(lambda: replay.pages_framed >= 2 + AHEAD)
            await asyncio.sleep(0.3)
            assert replay.pages_framed == 2 + AHEAD
            rest = [page async for page in pages]
        assert len(rest) + 2 == replay.pages_framed >= 12


async def test_a_stream_cancelled_like_sse_starlette_stops_its_reads_cleanly(
    store_factory: StoreFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client leaving mid-replay: sse-starlette cancels the stream's anyio scope, which
    cancels the task again on every loop turn. The reads in flight are cancelled once, so the
    database connections they hold survive (psycopg closes one cancelled twice). A cancel
    that a wait for a pooled connection swallowed still stops the reader (stop_requested)."""
    await fill(store_factory, PAGE * 8)
    async with store_factory(readers=4) as store:
        for _ in range(5):
            taken = 0
            with caplog.at_level(logging.WARNING):
                async with anyio.create_task_group() as streams:

                    async def stream() -> None:
                        nonlocal taken
                        replay = Replay(store, EventFilter(organization_id="org"), 0)
                        async with aclosing(replay.pages()) as pages:
                            async for _page in pages:
                                taken += 1
                                streams.cancel_scope.cancel()  # the client has gone

                    streams.start_soon(stream)
            assert taken == 1
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert (await store.read(EventFilter(), after=0, limit=1)).events
