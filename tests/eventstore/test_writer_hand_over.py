"""When the writer answers a group: held for the next group's writes at most, never longer.

A committed group is handed back to the event loop just before the next group's COMMIT when
that group is a few plain appends (``eventstore/writer.py``); a group holding a unit of its own
or many events (either may run long) is never waited for, nor (on PostgreSQL) the wait for
the log's lock.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from eventstore import AgentEvent, EventStore, WriteContext
from eventstore.appending import PlainAppend, prepare_append
from eventstore.writer import HELD_EVENTS

from .helpers import ORG, custom, new_run

pytestmark = pytest.mark.anyio

WAIT = 10.0
"""Seconds before a wait that should end at once counts as hung."""


@dataclass(frozen=True)
class GatedAppend(PlainAppend[list[AgentEvent]]):
    """A plain append that says when the writer runs it, then waits for its gate."""

    entered: threading.Event
    gate: threading.Event

    def __call__(self, context: WriteContext) -> list[AgentEvent]:
        self.entered.set()
        assert self.gate.wait(WAIT)
        return context.append(self.request)


def gated(n: int, count: int = 1) -> tuple[GatedAppend, threading.Event, threading.Event]:
    entered, gate = threading.Event(), threading.Event()
    request = prepare_append(ORG, "run-a", [custom(n + k) for k in range(count)])
    return GatedAppend(request, entered, gate), entered, gate


class GatedUnit:
    """A unit of its own (not a plain append) that waits for its gate."""

    def __init__(self) -> None:
        self.entered, self.gate = threading.Event(), threading.Event()

    def __call__(self, context: WriteContext) -> str:
        self.entered.set()
        assert self.gate.wait(WAIT)
        return "done"


async def entered(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT), "the writer never ran the unit"


@pytest.mark.parametrize("long_kind", ["unit of its own", "append of many events"])
async def test_a_held_group_is_answered_before_a_long_group_runs(
    store: EventStore, long_kind: str
) -> None:
    await new_run(store, "run-a")
    first, first_in, first_gate = gated(1)
    second, second_in, second_gate = gated(2)
    if long_kind == "unit of its own":
        unit = GatedUnit()
        long_unit: Any = unit
        long_in, long_gate = unit.entered, unit.gate
    else:
        long_unit, long_in, long_gate = gated(3, count=HELD_EVENTS + 1)

    one = asyncio.ensure_future(store.transact(first))
    await entered(first_in)  # the writer holds [first]; [second] queues behind it
    two = asyncio.ensure_future(store.transact(second))
    first_gate.set()
    await entered(second_in)  # [first] committed; [second] is being written
    long = asyncio.ensure_future(store.transact(long_unit))
    second_gate.set()
    await entered(long_in)  # [second] committed; the long group runs, its gate shut

    answered = await asyncio.wait_for(asyncio.gather(one, two), WAIT)
    assert not long.done()
    assert [e.sequence for events in answered for e in events] == [2, 3]
    long_gate.set()
    assert await asyncio.wait_for(long, WAIT)


async def test_the_last_group_is_answered_when_nothing_follows(store: EventStore) -> None:
    await new_run(store, "run-a")
    unit, unit_in, gate = gated(1)
    pending = asyncio.ensure_future(store.transact(unit))
    await entered(unit_in)
    gate.set()
    events = await asyncio.wait_for(pending, WAIT)
    assert [e.sequence for e in events] == [2]
    assert (await store.read_run(ORG, "run-a"))[-1].id == events[0].id
