"""Commands against a real store: create, append, cancel, resume, heartbeat, tool results."""

from __future__ import annotations

import asyncio

import pytest

from eventstore import ConcurrencyConflict, EventFilter, InvalidEvent, NewEvent, UnknownRun
from projections import (
    IllegalTransition,
    NotWaitingOnHuman,
    QuestionMismatch,
    ResumeRefused,
    RunStatus,
    RunTerminal,
)

from .conftest import ORG, Runs

pytestmark = pytest.mark.anyio


def checkpoint(kind: str, checkpoint_id: str = "cp-1") -> NewEvent:
    return NewEvent("checkpoint_created", {"checkpoint_id": checkpoint_id, "kind": kind})


async def running_run(runs: Runs, conversation: str = "conv-1") -> str:
    run = await runs.commands.create(ORG, "agent-1", conversation_id=conversation)
    claim = await runs.commands.claim(ORG, "worker-1", lane_key=run.lane_key)
    assert claim is not None
    assert claim.run.run_id == run.run_id
    return run.run_id


async def test_create_makes_a_queued_run_readable_at_once(runs: Runs) -> None:
    run = await runs.commands.create(
        ORG, "agent-1", metadata={"team": "blue"}, message="summarise the report"
    )
    assert run.status is RunStatus.QUEUED
    assert run.lane_key == f"conversation:{run.conversation_id}"
    assert run.conversation_id.startswith("conv-")
    assert (await runs.queries.get(ORG, run.run_id)) == run
    messages = await runs.queries.messages(ORG, run.run_id)
    assert [m.payload["content"] for m in messages] == ["summarise the report"]


async def test_status_changes_get_their_from_filled_in(runs: Runs) -> None:
    run_id = await running_run(runs)
    events = await runs.commands.append(
        ORG,
        run_id,
        [
            NewEvent("run_status_changed", {"to": "waiting_on_tool"}),
            NewEvent("run_status_changed", {"to": "running"}),
        ],
    )
    assert [(e.payload["from"], e.payload["to"]) for e in events] == [
        ("running", "waiting_on_tool"),
        ("waiting_on_tool", "running"),
    ]


async def test_a_stop_reason_alone_ends_the_run(runs: Runs) -> None:
    run_id = await running_run(runs)
    state = await runs.commands.change_status(ORG, run_id, stop_reason="max_tokens_exceeded")
    assert (state.status, state.stop_reason) == (RunStatus.FAILED, "max_tokens_exceeded")
    assert state.completed_at is not None
    assert state.total_duration_ns is not None


async def test_an_illegal_transition_is_refused_and_writes_nothing(runs: Runs) -> None:
    run_id = await running_run(runs)
    await runs.commands.change_status(ORG, run_id, RunStatus.COMPLETED)
    head = await runs.store.head()
    with pytest.raises(IllegalTransition) as refused:
        await runs.commands.change_status(ORG, run_id, RunStatus.RUNNING)
    assert refused.value.details["current_status"] == "completed"
    assert refused.value.details["allowed"] == []
    assert await runs.store.head() == head


async def test_a_stale_from_is_a_conflict(runs: Runs) -> None:
    run_id = await running_run(runs)
    stale = NewEvent("run_status_changed", {"from": "queued", "to": "running"})
    with pytest.raises(ConcurrencyConflict, match="is running"):
        await runs.store.append(ORG, run_id, [stale])


async def test_racing_status_changes_never_append_an_illegal_transition(runs: Runs) -> None:
    run_id = await running_run(runs)
    targets = [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED] * 5
    results = await asyncio.gather(
        *(runs.commands.change_status(ORG, run_id, t) for t in targets), return_exceptions=True
    )
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(losers) == len(targets) - 1
    assert all(isinstance(r, IllegalTransition) for r in losers)
    changes = [
        e for e in await runs.store.read_run(ORG, run_id) if e.event_type == "run_status_changed"
    ]
    assert [e.payload["from"] for e in changes] == ["queued", "running"]


async def test_work_events_on_an_ended_run_are_refused(runs: Runs) -> None:
    run_id = await running_run(runs)
    await runs.commands.change_status(ORG, run_id, RunStatus.COMPLETED)
    with pytest.raises(RunTerminal):
        await runs.commands.append(
            ORG, run_id, [NewEvent("message_created", {"role": "assistant", "content": "late"})]
        )
    await runs.commands.append(ORG, run_id, [NewEvent("custom.note", {"text": "allowed"})])


async def test_cancel_of_a_queued_run_is_immediate(runs: Runs) -> None:
    run = await runs.commands.create(ORG, "agent-1")
    state = await runs.commands.cancel(ORG, run.run_id, reason="user asked")
    assert (state.status, state.stop_reason, state.cancel_requested) == (
        RunStatus.CANCELLED,
        "cancelled",
        True,
    )


async def test_cancel_of_a_running_run_sets_the_flag_for_the_worker(runs: Runs) -> None:
    run_id = await running_run(runs)
    state = await runs.commands.cancel(ORG, run_id)
    assert (state.status, state.cancel_requested) == (RunStatus.RUNNING, True)
    again = await runs.commands.cancel(ORG, run_id)  # idempotent: no second event
    assert again.last_event_id == state.last_event_id
    beat = await runs.commands.heartbeat(ORG, run_id, worker_id="worker-1")
    assert beat.cancel_requested
    done = await runs.commands.change_status(ORG, run_id, stop_reason="cancelled")
    assert done.status is RunStatus.CANCELLED


async def test_cancel_of_an_ended_run_is_refused(runs: Runs) -> None:
    run_id = await running_run(runs)
    await runs.commands.change_status(ORG, run_id, RunStatus.COMPLETED)
    with pytest.raises(RunTerminal, match="already completed"):
        await runs.commands.cancel(ORG, run_id)


async def test_heartbeats_record_liveness_without_filling_the_log(runs: Runs) -> None:
    run_id = await running_run(runs)
    head = await runs.store.head()
    for _ in range(5):
        await runs.commands.heartbeat(ORG, run_id, worker_id="worker-1")
    assert await runs.store.head() == head
    assert await runs.queries.last_heartbeat(run_id) is not None


@pytest.mark.parametrize("kind", ["input", "llm_response", "tool_result", "journal_update"])
async def test_resume_from_a_resumable_checkpoint(runs: Runs, kind: str) -> None:
    run_id = await running_run(runs)
    await runs.commands.append(ORG, run_id, [checkpoint(kind)])
    await runs.commands.change_status(ORG, run_id, stop_reason="error", detail="boom")
    failed = await runs.queries.get(ORG, run_id)
    assert failed.resume_available
    assert failed.error == "boom"
    resumed = await runs.commands.resume(ORG, run_id)
    assert (resumed.status, resumed.stop_reason, resumed.completed_at) == (
        RunStatus.RESUMING,
        None,
        None,
    )
    claim = await runs.commands.claim(ORG, "worker-2")
    assert claim is not None
    assert claim.run.status is RunStatus.RUNNING
    assert claim.checkpoint is not None
    assert claim.checkpoint.payload["kind"] == kind


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("final", "no resumable"), ("human_pause", "no resumable"), (None, "latest: none")],
)
async def test_resume_refused_without_a_resumable_checkpoint(
    runs: Runs, kind: str | None, reason: str
) -> None:
    run_id = await running_run(runs)
    if kind is not None:
        await runs.commands.append(ORG, run_id, [checkpoint(kind)])
    await runs.commands.change_status(ORG, run_id, RunStatus.TIMED_OUT)
    with pytest.raises(ResumeRefused, match=reason):
        await runs.commands.resume(ORG, run_id)


async def test_resume_refused_after_cancel(runs: Runs) -> None:
    run_id = await running_run(runs)
    await runs.commands.append(ORG, run_id, [checkpoint("input")])
    await runs.commands.cancel(ORG, run_id)
    await runs.commands.change_status(ORG, run_id, stop_reason="cancelled")
    with pytest.raises(ResumeRefused, match="never resumes"):
        await runs.commands.resume(ORG, run_id)


async def failed_with_checkpoint(runs: Runs, conversation: str) -> str:
    run_id = await running_run(runs, conversation)
    await runs.commands.append(ORG, run_id, [checkpoint("input")])
    await runs.commands.change_status(ORG, run_id, stop_reason="error")
    return run_id


async def test_resumes_and_answers_on_a_busy_lane_wait_in_the_order_they_came(
    runs: Runs,
) -> None:
    """Was 409 lane_busy. A resumed run and an answered one queue behind the lane's holder in
    the order of the resume and the answer (not of their creation); the resumed one passes
    through ``resuming`` when claimed."""
    older = await failed_with_checkpoint(runs, "conv-shared")
    asking = await running_run(runs, "conv-shared")
    await runs.commands.change_status(ORG, asking, RunStatus.WAITING_ON_HUMAN)
    holder = await running_run(runs, "conv-shared")
    answered = await runs.commands.answer(ORG, asking, {"ok": True})
    resumed = await runs.commands.resume(ORG, older)
    assert (answered.status, resumed.status) == (RunStatus.WAITING_ON_LANE,) * 2
    assert resumed.detail == f"resumed; waiting for run {holder}"
    assert await runs.commands.claim(ORG, "w2") is None  # the holder still runs
    order = []
    for finishing in (holder, asking, older):
        await runs.commands.change_status(ORG, finishing, stop_reason="end_turn")
        claim = await runs.commands.claim(ORG, "w2")
        if claim is not None:
            order.append(claim.run.run_id)
    assert order == [asking, older]
    events = await runs.store.read(EventFilter(ORG, run_id=older), limit=100)
    moves = [e.payload["to"] for e in events.events if e.event_type == "run_status_changed"]
    assert moves[-4:] == ["waiting_on_lane", "resuming", "running", "completed"]


async def test_a_resume_on_a_free_lane_holds_it_at_once(runs: Runs) -> None:
    run_id = await failed_with_checkpoint(runs, "conv-free")
    assert (await runs.commands.resume(ORG, run_id)).status is RunStatus.RESUMING


async def test_of_two_racing_answers_only_one_moves_the_run(runs: Runs) -> None:
    run_id = await running_run(runs)
    await runs.commands.append(
        ORG,
        run_id,
        [
            NewEvent("human_input_requested", {"question_id": "q-1", "question": "go?"}),
            NewEvent("run_status_changed", {"to": "waiting_on_human"}),
        ],
    )
    answers = await asyncio.gather(
        runs.commands.answer(ORG, run_id, "yes", answered_by="k1"),
        runs.commands.answer(ORG, run_id, "no", answered_by="k2"),
        return_exceptions=True,
    )
    refused = [a for a in answers if isinstance(a, NotWaitingOnHuman)]
    moved = [a for a in answers if not isinstance(a, BaseException)]
    assert (len(refused), len(moved)) == (1, 1)
    assert moved[0].status is RunStatus.QUEUED
    assert moved[0].question is None
    inputs = await runs.store.read(EventFilter(ORG, run_id=run_id), limit=100)
    recorded = [e.payload for e in inputs.events if e.event_type == "human_input"]
    assert len(recorded) == 1
    assert recorded[0]["question_id"] == "q-1"


async def test_an_answer_names_the_open_question_or_none(runs: Runs) -> None:
    run_id = await running_run(runs)
    asked = NewEvent("human_input_requested", {"question_id": "q-2", "question": "go?"})
    await runs.commands.append(ORG, run_id, [asked])
    with pytest.raises(NotWaitingOnHuman):
        await runs.commands.answer(ORG, run_id, "yes")  # still running
    await runs.commands.change_status(ORG, run_id, RunStatus.WAITING_ON_HUMAN)
    with pytest.raises(QuestionMismatch):
        await runs.commands.answer(ORG, run_id, "yes", question_id="q-1")
    with pytest.raises(UnknownRun):
        await runs.commands.answer("other-org", run_id, "yes")
    answered = await runs.commands.answer(ORG, run_id, "yes", question_id="q-2")
    assert answered.status is RunStatus.QUEUED


async def test_the_conversation_cancel_acts_on_its_holder_else_the_oldest_waiting(
    runs: Runs,
) -> None:
    holder = await running_run(runs, "conv-c")
    waiting = await runs.commands.create(ORG, "agent-1", conversation_id="conv-c")
    cancelled = await runs.commands.cancel_conversation(ORG, "conv-c", reason="stop")
    assert cancelled is not None
    assert (cancelled.run_id, cancelled.cancel_requested) == (holder, True)
    await runs.commands.change_status(ORG, holder, stop_reason="cancelled")
    cancelled = await runs.commands.cancel_conversation(ORG, "conv-c")
    assert cancelled is not None
    assert (cancelled.run_id, cancelled.status) == (waiting.run_id, RunStatus.CANCELLED)
    assert await runs.commands.cancel_conversation(ORG, "conv-c") is None
    assert await runs.commands.cancel_conversation(ORG, "conv-none") is None


async def test_tool_results_are_recorded_once_and_replayed(runs: Runs) -> None:
    run_id = await running_run(runs)
    result = {"tool_call_id": "call-1", "name": "search", "result": {"hits": 3}, "duration_ms": 12}
    first, replayed = await runs.commands.record_tool_result(ORG, run_id, result)
    again, replayed_again = await runs.commands.record_tool_result(
        ORG, run_id, {**result, "result": {"hits": 99}}
    )
    assert (replayed, replayed_again) == (False, True)
    assert again == first
    assert again.payload["result"] == {"hits": 3}
    assert [e.id for e in await runs.queries.tool_results(ORG, run_id)] == [first.id]
    duplicate = NewEvent("tool_finished", {"tool_call_id": "call-1", "name": "search"})
    with pytest.raises(Exception, match="already has a result"):
        await runs.commands.append(ORG, run_id, [duplicate])


async def test_claim_hands_over_recorded_tool_results_after_resume(runs: Runs) -> None:
    run_id = await running_run(runs)
    await runs.commands.record_tool_result(ORG, run_id, {"tool_call_id": "c1", "name": "fetch"})
    await runs.commands.append(ORG, run_id, [checkpoint("tool_result")])
    await runs.commands.change_status(ORG, run_id, RunStatus.TIMED_OUT)
    await runs.commands.resume(ORG, run_id)
    claim = await runs.commands.claim(ORG, "worker-2")
    assert claim is not None
    assert [e.payload["tool_call_id"] for e in claim.tool_results] == ["c1"]


async def test_foreign_runs_are_unknown(runs: Runs) -> None:
    run = await runs.commands.create(ORG, "agent-1")
    for attempt in (
        runs.queries.get("org-other", run.run_id),
        runs.commands.cancel("org-other", run.run_id),
        runs.commands.heartbeat("org-other", run.run_id),
        runs.commands.append("org-other", run.run_id, [NewEvent("custom.x", {})]),
    ):
        with pytest.raises(UnknownRun):
            await attempt


async def test_bad_status_payload_is_refused(runs: Runs) -> None:
    run_id = await running_run(runs)
    with pytest.raises(InvalidEvent, match="ends a run as completed"):
        await runs.commands.append(
            ORG,
            run_id,
            [NewEvent("run_status_changed", {"to": "failed", "stop_reason": "end_turn"})],
        )
    page = await runs.store.read(EventFilter(ORG, run_id=run_id))
    assert [e.event_type for e in page.events] == ["run_created", "run_status_changed"]


async def test_append_and_get_returns_the_run_as_the_read_model_has_it(runs: Runs) -> None:
    run_id = await running_run(runs)
    batches = [
        [NewEvent("tool_started", {"tool_call_id": "t1", "name": "search"})],
        [
            NewEvent("tool_finished", {"tool_call_id": "t1", "name": "search"}),
            NewEvent("step_completed", {"prompt_tokens": 7, "completion_tokens": 3}),
            checkpoint("input"),
        ],
        [NewEvent("run_status_changed", {"stop_reason": "end_turn"})],
    ]
    for batch in batches[:-1]:
        _, returned = await runs.commands.append_and_get(ORG, run_id, batch)
        assert returned == await runs.queries.get(ORG, run_id)
    ended, returned = await runs.commands.append_and_get(
        ORG, run_id, batches[-1], idempotency_key="end"
    )
    assert returned == await runs.queries.get(ORG, run_id)
    again, replayed = await runs.commands.append_and_get(
        ORG, run_id, batches[-1], idempotency_key="end"
    )
    assert again == ended
    assert replayed.status == RunStatus.COMPLETED
    assert replayed == await runs.queries.get(ORG, run_id)
