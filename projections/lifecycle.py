"""The run lifecycle as data: statuses, the transition table, stop reasons, resume rules.

Everything that decides whether a status change is allowed reads this module; nothing else holds
a list of statuses. ``docs/lifecycle.md`` draws the table.
"""

from __future__ import annotations

from eventstore import STATUS_FOR_STOP_REASON, CheckpointKind, RunStatus, StopReason

from .errors import IllegalTransition

__all__ = [
    "ACTIVE",
    "CLAIMABLE",
    "LANE_QUEUE",
    "RESUMABLE_CHECKPOINTS",
    "STATUS_FOR_STOP_REASON",
    "TERMINAL",
    "TRANSITIONS",
    "RunStatus",
    "StopReason",
    "allowed_targets",
    "check_transition",
    "resume_available",
]

S = RunStatus

TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMED_OUT})
"""Runs that have ended."""

ACTIVE = frozenset({S.RUNNING, S.WAITING_ON_TOOL, S.WAITING_ON_CHILD, S.RESUMING})
"""Runs that hold their lane: at most one per lane."""

CLAIMABLE = frozenset({S.QUEUED, S.WAITING_ON_LANE, S.RESUMING})
"""Runs a worker may claim (a resuming run already holds its lane and waits for a worker)."""

LANE_QUEUE = frozenset({S.QUEUED, S.WAITING_ON_LANE})
"""Runs waiting in their lane's queue, served in the order they joined it (``lane_position``)."""

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.QUEUED: frozenset({S.WAITING_ON_LANE, S.RUNNING, S.CANCELLED, S.FAILED}),
    S.WAITING_ON_LANE: frozenset({S.QUEUED, S.RUNNING, S.RESUMING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.WAITING_ON_TOOL, S.WAITING_ON_CHILD, S.WAITING_ON_HUMAN} | TERMINAL),
    S.WAITING_ON_TOOL: frozenset({S.RUNNING, S.WAITING_ON_HUMAN} | TERMINAL),
    S.WAITING_ON_CHILD: frozenset({S.RUNNING} | TERMINAL),
    S.WAITING_ON_HUMAN: frozenset(
        {S.QUEUED, S.WAITING_ON_LANE, S.RUNNING, S.COMPLETED, S.FAILED, S.CANCELLED}
    ),
    S.RESUMING: frozenset(
        {S.RUNNING, S.WAITING_ON_TOOL, S.WAITING_ON_CHILD, S.WAITING_ON_HUMAN} | TERMINAL
    ),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.RESUMING, S.WAITING_ON_LANE}),
    S.CANCELLED: frozenset(),
    S.TIMED_OUT: frozenset({S.RESUMING, S.WAITING_ON_LANE}),
}
"""Every allowed (from, to) pair. Out of failed/timed_out (a resume) also needs
``resume_available``; waiting_on_lane → resuming only for a resumed run (``resume_pending``)."""

_RESUMES = frozenset({S.FAILED, S.TIMED_OUT})
_RESUMING = S.RESUMING
"""As a module name: a member looked up on the enum class costs ten times a global (per event)."""

RESUMABLE_CHECKPOINTS = frozenset(
    {
        CheckpointKind.INPUT,
        CheckpointKind.LLM_RESPONSE,
        CheckpointKind.TOOL_RESULT,
        CheckpointKind.JOURNAL_UPDATE,
    }
)
"""Checkpoint kinds after which the next action is safe to replay."""


def resume_available(status: RunStatus, checkpoint_kind: str | None) -> bool:
    """A failed or timed-out run may resume from a resumable latest checkpoint; nothing else may."""
    return status in _RESUMES and checkpoint_kind in RESUMABLE_CHECKPOINTS


def allowed_targets(current: RunStatus, *, can_resume: bool) -> list[RunStatus]:
    """The statuses ``current`` may move to now, in a stable order (for error messages)."""
    targets = TRANSITIONS[current]
    if current in _RESUMES and not can_resume:
        targets = frozenset()
    elif not can_resume:
        targets = targets - {S.RESUMING}
    return [status for status in RunStatus if status in targets]


def check_transition(current: RunStatus, target: RunStatus, *, can_resume: bool) -> None:
    """Raise IllegalTransition, naming the current status and the allowed targets, if refused."""
    if target in TRANSITIONS[current] and (
        can_resume or (target is not _RESUMING and current not in _RESUMES)
    ):
        return
    allowed = allowed_targets(current, can_resume=can_resume)
    reason = _refusal_reason(current, target)
    raise IllegalTransition(
        f"cannot move a {current.value} run to {target.value}: {reason}",
        current_status=current.value,
        requested_status=target.value,
        allowed=[status.value for status in allowed],
    )


def _refusal_reason(current: RunStatus, target: RunStatus) -> str:
    if current is S.CANCELLED and target is S.RESUMING:
        return "a cancelled run never resumes"
    if current in _RESUMES and target in TRANSITIONS[current]:
        return "no resumable checkpoint (needs input, llm_response, tool_result or journal_update)"
    if current is S.WAITING_ON_LANE and target is S.RESUMING:
        return "only a resumed run waiting for its lane moves to resuming"
    if current in TERMINAL:
        return "the run has ended"
    return "not an allowed transition"
