"""The reconciler's rules, with an injected clock (no waiting), on every backend."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from eventstore import EventFilter, NewEvent
from projections import RunStatus
from projections.reconciler import Thresholds, reconcile

from .conftest import ORG, Runs

pytestmark = pytest.mark.anyio
LIMITS = Thresholds(heartbeat_timeout=300, queue_timeout=3600, cancel_timeout=180)


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def running(runs: Runs, checkpoint: str | None = None) -> str:
    run = await runs.commands.create(ORG, "agent")
    claim = await runs.commands.claim(ORG, "w", lane_key=run.lane_key)
    assert claim is not None
    if checkpoint is not None:
        await runs.commands.append(
            ORG,
            run.run_id,
            [NewEvent("checkpoint_created", {"checkpoint_id": "c", "kind": checkpoint})],
        )
    return run.run_id


async def status_events(runs: Runs, run_id: str) -> list[dict[str, object]]:
    page = await runs.store.read(EventFilter(ORG, run_id=run_id))
    return [e.payload for e in page.events if e.event_type == "run_status_changed"]


async def test_a_silent_active_run_times_out_and_may_resume(runs: Runs) -> None:
    run_id = await running(runs, checkpoint="llm_response")
    assert (await reconcile(runs.store, LIMITS, now=later(299))).changed == 0
    report = await reconcile(runs.store, LIMITS, now=later(301))
    assert report.timed_out == [run_id]
    state = await runs.queries.get(ORG, run_id)
    assert (state.status, state.stop_reason, state.resume_available) == (
        RunStatus.TIMED_OUT,
        "timed_out",
        True,
    )
    timed_out = (await status_events(runs, run_id))[-1]
    checkpoint_time = (await runs.store.read(EventFilter(ORG, run_id=run_id))).events[-2].created_at
    assert timed_out["last_heartbeat_at"] == checkpoint_time  # the last sign of life it saw
    assert timed_out["detail"] == f"no heartbeat since {checkpoint_time}"


async def test_heartbeats_keep_a_run_alive(runs: Runs) -> None:
    run_id = await running(runs)
    await runs.commands.heartbeat(ORG, run_id)
    assert (await reconcile(runs.store, LIMITS, now=later(200))).changed == 0
    beat = await runs.queries.last_heartbeat(run_id)
    report = await reconcile(runs.store, LIMITS, now=later(301))
    assert report.timed_out == [run_id]
    assert (await status_events(runs, run_id))[-1]["last_heartbeat_at"] == beat


async def test_a_queued_run_fails_after_the_queue_timeout(runs: Runs) -> None:
    first = await runs.commands.create(ORG, "agent", conversation_id="c")
    await runs.commands.claim(ORG, "w")
    behind = await runs.commands.create(ORG, "agent", conversation_id="c")  # waiting_on_lane
    queued = await runs.commands.create(ORG, "agent")
    await runs.commands.heartbeat(ORG, first.run_id)
    report = await reconcile(runs.store, Thresholds(10**6, 3600, 180), now=later(3601))
    assert sorted(report.queue_timed_out) == sorted([behind.run_id, queued.run_id])
    for run_id in report.queue_timed_out:
        state = await runs.queries.get(ORG, run_id)
        assert (state.status, state.stop_reason) == (RunStatus.FAILED, "queue_timeout")


async def test_cancel_wins_over_a_timeout(runs: Runs) -> None:
    run_id = await running(runs, checkpoint="input")
    await runs.commands.cancel(ORG, run_id)
    assert (await reconcile(runs.store, LIMITS, now=later(179))).changed == 0  # not timed out
    report = await reconcile(runs.store, LIMITS, now=later(400))  # past both thresholds
    assert (report.cancelled, report.timed_out) == ([run_id], [])
    state = await runs.queries.get(ORG, run_id)
    assert (state.status, state.resume_available) == (RunStatus.CANCELLED, False)


async def test_waiting_on_human_is_never_timed_out(runs: Runs) -> None:
    run_id = await running(runs)
    await runs.commands.change_status(ORG, run_id, RunStatus.WAITING_ON_HUMAN)
    assert (await reconcile(runs.store, LIMITS, now=later(10**7))).changed == 0
    assert (await runs.queries.get(ORG, run_id)).status is RunStatus.WAITING_ON_HUMAN


async def test_ended_runs_are_left_alone(runs: Runs) -> None:
    run_id = await running(runs)
    await runs.commands.change_status(ORG, run_id, stop_reason="end_turn")
    assert (await reconcile(runs.store, LIMITS, now=later(10**7))).changed == 0


async def test_a_pass_is_idempotent_even_when_two_run_at_once(runs: Runs) -> None:
    ids = [await running(runs) for _ in range(3)]
    moment = later(301)
    reports = await asyncio.gather(*(reconcile(runs.store, LIMITS, now=moment) for _ in range(4)))
    assert sorted(r for report in reports for r in report.timed_out) == sorted(ids)
    assert (await reconcile(runs.store, LIMITS, now=moment)).changed == 0
    for run_id in ids:
        assert [p["to"] for p in await status_events(runs, run_id)] == ["running", "timed_out"]
