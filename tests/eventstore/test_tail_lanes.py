"""The live tail's lanes are kept per channel kind only while a stream of the kind needs them,
and a kind's lanes built late (from a buffer that filled without them) answer every stream
exactly: its events, no gap, no duplicate, with appenders and streams of every kind racing."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from eventstore import AgentEvent, EventFilter, Visibility
from eventstore.tail import Broadcaster
from tests.conftest import StoreFactory

from .helpers import ORG, all_events, collect, custom, new_run
from .test_tail import tick

pytestmark = pytest.mark.anyio

OTHER_ORG = "org-other"
WATCHERS = 4  # few enough that a kind often goes a buffer's worth without a stream


def spread(event_id: int) -> AgentEvent:
    """Event ``event_id`` on one of 7 runs, 3 conversations and 2 organizations."""
    return replace(
        tick(event_id),
        run_id=f"run-{event_id % 7}",
        conversation_id=f"conv-{event_id % 3}",
        organization_id=f"org-{event_id % 2}",
    )


async def test_a_kinds_lanes_exist_only_while_a_stream_of_the_kind_is_open() -> None:
    broadcaster = Broadcaster(0, capacity=100)
    assert broadcaster.publish([spread(n) for n in range(1, 51)], 0)
    assert (broadcaster.indexed_kinds, broadcaster.index_size) == ([], (0, 0))  # none filed

    first = broadcaster.register(("run", "run-2"))
    second = broadcaster.register(("run", "run-4"))
    assert broadcaster.indexed_kinds == ["run"]
    assert broadcaster.index_size == (7, 50)  # built from the buffer: every run's lane
    assert broadcaster.publish([spread(51)], 50)  # on run-2
    assert first.event.is_set()
    assert not second.event.is_set()
    broadcaster.unregister(first)
    assert broadcaster.publish([spread(n) for n in range(52, 200)], 51)
    assert broadcaster.indexed_kinds == ["run"]  # one stream of the kind is still open

    broadcaster.unregister(second)
    assert broadcaster.publish([spread(n) for n in range(200, 224)], 199)
    assert broadcaster.indexed_kinds == ["run"]  # kept for a quarter of the buffer (25 events)
    again = broadcaster.register(("run", "run-1"))  # a dashboard reconnects: still kept
    broadcaster.unregister(again)
    assert broadcaster.publish([spread(n) for n in range(224, 248)], 223)
    assert broadcaster.indexed_kinds == ["run"]
    assert broadcaster.publish([spread(248)], 247)  # the 25th event since the last stream
    assert (broadcaster.indexed_kinds, broadcaster.index_size) == ([], (0, 0))
    broadcaster.close()


async def test_the_firehose_and_each_kind_wake_whatever_lanes_are_kept() -> None:
    broadcaster = Broadcaster(0, capacity=100)
    firehose = broadcaster.register(("all",))
    assert broadcaster.indexed_kinds == []  # the firehose's lane is the buffer itself
    assert broadcaster.publish([spread(1)], 0)
    assert firehose.event.is_set()
    firehose.event.clear()
    conversation = broadcaster.register(("conversation", "conv-2"))
    assert broadcaster.publish([spread(2)], 1)  # conv-2
    assert firehose.event.is_set()
    assert conversation.event.is_set()
    broadcaster.close()


async def test_lanes_built_while_a_catch_up_reads_stay_equal_to_the_buffer() -> None:
    """A stream opens while ``catch_up`` awaits its read and a publish lands meanwhile."""
    log = [spread(n) for n in range(1, 301)]
    reading = asyncio.Event()
    resume = asyncio.Event()

    async def read_after(after: int, limit: int) -> list[AgentEvent]:
        reading.set()
        await resume.wait()
        return log[after : after + limit]

    broadcaster = Broadcaster(0, capacity=40)
    assert broadcaster.publish(log[:100], 0)
    assert not broadcaster.publish(log[200:210], 200)  # a gap: catch up from the database
    catching_up = asyncio.ensure_future(broadcaster.catch_up(read_after, 300))
    await reading.wait()
    waiter = broadcaster.register(("conversation", "conv-1"))  # built from the buffer as it is
    assert broadcaster.publish(log[100:120], 100)  # a publish while the read is out
    resume.set()
    await catching_up
    assert broadcaster.last_id == 300
    buffered = [e for e in log if broadcaster.covers(e.id - 1)]
    page = broadcaster.since(buffered[0].id - 1, EventFilter(conversation_id="conv-1"))
    assert page.events == [e for e in buffered if e.conversation_id == "conv-1"]
    assert broadcaster.index_size == (3, len(buffered))
    broadcaster.unregister(waiter)
    broadcaster.close()


def kinds_of(org: str, run: str, conversation: str) -> list[EventFilter]:
    level = Visibility.INTERNAL
    return [
        EventFilter(org, run_id=run, visibility=level),
        EventFilter(org, conversation_id=conversation, visibility=level),
        EventFilter(org, visibility=level),
        EventFilter(visibility=level),  # the firehose
    ]


def matching(events: list[AgentEvent], flt: EventFilter, after: int, upto: int) -> list[int]:
    return [e.id for e in events if after < e.id <= upto and flt.matches(e)]


async def test_a_stream_opened_after_many_buffered_events_gets_exactly_its_own(
    store_factory: StoreFactory,
) -> None:
    async with store_factory(tail_capacity=5_000) as store:
        for n in range(12):
            org = ORG if n % 3 else OTHER_ORG
            await new_run(store, f"run-{n}", conversation_id=f"conv-{n % 4}", org=org)
        for n in range(150):
            run = n % 12
            batch = [custom(n * 10 + k) for k in range(10)]
            await store.append(ORG if run % 3 else OTHER_ORG, f"run-{run}", batch)
        assert store.indexed_channel_kinds == []  # 1,512 events buffered, no lane filed
        head = await store.head()
        for cursor in (0, 700, head - 3):
            for flt in kinds_of(ORG, "run-5", "conv-1"):
                live = asyncio.ensure_future(collect(store, flt, cursor, head + 4))
                await asyncio.sleep(0)  # let it open (and build its kind's lanes) first
                for n in (1, 9, 8, 5):  # the last on run-5: every stream is woken by it
                    await store.append(ORG if n % 3 else OTHER_ORG, f"run-{n}", [custom(n)])
                log = await all_events(store)
                assert [e.id for e in await live] == matching(log, flt, cursor, head + 4)
                head = await store.head()


async def test_streams_of_each_kind_open_and_close_under_concurrent_appenders(
    store_factory: StoreFactory,
) -> None:
    """24 appenders write while 4 watchers open streams of every kind, each from a random
    cursor until it passes a random later point, again and again: with a buffer of 64 events,
    lanes are built, trimmed and dropped throughout, and every stream gets exactly its events
    (a last event on every run wakes the streams still waiting when the appenders are done)."""
    rng = random.Random(16)
    runs = [(ORG if n % 3 else OTHER_ORG, f"run-{n}", f"conv-{n % 5}") for n in range(16)]
    per_appender, appenders = 40, 24
    async with store_factory(tail_capacity=64) as store:
        for org, run, conversation in runs:
            await new_run(store, run, conversation_id=conversation, org=org)
        total = len(runs) + per_appender * appenders

        async def appender(k: int) -> None:
            org, run, _ = runs[k % len(runs)]
            for n in range(per_appender):
                await store.append(org, run, [custom(n)])
                if rng.random() < 0.3:
                    await asyncio.sleep(0)

        async def watcher() -> list[tuple[EventFilter, int, int, list[AgentEvent]]]:
            seen = []
            while (head := await store.head()) < total:
                org, run, conversation = rng.choice(runs)
                flt = rng.choice(kinds_of(org, run, conversation))
                cursor = rng.randint(max(0, head - 100), head)
                until = rng.randint(head, min(total, head + 60))
                seen.append((flt, cursor, until, await collect(store, flt, cursor, until)))
            return seen

        async def appenders_then_one_event_per_run() -> None:
            await asyncio.gather(*(appender(k) for k in range(appenders)))
            for org, run, _ in runs:  # touches every channel: a quiet stream learns the head
                await store.append(org, run, [custom(-1)])

        results = await asyncio.gather(
            *(watcher() for _ in range(WATCHERS)), appenders_then_one_event_per_run()
        )
        log = await all_events(store)
        opened = 0
        for seen in results[:WATCHERS]:
            for flt, cursor, until, received in seen:  # type: ignore[union-attr]
                upto = max(until, received[-1].id if received else cursor)
                assert [e.id for e in received] == matching(log, flt, cursor, upto)
                opened += 1
        assert opened >= 4 * WATCHERS
        assert store.subscriber_count == 0
        for n in range(16):  # a quarter of the buffer's events with no stream open
            await store.append(ORG, "run-1", [custom(n)])
        assert store.indexed_channel_kinds == []
