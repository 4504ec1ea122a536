"""Every (from, to) pair of the transition table, allowed and refused, through the real fold."""

from __future__ import annotations

import itertools

import pytest

from eventstore import AgentEvent, CheckpointKind
from projections import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    RunState,
    RunStatus,
    check_transition,
    evolve,
    resume_available,
)

PAIRS = list(itertools.product(RunStatus, RunStatus))


def state_in(status: RunStatus, *, can_resume: bool = True) -> RunState:
    return RunState(
        run_id="run-1",
        organization_id="org",
        conversation_id="conv",
        agent_id="agent",
        lane_key="lane",
        parent_run_id=None,
        status=status,
        created_at="2026-01-01T00:00:00.000000+00:00",
        created_event_id=1,
        last_event_id=1,
        last_sequence=1,
        updated_at="2026-01-01T00:00:00.000000+00:00",
        status_changed_at="2026-01-01T00:00:00.000000+00:00",
        checkpoint_kind="input" if can_resume else "final",
        resume_available=can_resume,
        resume_pending=can_resume and status is RunStatus.WAITING_ON_LANE,
    )


def status_event(target: RunStatus) -> AgentEvent:
    return AgentEvent(
        2,
        "org",
        "run-1",
        "conv",
        2,
        "run_status_changed",
        "user",
        f'{{"detail":null,"from":null,"last_heartbeat_at":null,"stop_reason":null,"to":"{target.value}"}}',
        "2026-01-01T00:00:01.000000+00:00",
        "0" * 64,
        "0" * 64,
    )


def test_the_table_names_every_status() -> None:
    assert set(TRANSITIONS) == set(RunStatus)
    resumes = {RunStatus.RESUMING, RunStatus.WAITING_ON_LANE}  # a resume, now or once free
    assert all(not TRANSITIONS[s] - resumes for s in TERMINAL)


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_each_pair_is_allowed_exactly_when_the_table_says(
    current: RunStatus, target: RunStatus
) -> None:
    state = state_in(current)
    if target in TRANSITIONS[current]:
        after = evolve(state, status_event(target))
        assert after.status is target
        assert state.status is current  # the fold never changes its input
    else:
        with pytest.raises(IllegalTransition) as refused:
            evolve(state, status_event(target))
        assert refused.value.details["current_status"] == current.value
        assert refused.value.details["allowed"] == [
            s.value for s in RunStatus if s in TRANSITIONS[current]
        ]


@pytest.mark.parametrize("current", [RunStatus.FAILED, RunStatus.TIMED_OUT])
def test_resume_needs_a_resumable_checkpoint(current: RunStatus) -> None:
    with pytest.raises(IllegalTransition, match="no resumable checkpoint") as refused:
        evolve(state_in(current, can_resume=False), status_event(RunStatus.RESUMING))
    assert refused.value.details["allowed"] == []


@pytest.mark.parametrize("current", [RunStatus.FAILED, RunStatus.TIMED_OUT])
def test_a_resume_into_the_lane_queue_needs_a_resumable_checkpoint(current: RunStatus) -> None:
    state = state_in(current, can_resume=False)
    with pytest.raises(IllegalTransition, match="no resumable checkpoint"):
        evolve(state, status_event(RunStatus.WAITING_ON_LANE))
    waiting = evolve(state_in(current), status_event(RunStatus.WAITING_ON_LANE))
    assert waiting.resume_pending
    assert not waiting.resume_available
    assert waiting.error is None
    assert waiting.completed_at is None
    assert waiting.lane_position == 2  # the resume's event: the back of the lane's queue


def test_only_a_resumed_run_moves_from_waiting_on_lane_to_resuming() -> None:
    with pytest.raises(IllegalTransition, match="only a resumed run"):
        evolve(
            state_in(RunStatus.WAITING_ON_LANE, can_resume=False), status_event(RunStatus.RESUMING)
        )
    resumed = evolve(state_in(RunStatus.WAITING_ON_LANE), status_event(RunStatus.RESUMING))
    assert resumed.status is RunStatus.RESUMING
    assert not resumed.resume_pending


def test_a_cancelled_run_never_resumes() -> None:
    with pytest.raises(IllegalTransition, match="never resumes"):
        check_transition(RunStatus.CANCELLED, RunStatus.RESUMING, can_resume=True)


@pytest.mark.parametrize("kind", list(CheckpointKind))
@pytest.mark.parametrize("status", list(RunStatus))
def test_resume_available_follows_status_and_checkpoint_kind(
    status: RunStatus, kind: CheckpointKind
) -> None:
    expected = status in (RunStatus.FAILED, RunStatus.TIMED_OUT) and kind not in (
        CheckpointKind.HUMAN_PAUSE,
        CheckpointKind.FINAL,
    )
    assert resume_available(status, kind.value) is expected
    assert resume_available(status, None) is False


def test_terminal_transitions_set_completion_fields() -> None:
    ended = evolve(state_in(RunStatus.RUNNING), status_event(RunStatus.FAILED))
    assert ended.completed_at == "2026-01-01T00:00:01.000000+00:00"
    assert ended.total_duration_ns == 1_000_000_000
    assert ended.stop_reason == "error"
    assert ended.resume_available  # the latest checkpoint kind is input


def test_active_statuses_hold_the_lane() -> None:
    assert {
        RunStatus.RUNNING,
        RunStatus.WAITING_ON_TOOL,
        RunStatus.WAITING_ON_CHILD,
        RunStatus.RESUMING,
    } == ACTIVE
