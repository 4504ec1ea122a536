"""The broadcaster: wake-ups coalesced under load, a window that grows with subscribers, and
the channel index, which must answer every page as a scan of the whole log would."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import AgentEvent, EventFilter, EventPage, Visibility
from eventstore.tail import (
    KEEP_UNWATCHED_DIVISOR,
    MEMO_PAGES,
    WAKE_BATCH,
    Broadcaster,
    _Waiter,
    channel_of,
)

pytestmark = pytest.mark.anyio


def tick(event_id: int) -> AgentEvent:
    return AgentEvent(
        id=event_id,
        organization_id="org",
        run_id="run-1",
        conversation_id="conv-1",
        sequence=event_id,
        event_type="custom.tick",
        visibility="operator",
        payload_json="{}",
        created_at="2026-11-26T00:00:00.000000Z",
        prev_hash="",
        hash="h",
    )


async def test_commits_within_the_window_wake_subscribers_once_at_its_end() -> None:
    broadcaster = Broadcaster(0, linger=0.05)
    waiter = broadcaster.register(("all",))
    assert broadcaster.publish([tick(1)], 0)
    assert waiter.event.is_set()  # the first commit after a quiet spell wakes at once
    waiter.event.clear()
    assert broadcaster.publish([tick(2)], 1)
    assert not waiter.event.is_set()  # within the window: deferred to its end
    await waiter.event.wait()
    assert broadcaster.last_id == 2
    broadcaster.close()


async def test_the_window_grows_with_the_subscribers_a_wake_reached() -> None:
    broadcaster = Broadcaster(0, linger=0.05, wake_budget=100)
    waiters = [broadcaster.register(("run", "run-1")) for _ in range(50)]
    broadcaster.register(("run", "run-other"))  # not woken, not counted
    assert broadcaster.publish([tick(1)], 0)
    assert all(w.event.is_set() for w in waiters)
    assert broadcaster.wake_window == pytest.approx(0.5)  # 50 wakes at 100 per second

    quiet = Broadcaster(0, linger=0.05, wake_budget=100)
    quiet.register(("run", "run-1"))
    assert quiet.publish([tick(1)], 0)
    assert quiet.wake_window == pytest.approx(0.05)  # never below the linger
    broadcaster.close()
    quiet.close()


async def test_a_wake_reaching_thousands_is_spread_over_loop_turns() -> None:
    broadcaster = Broadcaster(0)
    waiters = [broadcaster.register(("all",)) for _ in range(WAKE_BATCH * 2 + 10)]
    assert broadcaster.publish([tick(1)], 0)
    assert sum(w.event.is_set() for w in waiters) == WAKE_BATCH  # the rest on later turns
    for waiter in waiters:
        await waiter.event.wait()  # every one is woken in the end
    broadcaster.close()


async def test_live_pages_are_bounded_and_shared_without_holding_memory() -> None:
    broadcaster = Broadcaster(0)
    assert broadcaster.publish([tick(n) for n in range(1, 2501)], 0)
    everything = EventFilter()
    first = broadcaster.since(0, everything, 1000)
    assert ([e.id for e in first.events][-1], first.position) == (1000, 1000)
    last = broadcaster.since(2000, everything, 1000)
    assert (len(last.events), last.position) == (500, 2500)
    assert broadcaster.since(0, everything, 1000) is first  # streams at one cursor share it

    for cursor in range(2400, 2400 + MEMO_PAGES):
        broadcaster.since(cursor, everything, 1000)
    beyond = 2400 + MEMO_PAGES
    assert broadcaster.since(beyond, everything, 1000) is not broadcaster.since(
        beyond, everything, 1000
    )  # the memo is full: pages past it are built for each caller and freed after use

    assert broadcaster.publish([tick(2501)], 2500)
    assert broadcaster.since(0, everything, 1000) is not first  # the memo ends with the wake
    broadcaster.close()


# The channel index: ``since`` must answer exactly what a scan of every committed event answers.

RUNS, CONVERSATIONS, ORGANIZATIONS = ("r1", "r2", "r3"), ("c1", "c2"), ("o1", "o2")
LEVELS = tuple(Visibility)
Names = tuple[str, str, str, Visibility]

names = st.tuples(
    st.sampled_from(RUNS),
    st.sampled_from(CONVERSATIONS),
    st.sampled_from(ORGANIZATIONS),
    st.sampled_from(LEVELS),
)
filters = st.builds(
    EventFilter,
    organization_id=st.none() | st.sampled_from(ORGANIZATIONS),
    run_id=st.none() | st.sampled_from(RUNS),
    conversation_id=st.none() | st.sampled_from(CONVERSATIONS),
    visibility=st.sampled_from(LEVELS),
)
CHANNELS = (
    *(("run", name) for name in RUNS),
    *(("conversation", name) for name in CONVERSATIONS),
    *(("organization", name) for name in ORGANIZATIONS),
    ("all",),
)
Step = tuple[str, list[Names]]
steps: st.SearchStrategy[Step] = st.one_of(
    st.tuples(st.just("publish"), st.lists(names, min_size=1, max_size=6)),
    st.tuples(st.just("foreign"), st.lists(names, min_size=1, max_size=6)),
    st.tuples(st.just("catch_up"), st.just([])),
    st.tuples(st.just("look"), st.just([])),  # the checks' pages (a page may build lanes)
    st.tuples(st.sampled_from([f"open {n}" for n in range(len(CHANNELS))]), st.just([])),
    st.tuples(st.just("close"), st.just([])),  # the oldest open stream ends
)


class Log:
    """The committed events, as the database holds them: what the broadcaster must agree with."""

    def __init__(self, committed: list[Names]) -> None:
        self.events: list[AgentEvent] = []
        self.commit(committed)

    def commit(self, batch: list[Names]) -> list[AgentEvent]:
        start = len(self.events) + 1
        fresh = [named(start + n, *names) for n, names in enumerate(batch)]
        self.events.extend(fresh)
        return fresh

    async def read_after(self, after: int, limit: int) -> list[AgentEvent]:
        return self.events[after : after + limit]


def named(event_id: int, run: str, conversation: str, org: str, level: Visibility) -> AgentEvent:
    return replace(
        tick(event_id),
        run_id=run,
        conversation_id=conversation,
        organization_id=org,
        visibility=level.label,
    )


def assert_as_a_full_scan(broadcaster: Broadcaster, log: Log, flt: EventFilter, limit: int) -> None:
    """For every cursor the buffer covers, the page holds the first ``limit`` events a full
    scan matches; its position is the head when it holds them all, else its last event (a page
    of exactly ``limit`` may say either: both skip nothing)."""
    head = broadcaster.last_id
    for cursor in (c for c in range(head + 1) if broadcaster.covers(c)):
        expected = [e for e in log.events[cursor:head] if flt.matches(e)]
        page = broadcaster.since(cursor, flt, limit)
        assert page.events == expected[:limit]
        if len(expected) < limit:
            assert page.position == head
        elif len(expected) > limit:
            assert page.position == expected[limit - 1].id
        else:
            assert page.position in (expected[-1].id, head)


def assert_index_holds_the_buffer(broadcaster: Broadcaster, log: Log) -> None:
    """The lanes of each kept kind hold the buffered events and nothing older (trimmed with
    the buffer, or built late from it)."""
    floor = next(c for c in range(broadcaster.last_id + 1) if broadcaster.covers(c))
    buffered = log.events[floor : broadcaster.last_id]
    kinds = broadcaster.indexed_kinds
    channels = {(kind, name_of(kind, e)) for e in buffered for kind in kinds}
    assert broadcaster.index_size == (len(channels), len(kinds) * len(buffered))


def name_of(kind: str, event: AgentEvent) -> str:
    return {"run": event.run_id, "conversation": event.conversation_id}.get(
        kind, event.organization_id
    )


class Streams:
    """The open streams of a script, and the events added since each kind was last needed."""

    def __init__(self, broadcaster: Broadcaster, capacity: int) -> None:
        self.broadcaster = broadcaster
        self.kept_for = capacity // KEEP_UNWATCHED_DIVISOR  # events, once no longer needed
        self.open: list[_Waiter] = []
        self.unneeded: dict[str, int] = {}  # per kind: events added since it was last needed

    def step(self, action: str, checks: list[tuple[EventFilter, int]]) -> None:
        if action.startswith("open "):
            self.open.append(self.broadcaster.register(CHANNELS[int(action.split()[1])]))
        elif action == "close" and self.open:
            self.broadcaster.unregister(self.open.pop(0))
        elif action == "look":
            for flt, _ in checks:
                if channel_of(flt) != ("all",):
                    self.unneeded[channel_of(flt)[0]] = 0

    def added(self, count: int) -> None:
        for kind in self.unneeded:
            self.unneeded[kind] += count
        for waiter in self.open:
            if waiter.channel != ("all",):
                self.unneeded[waiter.channel[0]] = 0

    def assert_kept_only_while_needed(self) -> None:
        """A kind with an open stream has lanes; one unneeded for a quarter of the buffer has
        none."""
        kinds = set(self.broadcaster.indexed_kinds)
        watched = {w.channel[0] for w in self.open if w.channel != ("all",)}
        assert watched <= kinds
        for kind, count in self.unneeded.items():
            if kind not in watched and count >= self.kept_for:
                assert kind not in kinds


async def follow(
    capacity: int, before: list[Names], script: list[Step], checks: list[tuple[EventFilter, int]]
) -> None:
    log = Log(before)
    broadcaster = Broadcaster(len(log.events), capacity=capacity)
    streams = Streams(broadcaster, capacity)
    for action, batch in [*script, ("look", [])]:
        head = broadcaster.last_id
        if action == "catch_up":
            await broadcaster.catch_up(log.read_after)
        elif action == "foreign":  # another process commits; only its notification comes later
            log.commit(batch)
        elif action == "publish":
            previous_head = len(log.events)
            fresh = log.commit(batch)
            if not broadcaster.publish(fresh, previous_head):  # as the store does on a gap
                await broadcaster.catch_up(log.read_after, fresh[-1].id)
        streams.step(action, checks)
        streams.added(broadcaster.last_id - head)
        if action == "look":
            for flt, limit in checks:
                assert_as_a_full_scan(broadcaster, log, flt, limit)
        assert_index_holds_the_buffer(broadcaster, log)
        streams.assert_kept_only_while_needed()
    broadcaster.close()


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.sampled_from([4, 8, 13]),
    before=st.lists(names, max_size=5),
    script=st.lists(steps, min_size=1, max_size=24),
    checks=st.lists(st.tuples(filters, st.sampled_from([1, 2, 1000])), min_size=1, max_size=4),
)
def test_indexed_pages_equal_a_full_scan_across_trims_catch_ups_and_levels(
    capacity: int, before: list[Names], script: list[Step], checks: list[tuple[EventFilter, int]]
) -> None:
    asyncio.run(follow(capacity, before, script, checks))


async def test_a_publish_wakes_each_kind_of_channel_it_touches_and_no_other() -> None:
    broadcaster = Broadcaster(0)
    touched = [("run", "run-1"), ("conversation", "conv-1"), ("organization", "org"), ("all",)]
    woken = [broadcaster.register(channel) for channel in touched]
    others = [broadcaster.register(("run", "conv-1")), broadcaster.register(("run", "other"))]
    assert broadcaster.publish([tick(1)], 0)
    assert [w.event.is_set() for w in woken + others] == [True] * 4 + [False] * 2
    broadcaster.close()


async def test_a_quiet_channel_is_told_the_head_and_its_lanes_go_with_the_buffer() -> None:
    broadcaster = Broadcaster(0, capacity=100)
    quiet = EventFilter("org", conversation_id="quiet")
    broadcaster.register(("conversation", "quiet"))  # its stream: conversations have lanes
    assert broadcaster.publish([replace(tick(1), conversation_id="quiet")], 0)
    assert broadcaster.publish([busy(n) for n in range(2, 52)], 1)
    assert broadcaster.since(1, quiet) == EventPage([], 51)  # nothing of its own: the head
    assert [e.id for e in broadcaster.since(0, quiet).events] == [1]

    assert broadcaster.publish([busy(n) for n in range(52, 502)], 51)
    assert not broadcaster.covers(1)
    assert broadcaster.covers(401)  # trimmed to 402..501
    assert broadcaster.indexed_kinds == ["conversation"]
    assert broadcaster.index_size == (100, 100)  # one lane per conversation of the buffer
    broadcaster.close()


def busy(event_id: int) -> AgentEvent:
    """An event on a run and conversation of its own."""
    return replace(tick(event_id), run_id=f"run-{event_id}", conversation_id=f"c-{event_id}")
