"""A unit that runs alone (``AloneUnit``, an archive's delete): a group of its own, and all or
nothing without a savepoint of its own."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import EventStore, WriteContext
from eventstore.writer import AloneUnit

from .helpers import ORG, message, new_run
from .test_writer_hand_over import WAIT, GatedUnit, entered, gated

pytestmark = pytest.mark.anyio


async def test_appends_queued_around_it_do_not_wait_for_it_nor_share_it(
    store: EventStore,
) -> None:
    await new_run(store, "run-a")
    holder, holder_in, holder_gate = gated(1)
    held = asyncio.ensure_future(store.transact(holder))
    await entered(holder_in)  # the writer is busy: what follows queues in this order
    before, _, before_gate = gated(2)
    long = GatedUnit()
    after, _, after_gate = gated(3)
    before_gate.set()
    after_gate.set()
    queued = [asyncio.ensure_future(store.transact(before))]
    alone = asyncio.ensure_future(store.transact(AloneUnit(long)))
    queued.append(asyncio.ensure_future(store.transact(after)))
    await asyncio.sleep(0)  # one loop turn: each task's first step queues its unit, in order
    holder_gate.set()
    await entered(long.entered)  # the alone unit runs, its gate shut
    first = await asyncio.wait_for(queued[0], WAIT)
    assert not queued[1].done()
    long.gate.set()
    assert await asyncio.wait_for(alone, WAIT) == "done"
    second = await asyncio.wait_for(queued[1], WAIT)
    await held
    assert [first[0].sequence, second[0].sequence] == [3, 4]


async def test_a_failing_one_leaves_nothing_it_wrote(store: EventStore) -> None:
    await new_run(store, "run-a")

    def unit(context: WriteContext) -> None:
        context.tx.execute(
            "INSERT INTO consumer_cursors (name, event_id, updated_at) VALUES ('x', 1, 'now')"
        )
        raise ValueError("refused after a write")

    with pytest.raises(ValueError, match="refused after a write"):
        await store.transact(AloneUnit(unit))
    assert await store.consumer_cursors() == {}
    appended = await store.append(ORG, "run-a", [message("after")])
    assert appended[0].sequence == 2
    assert (await store.verify()).ok


async def test_it_says_whether_other_units_queued_while_it_ran(store: EventStore) -> None:
    await new_run(store, "run-a")
    long = GatedUnit()
    busy = AloneUnit(long)
    alone = asyncio.ensure_future(store.transact(busy))
    await entered(long.entered)
    append = asyncio.ensure_future(store.append(ORG, "run-a", [message("meanwhile")]))
    await asyncio.sleep(0)  # one loop turn: the append's first step queues its unit
    long.gate.set()
    await asyncio.wait_for(alone, WAIT)
    assert busy.others_waiting
    await asyncio.wait_for(append, WAIT)
    quiet = AloneUnit(lambda context: None)
    await store.transact(quiet)
    assert not quiet.others_waiting
