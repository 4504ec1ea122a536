"""Property: for random event sequences, the inline read model == the pure fold == a rebuild.

Each example drives three runs (two sharing a lane) through random actions chosen among what is
allowed now, with some disallowed ones mixed in (they must be refused and leave no trace).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import EventFilter, NewEvent, SQLiteEventStore, StoreError
from projections import (
    TRANSITIONS,
    RunCommands,
    RunProjection,
    RunQueries,
    RunStatus,
    check,
    fold,
    rebuild,
)
from projections.readmodel import state_to_row

ORG = "org-prop"
Action = tuple[int, int, int]

WORK = [
    lambda n: NewEvent("tool_started", {"tool_call_id": f"t{n}", "name": f"tool{n % 3}"}),
    lambda n: NewEvent("tool_finished", {"tool_call_id": f"t{n}", "name": f"tool{n % 3}"}),
    lambda n: NewEvent(
        "checkpoint_created",
        {
            "checkpoint_id": f"cp{n}",
            "kind": ["input", "llm_response", "final", "human_pause"][n % 4],
        },
    ),
    lambda n: NewEvent("journal_updated", {"objective": f"o{n}", "handoff_next_action": f"h{n}"}),
    lambda n: NewEvent("message_created", {"role": "assistant", "content": f"m{n}"}),
    lambda n: NewEvent(
        "step_completed", {"prompt_tokens": n, "completion_tokens": n % 7, "ttft_ns": n * 10}
    ),
    lambda n: NewEvent("child_run_started", {"child_run_id": f"child-{n}"}),
    lambda n: NewEvent("callback_attempted", {"attempt": n % 3 + 1, "status_code": 500}),
    lambda n: NewEvent("custom.note", {"n": n}),
    lambda n: NewEvent("cancel_requested", {}),
]


async def scenario(path: Path, actions: list[Action]) -> None:
    async with SQLiteEventStore(path, projections=[RunProjection()]) as store:
        commands, queries = RunCommands(store), RunQueries(store)
        run_ids = [
            (await commands.create(ORG, "agent", lane_key=lane)).run_id
            for lane in ("lane-shared", "lane-shared", "lane-own")
        ]
        for n, (which, kind, pick) in enumerate(actions):
            run_id = run_ids[which % 3]
            state = await queries.get(ORG, run_id)
            with contextlib.suppress(StoreError):  # refused actions leave no trace: checked below
                await _act(commands, state.status, run_id, kind, pick, n)
        await _assert_models_agree(store, queries, run_ids)


async def _act(
    commands: RunCommands, status: RunStatus, run_id: str, kind: int, pick: int, n: int
) -> None:
    if kind % 3 == 0:
        targets = sorted(TRANSITIONS[status]) or list(RunStatus)
        await commands.change_status(ORG, run_id, targets[pick % len(targets)], detail=f"d{n}")
    elif kind % 3 == 1:
        await commands.append(ORG, run_id, [WORK[pick % len(WORK)](n)])
    elif pick % 4 == 0:
        await commands.resume(ORG, run_id)
    else:
        await commands.claim(ORG, f"w{n}")


async def _assert_models_agree(
    store: SQLiteEventStore, queries: RunQueries, run_ids: list[str]
) -> None:
    for run_id in run_ids:
        inline = await queries.get(ORG, run_id)
        folded = fold((await store.read(EventFilter(ORG, run_id=run_id), limit=10_000)).events)
        assert folded is not None
        assert state_to_row(folded) == state_to_row(inline)
    assert (await check(store)).ok
    before = {run_id: state_to_row(await queries.get(ORG, run_id)) for run_id in run_ids}
    await rebuild(store)
    after = {run_id: state_to_row(await queries.get(ORG, run_id)) for run_id in run_ids}
    assert after == before


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(0, 50)), min_size=1, max_size=40
    )
)
def test_inline_read_model_equals_fold_equals_rebuild(actions: list[Action]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(scenario(Path(folder) / "prop.db", actions))
