"""The writer's cache of run states: never folded over when stale.

Two stores on one database (two servers on PostgreSQL, a server and a CLI on one SQLite file)
each keep their own cache; every append of one moves the run's sequence under the other's
feet, and a unit rolled back leaves a state the database never kept. Each test would fail on a
cache that trusted its entry without checking it against the run's head, or kept it past a
rollback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventstore import NewEvent, WriteContext, prepare_append
from projections import RunCommands, RunProjection, RunQueries, RunState, check

from ..conftest import StoreFactory
from .conftest import ORG, Runs

pytestmark = pytest.mark.anyio


def step(prompt_tokens: int) -> NewEvent:
    return NewEvent("step_completed", {"prompt_tokens": prompt_tokens, "completion_tokens": 0})


@pytest.fixture
async def pair(store_factory: StoreFactory) -> AsyncIterator[tuple[Runs, Runs]]:
    """Two stores on the test's database, each with its own projection (and cache)."""
    async with (
        store_factory(projections=[RunProjection()]) as first,
        store_factory(projections=[RunProjection()]) as second,
    ):
        yield (
            Runs(first, RunCommands(first), RunQueries(first)),
            Runs(second, RunCommands(second), RunQueries(second)),
        )


async def running_run(runs: Runs) -> str:
    run = await runs.commands.create(ORG, "agent-1")
    claim = await runs.commands.claim(ORG, "worker-1", lane_key=run.lane_key)
    assert claim is not None
    return run.run_id


async def test_alternate_appends_from_two_stores_fold_every_event(pair: tuple[Runs, Runs]) -> None:
    first, second = pair
    run_id = await running_run(first)
    await second.queries.get(ORG, run_id)
    total = 0
    for n in range(1, 13):
        writer = first if n % 2 else second
        _, state = await writer.commands.append_and_get(ORG, run_id, [step(n)])
        total += n
        assert (state.num_steps, state.prompt_tokens) == (n, total)
        assert state == await first.queries.get(ORG, run_id)
    report = await check(first.store)
    assert report.differences == []


async def test_a_command_sees_what_the_other_store_appended(pair: tuple[Runs, Runs]) -> None:
    first, second = pair
    run_id = await running_run(first)
    await first.commands.append_and_get(ORG, run_id, [step(1)])  # first caches the run
    await second.commands.cancel(ORG, run_id, reason="stop")
    _, state = await first.commands.append_and_get(ORG, run_id, [step(2)])
    assert state.cancel_requested
    assert state == await second.queries.get(ORG, run_id)


class Undone(Exception):
    pass


async def test_a_rolled_back_append_is_never_folded_over(pair: tuple[Runs, Runs]) -> None:
    """The rolled-back step and the other store's step take the same sequence: only a cache
    that forgets on rollback can tell them apart."""
    first, second = pair
    run_id = await running_run(first)
    await first.commands.append_and_get(ORG, run_id, [step(1)])

    def append_then_fail(context: WriteContext) -> None:
        context.append(prepare_append(ORG, run_id, [step(1000)]))
        raise Undone

    with pytest.raises(Undone):
        await first.store.transact(append_then_fail)
    await second.commands.append_and_get(ORG, run_id, [step(10)])
    _, state = await first.commands.append_and_get(ORG, run_id, [step(100)])
    assert (state.num_steps, state.prompt_tokens) == (3, 111)
    assert state == await second.queries.get(ORG, run_id)


async def test_states_past_the_bound_are_read_again(store_factory: StoreFactory) -> None:
    async with store_factory(projections=[RunProjection(cache_size=2)]) as store:
        runs = Runs(store, RunCommands(store), RunQueries(store))
        run_ids = [
            (await runs.commands.create(ORG, "a", lane_key=f"l{n}")).run_id for n in range(5)
        ]
        states: dict[str, RunState] = {}
        for round_ in range(3):
            for run_id in run_ids:
                _, states[run_id] = await runs.commands.append_and_get(ORG, run_id, [step(1)])
                assert states[run_id].num_steps == round_ + 1
        for run_id in run_ids:
            assert states[run_id] == await runs.queries.get(ORG, run_id)
