"""The reconciler: nothing stays stuck.

One pass is one write unit, so it is atomic and idempotent: two passes (two servers, or the same
one twice) are serialised by the write lock, and the second finds nothing left to do. Rules:

- an active run (running, waiting_on_tool, waiting_on_child, resuming) with no sign of life
  (heartbeat or appended event) for ``heartbeat_timeout`` → ``timed_out``, recording the last
  sign of life; ``resume_available`` follows from its latest checkpoint;
- a queued or waiting_on_lane run waiting longer than ``queue_timeout`` → ``failed``
  (``queue_timeout``);
- a live run whose cancel was requested more than ``cancel_timeout`` ago → ``cancelled``. Cancel
  wins: a run with a pending cancel is never timed out, so it never becomes resumable;
- ``waiting_on_human`` is never timed out.

The clock is a parameter (``now``), so the rules are tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eventstore import (
    EventStore,
    EventType,
    NewEvent,
    RunStatus,
    WriteContext,
    format_timestamp,
    prepare_append,
)

from .lifecycle import ACTIVE, TERMINAL
from .readmodel import RUN_COLUMNS, state_from_row
from .state import RunState

__all__ = ["ReconcileReport", "Thresholds", "reconcile"]

_ACTIVE = tuple(sorted(s.value for s in ACTIVE))
_QUEUED = (RunStatus.QUEUED.value, RunStatus.WAITING_ON_LANE.value)
_TERMINAL = tuple(sorted(s.value for s in TERMINAL))


@dataclass(frozen=True)
class Thresholds:
    heartbeat_timeout: float = 300.0
    queue_timeout: float = 3600.0
    cancel_timeout: float = 180.0


@dataclass
class ReconcileReport:
    timed_out: list[str] = field(default_factory=list)
    queue_timed_out: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.timed_out) + len(self.queue_timed_out) + len(self.cancelled)


async def reconcile(
    store: EventStore, thresholds: Thresholds, *, now: datetime | None = None
) -> ReconcileReport:
    """One pass over every organization's live runs."""
    moment = now or datetime.now(UTC)
    return await store.transact(lambda context: _pass(context, thresholds, moment))


def _pass(context: WriteContext, thresholds: Thresholds, now: datetime) -> ReconcileReport:
    report = ReconcileReport()
    for run, _ in _stale_cancels(context, now - _seconds(thresholds.cancel_timeout)):
        _end(
            context, run, RunStatus.CANCELLED, "cancelled", "cancel requested and not acknowledged"
        )
        report.cancelled.append(run.run_id)
    for run, last_beat in _silent_active_runs(
        context, now - _seconds(thresholds.heartbeat_timeout)
    ):
        detail = f"no heartbeat since {last_beat}"
        _end(context, run, RunStatus.TIMED_OUT, "timed_out", detail, last_heartbeat_at=last_beat)
        report.timed_out.append(run.run_id)
    for run, _ in _expired_queue(context, now - _seconds(thresholds.queue_timeout)):
        _end(context, run, RunStatus.FAILED, "queue_timeout", "no worker claimed it in time")
        report.queue_timed_out.append(run.run_id)
    return report


def _candidates(
    context: WriteContext, where: str, params: tuple[object, ...]
) -> list[tuple[RunState, str]]:
    rows = context.tx.fetchall(
        f"SELECT {_prefixed('r')}, l.last_heartbeat_at FROM runs r "
        f"LEFT JOIN run_liveness l ON l.run_id = r.run_id WHERE {where} "
        "ORDER BY r.created_event_id",
        params,
    )
    found = []
    for row in rows:
        run = state_from_row(row[:-1])
        found.append((run, _latest(run.updated_at, row[-1])))
    return found


def _stale_cancels(context: WriteContext, before: datetime) -> list[tuple[RunState, str]]:
    return _candidates(
        context,
        f"r.cancel_requested = 1 AND r.status NOT IN ({_marks(_TERMINAL)}) "
        "AND r.cancel_requested_at < ?",
        (*_TERMINAL, format_timestamp(before)),
    )


def _silent_active_runs(context: WriteContext, before: datetime) -> list[tuple[RunState, str]]:
    cutoff = format_timestamp(before)
    found = _candidates(
        context,
        f"r.status IN ({_marks(_ACTIVE)}) AND r.cancel_requested = 0 AND r.updated_at < ?",
        (*_ACTIVE, cutoff),
    )
    return [(run, beat) for run, beat in found if beat < cutoff]


def _expired_queue(context: WriteContext, before: datetime) -> list[tuple[RunState, str]]:
    return _candidates(
        context,
        f"r.status IN ({_marks(_QUEUED)}) AND r.cancel_requested = 0 AND r.status_changed_at < ?",
        (*_QUEUED, format_timestamp(before)),
    )


def _end(
    context: WriteContext,
    run: RunState,
    to: RunStatus,
    stop_reason: str,
    detail: str,
    *,
    last_heartbeat_at: str | None = None,
) -> None:
    payload = {
        "from": run.status.value,
        "to": to.value,
        "stop_reason": stop_reason,
        "detail": detail,
        "last_heartbeat_at": last_heartbeat_at,
    }
    event = NewEvent(EventType.RUN_STATUS_CHANGED, payload)
    context.append(prepare_append(run.organization_id, run.run_id, [event]))


def _latest(updated_at: str, heartbeat: str | None) -> str:
    """The last sign of life: the later of the last event and the last heartbeat."""
    return max(updated_at, heartbeat or "")


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{column}" for column in RUN_COLUMNS.split(", "))


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
