"""The broadcaster's wake-ups: coalesced under load, and a window that grows with subscribers."""

from __future__ import annotations

import pytest

from eventstore import AgentEvent, EventFilter
from eventstore.tail import MEMO_PAGES, WAKE_BATCH, Broadcaster

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
