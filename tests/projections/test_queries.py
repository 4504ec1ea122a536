"""Queries: filters, cursor pagination under concurrent creation, usage, journal, time travel."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import InvalidCursor, NewEvent, UnknownRun, WriteContext
from projections import DURATION_BOUNDS_MS, RunFilter, RunStatus

from .conftest import ORG, Runs

pytestmark = pytest.mark.anyio


async def test_filters_narrow_the_listing(runs: Runs) -> None:
    a = await runs.commands.create(ORG, "agent-a", metadata={"env": "prod", "tier": 2})
    b = await runs.commands.create(ORG, "agent-b", metadata={"env": "dev"})
    c = await runs.commands.create(ORG, "agent-a", conversation_id="conv-x")
    await runs.commands.claim(ORG, "w", agent_id="agent-b")
    await runs.commands.change_status(ORG, b.run_id, stop_reason="end_turn")
    await runs.commands.claim(ORG, "w", lane_key=c.lane_key)

    async def ids(flt: RunFilter) -> set[str]:
        return {r.run_id for r in (await runs.queries.list_runs(ORG, flt)).items}

    assert await ids(RunFilter(agent_id="agent-a")) == {a.run_id, c.run_id}
    assert await ids(RunFilter(active=True)) == {c.run_id}
    assert await ids(RunFilter(active=False)) == {a.run_id, b.run_id}
    assert await ids(RunFilter(statuses=(RunStatus.QUEUED, RunStatus.COMPLETED))) == {
        a.run_id,
        b.run_id,
    }
    assert await ids(RunFilter(stop_reason="end_turn")) == {b.run_id}
    assert await ids(RunFilter(conversation_id="conv-x")) == {c.run_id}
    assert await ids(RunFilter(lane_key=c.lane_key)) == {c.run_id}
    assert await ids(RunFilter(metadata=(("env", "prod"),))) == {a.run_id}
    assert await ids(RunFilter(metadata=(("tier", 2),))) == {a.run_id}
    assert await ids(RunFilter(metadata=(("env", "prod"), ("tier", 3)))) == set()
    assert await ids(RunFilter(created_after=c.created_at)) == set()
    assert await ids(RunFilter(created_before=b.created_at)) == {a.run_id}
    assert await ids(RunFilter(agent_id="agent-a")) == await ids(RunFilter(agent_id="agent-a"))
    assert (await runs.queries.list_runs("org-other")).items == []


async def test_pages_follow_each_other_in_both_orders(runs: Runs) -> None:
    created = [(await runs.commands.create(ORG, "agent")).run_id for _ in range(7)]
    for order, expected in (("desc", created[::-1]), ("asc", created)):
        seen, cursor = [], None
        while True:
            page = await runs.queries.list_runs(ORG, limit=3, order=order, after=cursor)  # type: ignore[arg-type]
            seen += [r.run_id for r in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected
    newest = await runs.queries.list_runs(ORG, limit=3)
    assert newest.next_cursor is not None
    older = await runs.queries.list_runs(ORG, limit=3, after=newest.next_cursor)
    assert newest.prev_cursor is None
    assert [r.run_id for r in older.items] == created[::-1][3:6]
    assert older.prev_cursor is not None
    back = await runs.queries.list_runs(ORG, limit=3, before=older.prev_cursor)
    assert [r.run_id for r in back.items] == [r.run_id for r in newest.items]


async def test_listing_while_runs_are_created_skips_and_repeats_nothing(runs: Runs) -> None:
    existing = {(await runs.commands.create(ORG, "agent")).run_id for _ in range(40)}
    stop = asyncio.Event()

    async def creator() -> None:
        while not stop.is_set():
            await runs.commands.create(ORG, "agent")

    task = asyncio.create_task(creator())
    seen: list[str] = []
    cursor = None
    while True:
        page = await runs.queries.list_runs(ORG, limit=4, after=cursor)
        seen += [r.run_id for r in page.items]
        await asyncio.sleep(0)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    stop.set()
    await task
    assert len(seen) == len(set(seen))
    assert existing <= set(seen)


async def test_a_malformed_cursor_is_refused(runs: Runs) -> None:
    with pytest.raises(InvalidCursor):
        await runs.queries.list_runs(ORG, after="not-a-cursor!")


async def test_usage_journal_and_messages(runs: Runs) -> None:
    run = await runs.commands.create(ORG, "agent", message="go")
    await runs.commands.claim(ORG, "w")
    await runs.commands.append(
        ORG,
        run.run_id,
        [
            NewEvent(
                "step_completed",
                {"model": "m1", "prompt_tokens": 100, "completion_tokens": 20, "ttft_ns": 5000},
            ),
            NewEvent(
                "step_completed",
                {"model": "m1", "prompt_tokens": 50, "completion_tokens": 10, "ttft_ns": 9000},
            ),
            NewEvent("journal_updated", {"objective": "o", "next_action": "n1"}),
            NewEvent(
                "journal_updated", {"objective": "o", "handoff_next_action": "call the API again"}
            ),
            NewEvent("message_created", {"role": "assistant", "content": "done"}),
            NewEvent("tool_started", {"tool_call_id": "t1", "name": "search"}),
        ],
    )
    usage = await runs.queries.usage(ORG, run.run_id)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.num_steps) == (
        150,
        30,
        180,
        2,
    )
    assert [s["prompt_tokens"] for s in usage.steps] == [100, 50]
    state = await runs.queries.get(ORG, run.run_id)
    assert state.ttft_ns == 5000
    assert state.tools_used == ("search",)
    assert state.journal is not None
    assert state.journal["handoff_next_action"] == "call the API again"
    assert len(await runs.queries.journal(ORG, run.run_id)) == 2
    assert [m.payload["role"] for m in await runs.queries.messages(ORG, run.run_id)] == [
        "user",
        "assistant",
    ]


async def test_state_as_of_any_event(runs: Runs) -> None:
    run = await runs.commands.create(ORG, "agent")
    claim = await runs.commands.claim(ORG, "w")
    assert claim is not None
    done = await runs.commands.change_status(ORG, run.run_id, stop_reason="end_turn")
    assert (
        await runs.queries.state_at(ORG, run.run_id, run.created_event_id)
    ).status is RunStatus.QUEUED
    assert (
        await runs.queries.state_at(ORG, run.run_id, claim.run.last_event_id)
    ).status is RunStatus.RUNNING
    assert await runs.queries.state_at(ORG, run.run_id, done.last_event_id) == done
    with pytest.raises(UnknownRun):
        await runs.queries.state_at(ORG, run.run_id, run.created_event_id - 1)


async def test_stats_put_each_finished_run_in_its_duration_bucket(runs: Runs) -> None:
    """Bucket edges: a bound belongs to the bucket above it. Durations are set in the read
    model directly because a test cannot wait an hour for a run to finish."""
    durations_ms = [0, 999, 1_000, 59_999, 60_000, 3_600_000, 90_000_000]
    for duration_ms in durations_ms:
        run = await runs.commands.create(ORG, "agent-d")
        await runs.commands.claim(ORG, "w", lane_key=run.lane_key)
        await runs.commands.change_status(ORG, run.run_id, stop_reason="end_turn")

        def set_duration(
            context: WriteContext, run_id: str = run.run_id, ms: int = duration_ms
        ) -> None:
            context.tx.execute(
                "UPDATE runs SET total_duration_ns = ? WHERE run_id = ?", (ms * 1_000_000, run_id)
            )

        await runs.store.transact(set_duration)
    await runs.commands.create(ORG, "agent-d")  # unfinished: counted by status, not duration
    await runs.commands.create(ORG, "agent-other")
    stats = await runs.queries.stats(ORG, RunFilter(agent_id="agent-d"))
    assert stats.total == len(durations_ms) + 1
    assert stats.by_status == {"completed": len(durations_ms), "queued": 1}
    assert stats.durations == [2, 1, 1, 1, 0, 2]
    assert DURATION_BOUNDS_MS == (1_000, 10_000, 60_000, 600_000, 3_600_000)


async def test_status_history_replays_the_runs_that_changed_inside_the_window(
    runs: Runs,
) -> None:
    """Moments are the log's own timestamps: a change at a moment counts at that moment."""
    steady = await runs.commands.create(ORG, "agent-old")  # queued before the window, still
    moving = await runs.commands.create(ORG, "agent-h")
    claimed = await runs.commands.claim(ORG, "w", lane_key=moving.lane_key)
    assert claimed is not None
    done = await runs.commands.change_status(ORG, moving.run_id, stop_reason="end_turn")
    late = await runs.commands.create(ORG, "agent-late")
    await runs.commands.create("org-other", "agent-h")
    running_at = (await runs.queries.get(ORG, moving.run_id)).started_at
    assert running_at is not None
    moments = [running_at, done.completed_at or "", late.created_at]

    async def history(flt: RunFilter) -> list[dict[str, int]]:
        samples = await runs.queries.status_history(ORG, flt, moments)
        assert [s.at for s in samples] == moments
        return [s.by_status for s in samples]

    assert await history(RunFilter()) == [
        {"queued": 1, "running": 1},
        {"completed": 1, "queued": 1},
        {"completed": 1, "queued": 2},
    ]
    queued = RunFilter(statuses=(RunStatus.QUEUED,))
    assert await history(queued) == [{"queued": 1}, {"queued": 1}, {"queued": 2}]
    assert await history(RunFilter(active=True)) == [{"running": 1}, {}, {}]
    assert await history(RunFilter(agent_id="agent-late")) == [{}, {}, {"queued": 1}]
    assert await history(RunFilter(run_id_prefix=steady.run_id)) == [{"queued": 1}] * 3


async def test_a_run_id_prefix_finds_the_runs_whose_id_starts_with_it(runs: Runs) -> None:
    first = await runs.commands.create(ORG, "agent", run_id="run-abc-1")
    second = await runs.commands.create(ORG, "agent", run_id="run-abc-2")
    await runs.commands.create(ORG, "agent", run_id="run-xyz")
    await runs.commands.create(ORG, "agent", run_id="RUN-ABC-3")  # the prefix is case-sensitive

    async def ids(prefix: str) -> list[str]:
        flt = RunFilter(run_id_prefix=prefix)
        return [r.run_id for r in (await runs.queries.list_runs(ORG, flt)).items]

    assert await ids("run-abc") == [second.run_id, first.run_id]
    assert await ids("run-abc-1") == [first.run_id]
    assert await ids("run-abc-1-and-more") == []
    assert (await runs.queries.stats(ORG, RunFilter(run_id_prefix="run-"))).total == 3
