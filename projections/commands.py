"""Commands: read a run's state and append, atomically, as write units of the store.

Each command is a ``WriteContext`` unit: it runs on the writer thread inside the group
transaction, reads the read model there (which the projection keeps in that same transaction)
and appends. Two commands can never interleave between their read and their append, so a
command never appends an illegal transition, however many race.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventstore import (
    EVENT_COLUMNS,
    AgentEvent,
    AppendRequest,
    EventStore,
    EventType,
    NewEvent,
    PlainAppend,
    RunStatus,
    UnknownRun,
    WriteContext,
    event_columns,
    format_timestamp,
    normalise_payload,
    prepare_append,
)

from .errors import (
    DuplicateQuestion,
    NotWaitingOnHuman,
    QuestionMismatch,
    ResumeRefused,
    RunTerminal,
)
from .lifecycle import ACTIVE, CLAIMABLE, TERMINAL
from .readmodel import RUN_COLUMNS, RunProjection, load_state, state_from_row
from .state import RunState

__all__ = ["Claim", "RunCommands", "claim_query", "conversation_run", "new_run_id"]

_ACTIVE = tuple(sorted(s.value for s in ACTIVE))
_TERMINAL = tuple(sorted(s.value for s in TERMINAL))
_COMMAND_TYPES = frozenset({EventType.RUN_STATUS_CHANGED, EventType.HUMAN_INPUT_REQUESTED})
"""Appends that need a command unit: status changes get ``from``, questions are deduplicated."""
_RESUME_EVENTS = (
    EventType.HUMAN_INPUT.value,
    EventType.HUMAN_INPUT_REQUESTED.value,
    EventType.TOOL_STARTED.value,
)
_WAITING = (RunStatus.QUEUED.value, RunStatus.WAITING_ON_LANE.value)
_UNHELD = frozenset({RunStatus.QUEUED, RunStatus.WAITING_ON_LANE, RunStatus.WAITING_ON_HUMAN})
"""Runs no worker holds: a cancel ends them at once."""


def new_run_id(seed: str | None = None) -> str:
    return f"run-{_token(seed)}"


def _token(seed: str | None) -> str:
    if seed is None:
        return uuid.uuid4().hex
    return uuid.uuid5(uuid.NAMESPACE_URL, f"runtrack:{seed}").hex


@dataclass(frozen=True)
class Claim:
    """What a worker gets with a claimed run: the run, its latest checkpoint, its tool results,
    its questions and their answers, and the tool calls that started and never finished."""

    run: RunState
    checkpoint: AgentEvent | None
    tool_results: list[AgentEvent]
    human_inputs: list[AgentEvent] = dataclasses.field(default_factory=list)
    questions: list[AgentEvent] = dataclasses.field(default_factory=list)
    tool_calls_started: list[AgentEvent] = dataclasses.field(default_factory=list)


class RunCommands:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def create(
        self,
        organization_id: str,
        agent_id: str,
        *,
        conversation_id: str | None = None,
        lane_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        callback_url: str | None = None,
        parent_run_id: str | None = None,
        message: str | None = None,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> RunState:
        """Create a queued run (``waiting_on_lane`` when its lane has an active run).

        With an ``idempotency_key`` the run and conversation ids derive from the key, so a
        retried create returns the run the first attempt made instead of a second run.
        """
        seed = None if idempotency_key is None else f"{organization_id}/{idempotency_key}"
        run_id = run_id or new_run_id(seed)
        conversation_id = conversation_id or f"conv-{_token(seed)}"
        created = NewEvent(
            EventType.RUN_CREATED,
            {
                "agent_id": agent_id,
                "lane_key": lane_key or f"conversation:{conversation_id}",
                "metadata": dict(metadata or {}),
                "callback_url": callback_url,
                "parent_run_id": parent_run_id,
            },
        )
        events = [created]
        if message is not None:
            events.append(NewEvent(EventType.MESSAGE_CREATED, {"role": "user", "content": message}))
        request = prepare_append(
            organization_id,
            run_id,
            events,
            conversation_id=conversation_id,
            idempotency_key=idempotency_key,
        )
        lane = lane_key or f"conversation:{conversation_id}"

        def unit(context: WriteContext) -> RunState:
            existed = _current(context, run_id) is not None
            context.append(request)  # a matching retry returns the first attempt's events
            if not existed and _lane_holder(context, organization_id, lane, run_id) is not None:
                _change(
                    context,
                    organization_id,
                    run_id,
                    RunStatus.WAITING_ON_LANE,
                    detail="another run of this lane is active",
                )
            return _state(context, organization_id, run_id)

        return await self._store.transact(unit)

    async def append(
        self,
        organization_id: str,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        expected_sequence: int | None = None,
        idempotency_key: str | None = None,
    ) -> list[AgentEvent]:
        """Append a worker's events; status changes get their ``from`` filled in."""
        appended, _ = await self.append_and_get(
            organization_id,
            run_id,
            events,
            expected_sequence=expected_sequence,
            idempotency_key=idempotency_key,
        )
        return appended

    async def append_and_get(
        self,
        organization_id: str,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        expected_sequence: int | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[list[AgentEvent], RunState]:
        """``append``, and the run as it is after it (read in the same transaction)."""
        if not any(e.event_type in _COMMAND_TYPES for e in events):
            # Nothing to fill in: prepared here, once, and appended as a plain unit.
            request = prepare_append(
                organization_id,
                run_id,
                events,
                expected_sequence=expected_sequence,
                idempotency_key=idempotency_key,
            )
            return await self._store.transact(_AppendAndGet(request))
        as_sent = None
        if idempotency_key is not None:  # a retry must match what was sent, before ``from``
            as_sent = prepare_append(organization_id, run_id, events).fingerprint()

        def unit(context: WriteContext) -> tuple[list[AgentEvent], RunState]:
            state = _state(context, organization_id, run_id)
            fresh, replayed = _new_questions(context, run_id, events)
            appended: list[AgentEvent] = []
            if fresh:
                request = prepare_append(
                    organization_id,
                    run_id,
                    _with_from(state.status, fresh),
                    expected_sequence=expected_sequence,
                    idempotency_key=idempotency_key,
                )
                if as_sent is not None:
                    request = dataclasses.replace(request, sent_fingerprint=as_sent)
                appended = context.append(request)
            return _in_order(appended, replayed), _state(context, organization_id, run_id)

        return await self._store.transact(unit)

    async def change_status(
        self,
        organization_id: str,
        run_id: str,
        to: RunStatus | None = None,
        *,
        stop_reason: str | None = None,
        detail: str | None = None,
    ) -> RunState:
        payload = {"to": to, "stop_reason": stop_reason, "detail": detail}
        event = NewEvent(EventType.RUN_STATUS_CHANGED, payload)

        def unit(context: WriteContext) -> RunState:
            state = _state(context, organization_id, run_id)
            request = prepare_append(organization_id, run_id, _with_from(state.status, [event]))
            context.append(request)
            return _state(context, organization_id, run_id)

        return await self._store.transact(unit)

    async def cancel(
        self, organization_id: str, run_id: str, *, reason: str | None = None
    ) -> RunState:
        """Flag a live run for cancellation; a run no worker holds is cancelled at once."""
        return await self._store.transact(
            lambda context: _cancel(context, organization_id, run_id, reason)
        )

    async def cancel_conversation(
        self, organization_id: str, conversation_id: str, *, reason: str | None = None
    ) -> RunState | None:
        """Cancel the conversation's current run (``conversation_run``); None when it has no
        run that has not ended. Found and cancelled in one unit: no run can slip in between."""

        def unit(context: WriteContext) -> RunState | None:
            rows = context.tx.fetchall(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE organization_id = ? "
                f"AND conversation_id = ? AND status NOT IN ({_marks(_TERMINAL)})",
                (organization_id, conversation_id, *_TERMINAL),
            )
            current = conversation_run([state_from_row(row) for row in rows])
            if current is None:
                return None
            return _cancel(context, organization_id, current.run_id, reason)

        return await self._store.transact(unit)

    async def resume(self, organization_id: str, run_id: str) -> RunState:
        """Move a failed or timed-out run to ``resuming`` when its checkpoint allows it, or to
        ``waiting_on_lane`` (the back of its lane's queue) while another run holds the lane."""

        def unit(context: WriteContext) -> RunState:
            state = _state(context, organization_id, run_id)
            _check_resumable(state)
            holder = _lane_holder(context, organization_id, state.lane_key, run_id)
            if holder is None:
                to, detail = RunStatus.RESUMING, "resuming from the latest checkpoint"
            else:
                to, detail = RunStatus.WAITING_ON_LANE, f"resumed; waiting for run {holder}"
            _change(context, organization_id, run_id, to, detail=detail)
            return _state(context, organization_id, run_id)

        return await self._store.transact(unit)

    async def answer(
        self,
        organization_id: str,
        run_id: str,
        response: Any,
        *,
        question_id: str | None = None,
        answered_by: str | None = None,
    ) -> RunState:
        """Record a person's answer and move the run on through its lane: ``queued`` when no
        run holds the lane, else ``waiting_on_lane``. Read and written in one unit, so of two
        racing answers only the first moves the run; the second finds it no longer waiting."""

        def unit(context: WriteContext) -> RunState:
            state = _state(context, organization_id, run_id)
            answered = _answered_question(state, question_id)
            payload = {"question_id": answered, "response": response, "answered_by": answered_by}
            holder = _lane_holder(context, organization_id, state.lane_key, run_id)
            to = RunStatus.QUEUED if holder is None else RunStatus.WAITING_ON_LANE
            detail = "answered" if holder is None else f"answered; waiting for run {holder}"
            change = {"from": state.status.value, "to": to.value, "detail": detail}
            _append(
                context,
                organization_id,
                run_id,
                NewEvent(EventType.HUMAN_INPUT, payload),
                NewEvent(EventType.RUN_STATUS_CHANGED, change),
            )
            return _state(context, organization_id, run_id)

        return await self._store.transact(unit)

    async def heartbeat(
        self, organization_id: str, run_id: str, *, worker_id: str | None = None
    ) -> RunState:
        """Record liveness without appending to the log; returns the run (and its cancel flag)."""

        def unit(context: WriteContext) -> RunState:
            state = _state(context, organization_id, run_id)
            _touch(context, run_id, worker_id)
            return state

        return await self._store.transact(unit)

    async def claim(
        self,
        organization_id: str,
        worker_id: str,
        *,
        agent_id: str | None = None,
        lane_key: str | None = None,
    ) -> Claim | None:
        """Atomically start the oldest claimable run whose lane is free; None when there is none."""

        def unit(context: WriteContext) -> Claim | None:
            run_id = _claimable(context, organization_id, agent_id, lane_key)
            if run_id is None:
                return None
            if _state(context, organization_id, run_id).resume_pending:
                _change(context, organization_id, run_id, RunStatus.RESUMING, detail="lane free")
            _change(
                context,
                organization_id,
                run_id,
                RunStatus.RUNNING,
                detail=f"claimed by {worker_id}",
            )
            _touch(context, run_id, worker_id)
            state = _state(context, organization_id, run_id)
            _hold_back_lane(context, organization_id, state.lane_key, run_id)
            return _claim_bundle(context, state)

        return await self._store.transact(unit)

    async def record_tool_result(
        self,
        organization_id: str,
        run_id: str,
        payload: Mapping[str, Any],
    ) -> tuple[AgentEvent, bool]:
        """Record a tool call's result once; a repeat returns the recorded one (``True``)."""
        event = NewEvent(EventType.TOOL_FINISHED, dict(payload))
        request = prepare_append(organization_id, run_id, [event])
        call_id = str(json.loads(request.events[0].payload_json)["tool_call_id"])

        def unit(context: WriteContext) -> tuple[AgentEvent, bool]:
            _state(context, organization_id, run_id)
            recorded = _recorded_tool_result(context, run_id, call_id)
            if recorded is not None:
                return recorded, True
            return context.append(request)[0], False

        return await self._store.transact(unit)


@dataclass(frozen=True)
class _AppendAndGet(PlainAppend[tuple[list[AgentEvent], RunState]]):
    """A plain append that answers with the run after it: it checks the run exists for the
    caller's organization, appends, and only reads (from the writer's cache, on a hot run)."""

    request: AppendRequest

    def __call__(self, context: WriteContext) -> tuple[list[AgentEvent], RunState]:
        organization_id, run_id = self.request.organization_id, self.request.run_id
        _state(context, organization_id, run_id)
        appended = context.append(self.request)
        return appended, _state(context, organization_id, run_id)


def _state(context: WriteContext, organization_id: str, run_id: str) -> RunState:
    state = _current(context, run_id)
    if state is None or state.organization_id != organization_id:
        raise UnknownRun(f"run {run_id} not found", run_id=run_id)
    return state


def _current(context: WriteContext, run_id: str) -> RunState | None:
    """The run in this transaction: the writer's cached state when it is current."""
    for projection in context.projections:
        if isinstance(projection, RunProjection):
            return projection.state(context.tx, run_id, context.run_sequence(run_id))
    return load_state(context.tx, run_id)


def _with_from(status: RunStatus, events: Sequence[NewEvent]) -> list[NewEvent]:
    """Fill ``from`` in each status change with the status the run will have reached."""
    filled: list[NewEvent] = []
    for event in events:
        if event.event_type == EventType.RUN_STATUS_CHANGED and isinstance(event.payload, Mapping):
            payload = {**event.payload, "from": status.value}
            filled.append(NewEvent(event.event_type, payload, event.visibility))
            status = _target(payload, status)
        else:
            filled.append(event)
    return filled


def _target(payload: Mapping[str, Any], current: RunStatus) -> RunStatus:
    try:
        return RunStatus(normalise_payload(EventType.RUN_STATUS_CHANGED, payload)["to"])
    except Exception:  # the append itself reports the invalid payload
        return current


def _append(context: WriteContext, organization_id: str, run_id: str, *events: NewEvent) -> None:
    context.append(prepare_append(organization_id, run_id, list(events)))


def _change(
    context: WriteContext,
    organization_id: str,
    run_id: str,
    to: RunStatus,
    *,
    stop_reason: str | None = None,
    detail: str | None = None,
) -> None:
    state = _state(context, organization_id, run_id)
    payload = {
        "from": state.status.value,
        "to": to.value,
        "stop_reason": stop_reason,
        "detail": detail,
    }
    _append(context, organization_id, run_id, NewEvent(EventType.RUN_STATUS_CHANGED, payload))


def _lane_holder(
    context: WriteContext, organization_id: str, lane_key: str, run_id: str
) -> str | None:
    """The active run of the organization's lane other than ``run_id``, if any."""
    row = context.tx.fetchone(
        "SELECT run_id FROM runs WHERE organization_id = ? AND lane_key = ? "
        f"AND status IN ({_marks(_ACTIVE)}) AND run_id <> ? LIMIT 1",
        (organization_id, lane_key, *_ACTIVE, run_id),
    )
    return None if row is None else str(row[0])


def _claimable(
    context: WriteContext, organization_id: str, agent_id: str | None, lane_key: str | None
) -> str | None:
    row = context.tx.fetchone(*claim_query(organization_id, agent_id, lane_key))
    return None if row is None else str(row[0])


def claim_query(
    organization_id: str, agent_id: str | None, lane_key: str | None
) -> tuple[str, list[str]]:
    """The oldest claimable run whose lane is free and which is first in its lane's queue
    (the order runs joined it: created, resumed into it, answered; ``lane_position``), or a
    ``resuming`` run, which holds its lane already.

    A lane is ``(organization, lane_key)``: both subqueries match the candidate's organization,
    which ``runs_by_lane`` leads with, so each is an index search.
    """
    claimable = tuple(sorted(s.value for s in CLAIMABLE))
    filters, params = "", list[str]()
    if agent_id is not None:
        filters, params = filters + " AND r.agent_id = ?", [*params, agent_id]
    if lane_key is not None:
        filters, params = filters + " AND r.lane_key = ?", [*params, lane_key]
    sql = (
        f"SELECT r.run_id FROM runs r WHERE r.organization_id = ? "
        f"AND r.status IN ({_marks(claimable)}){filters} "
        "AND (r.status = ? OR (NOT EXISTS (SELECT 1 FROM runs a "
        "WHERE a.organization_id = r.organization_id AND a.lane_key = r.lane_key "
        f"AND a.status IN ({_marks(_ACTIVE)})) "
        "AND NOT EXISTS (SELECT 1 FROM runs o "
        "WHERE o.organization_id = r.organization_id AND o.lane_key = r.lane_key "
        f"AND o.status IN ({_marks(_WAITING)}) AND o.lane_position < r.lane_position))) "
        "ORDER BY r.created_event_id LIMIT 1"
    )
    values = [organization_id, *claimable, *params, RunStatus.RESUMING.value, *_ACTIVE, *_WAITING]
    return sql, values


def _hold_back_lane(
    context: WriteContext, organization_id: str, lane_key: str, running: str
) -> None:
    """Queued runs behind a run that just became active now wait on their lane."""
    rows = context.tx.fetchall(
        "SELECT run_id FROM runs WHERE organization_id = ? AND lane_key = ? AND status = ? "
        "AND run_id <> ? ORDER BY created_event_id",
        (organization_id, lane_key, RunStatus.QUEUED.value, running),
    )
    for (run_id,) in rows:
        _change(
            context,
            organization_id,
            run_id,
            RunStatus.WAITING_ON_LANE,
            detail=f"waiting for run {running}",
        )


def _touch(context: WriteContext, run_id: str, worker_id: str | None) -> None:
    context.tx.execute(
        "INSERT INTO run_liveness (run_id, last_heartbeat_at, worker_id) VALUES (?, ?, ?) "
        "ON CONFLICT (run_id) DO UPDATE SET last_heartbeat_at = excluded.last_heartbeat_at, "
        "worker_id = COALESCE(excluded.worker_id, run_liveness.worker_id)",
        (run_id, _now(), worker_id),
    )


def _check_resumable(state: RunState) -> None:
    if state.status is RunStatus.CANCELLED:
        raise ResumeRefused(
            "a cancelled run never resumes", run_id=state.run_id, current_status=state.status.value
        )
    if state.status not in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        raise ResumeRefused(
            f"only failed or timed-out runs resume; run {state.run_id} is {state.status.value}",
            run_id=state.run_id,
            current_status=state.status.value,
        )
    if not state.resume_available:
        kind = state.checkpoint_kind or "none"
        raise ResumeRefused(
            f"run {state.run_id} has no resumable checkpoint (latest: {kind})",
            run_id=state.run_id,
            current_status=state.status.value,
            checkpoint_kind=kind,
        )


def _claim_bundle(context: WriteContext, state: RunState) -> Claim:
    context.flush()  # the claim reads the events table: write the group's buffered events first
    checkpoint = None
    if state.checkpoint_id is not None:
        row = context.tx.fetchone(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ? AND event_type = ? "
            "ORDER BY sequence DESC LIMIT 1",
            (state.run_id, EventType.CHECKPOINT_CREATED.value),
        )
        checkpoint = None if row is None else AgentEvent.from_row(row)
    rows = context.tx.fetchall(
        f"SELECT {event_columns('e')} FROM tool_results t JOIN events e ON e.id = t.event_id "
        "WHERE t.run_id = ? ORDER BY e.id",
        (state.run_id,),
    )
    results = [AgentEvent.from_row(row) for row in rows]
    kept = context.tx.fetchall(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ? "
        f"AND event_type IN ({_marks(_RESUME_EVENTS)}) ORDER BY sequence",
        (state.run_id, *_RESUME_EVENTS),
    )
    by_type: dict[str, list[AgentEvent]] = {name: [] for name in _RESUME_EVENTS}
    for row in kept:
        event = AgentEvent.from_row(row)
        by_type[event.event_type].append(event)
    finished = {event.payload["tool_call_id"] for event in results}
    unfinished = [
        event
        for event in by_type[EventType.TOOL_STARTED]
        if event.payload["tool_call_id"] not in finished
    ]
    return Claim(
        state,
        checkpoint,
        results,
        human_inputs=by_type[EventType.HUMAN_INPUT],
        questions=by_type[EventType.HUMAN_INPUT_REQUESTED],
        tool_calls_started=unfinished,
    )


def conversation_run(runs: Sequence[RunState]) -> RunState | None:
    """A conversation's current run among ``runs``: the one holding a lane, else the one that
    has waited longest (the oldest that has not ended). The status panel shows this run and the
    conversation's cancel acts on it."""
    live = [run for run in runs if not run.terminal]
    holding = [run for run in live if run.status in ACTIVE]
    candidates = holding or live
    return min(candidates, key=lambda run: run.created_event_id) if candidates else None


def _cancel(
    context: WriteContext, organization_id: str, run_id: str, reason: str | None
) -> RunState:
    state = _state(context, organization_id, run_id)
    if state.status in TERMINAL:
        raise RunTerminal(
            f"run {run_id} is already {state.status.value}",
            run_id=run_id,
            current_status=state.status.value,
        )
    if not state.cancel_requested:
        _append(
            context,
            organization_id,
            run_id,
            NewEvent(EventType.CANCEL_REQUESTED, {"reason": reason}),
        )
    if state.status in _UNHELD:
        _change(
            context,
            organization_id,
            run_id,
            RunStatus.CANCELLED,
            stop_reason="cancelled",
            detail=reason or "cancelled before it started",
        )
    return _state(context, organization_id, run_id)


def _answered_question(state: RunState, question_id: str | None) -> str | None:
    """The question an answer is for: the one named, which must be the open one if any."""
    if state.status is not RunStatus.WAITING_ON_HUMAN:
        raise NotWaitingOnHuman(
            f"run {state.run_id} is {state.status.value}, not waiting on a human",
            run_id=state.run_id,
            current_status=state.status.value,
        )
    open_id = None if state.question is None else state.question["question_id"]
    if question_id is not None and open_id is not None and question_id != open_id:
        raise QuestionMismatch(
            f"run {state.run_id} waits for an answer to {open_id}, not {question_id}",
            run_id=state.run_id,
            open_question_id=open_id,
        )
    return question_id or open_id


def _new_questions(
    context: WriteContext, run_id: str, events: Sequence[NewEvent]
) -> tuple[list[NewEvent], list[AgentEvent]]:
    """The events to append, without questions already asked in the same words; those are
    replayed as the recorded event. A question id asked
    again with other words is refused."""
    if not any(e.event_type == EventType.HUMAN_INPUT_REQUESTED for e in events):
        return list(events), []
    recorded = _recorded_questions(context, run_id)
    fresh: list[NewEvent] = []
    replayed: list[AgentEvent] = []
    batch: set[str] = set()
    for event in events:
        if event.event_type != EventType.HUMAN_INPUT_REQUESTED:
            fresh.append(event)
            continue
        payload = normalise_payload(EventType.HUMAN_INPUT_REQUESTED, event.payload)
        question_id = payload["question_id"]
        known = recorded.get(question_id)
        if question_id in batch or (known is not None and known.payload != payload):
            raise DuplicateQuestion(
                f"question {question_id} was already asked with another question",
                run_id=run_id,
                question_id=question_id,
            )
        batch.add(question_id)
        if known is None:
            fresh.append(event)
        else:
            replayed.append(known)
    return fresh, replayed


def _recorded_questions(context: WriteContext, run_id: str) -> dict[str, AgentEvent]:
    context.flush()  # reads the events table: write the group's buffered events first
    rows = context.tx.fetchall(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id = ? AND event_type = ? ORDER BY sequence",
        (run_id, EventType.HUMAN_INPUT_REQUESTED.value),
    )
    events = [AgentEvent.from_row(row) for row in rows]
    return {event.payload["question_id"]: event for event in events}


def _in_order(appended: list[AgentEvent], replayed: list[AgentEvent]) -> list[AgentEvent]:
    """The answer's events in log order: those appended and the recorded questions replayed
    (an idempotent retry may return a replayed question among its own events: once each)."""
    if not replayed:
        return appended
    return sorted({event.id: event for event in [*replayed, *appended]}.values(), key=_event_id)


def _event_id(event: AgentEvent) -> int:
    return event.id


def _recorded_tool_result(context: WriteContext, run_id: str, call_id: str) -> AgentEvent | None:
    context.flush()
    row = context.tx.fetchone(
        f"SELECT {event_columns('e')} FROM tool_results t JOIN events e ON e.id = t.event_id "
        "WHERE t.run_id = ? AND t.tool_call_id = ?",
        (run_id, call_id),
    )
    return None if row is None else AgentEvent.from_row(row)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


def _now() -> str:
    return format_timestamp(datetime.now(UTC))
