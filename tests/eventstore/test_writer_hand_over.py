"""When the writer answers a group: held for the next group's writes at most, never longer.

A committed group is handed back to the event loop just before the next group's COMMIT when
that group is all plain appends (``eventstore/writer.py``); a group holding a unit of its own
(which may run long) is never waited for, nor (on PostgreSQL) the wait for the log's lock.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

from eventstore import AgentEvent, EventStore, WriteContext
from eventstore.appending import PlainAppend, prepare_append

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


def gated(n: int) -> tuple[GatedAppend, threading.Event, threading.Event]:
    entered, gate = threading.Event(), threading.Event()
    request = prepare_append(ORG, "run-a", [custom(n)])
    return GatedAppend(request, entered, gate), entered, gate


async def entered(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT), "the writer never ran the unit"


async def test_a_held_group_is_answered_before_a_long_unit_runs(store: EventStore) -> None:
    await new_run(store, "run-a")
    first, first_in, first_gate = gated(1)
    second, second_in, second_gate = gated(2)
    long_in, long_gate = threading.Event(), threading.Event()

    def long_unit(context: WriteContext) -> str:
        long_in.set()
        assert long_gate.wait(WAIT)
        return "done"

    one = asyncio.ensure_future(store.transact(first))
    await entered(first_in)  # the writer holds [first]; [second] queues behind it
    two = asyncio.ensure_future(store.transact(second))
    first_gate.set()
    await entered(second_in)  # [first] committed; [second] is being written
    long = asyncio.ensure_future(store.transact(long_unit))
    second_gate.set()
    await entered(long_in)  # [second] committed; the long unit runs, its gate shut

    answered = await asyncio.wait_for(asyncio.gather(one, two), WAIT)
    assert not long.done()
    assert [e.sequence for events in answered for e in events] == [2, 3]
    long_gate.set()
    assert await asyncio.wait_for(long, WAIT) == "done"


async def test_the_last_group_is_answered_when_nothing_follows(store: EventStore) -> None:
    await new_run(store, "run-a")
    unit, unit_in, gate = gated(1)
    pending = asyncio.ensure_future(store.transact(unit))
    await entered(unit_in)
    gate.set()
    events = await asyncio.wait_for(pending, WAIT)
    assert [e.sequence for e in events] == [2]
    assert (await store.read_run(ORG, "run-a"))[-1].id == events[0].id
