"""The SSE channels (run, conversation, firehose), the conversation status panel and cancel."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.client.models import AgentStatus, CancelBody, Panel, Question, Recovery
from api.server import query
from api.server.auth import Principal, Role, cap, require
from api.server.errors import ApiError
from api.server.input_limits import bounded_int, identifier
from api.server.routes._common import (
    commands,
    event_page,
    json_response,
    queries,
    read_optional_body,
    store,
    wants_stream,
)
from api.server.sse import Channel, open_stream, resolve_cursor, resolve_visibility
from api.server.wire import run_json
from eventstore import CursorExpired, EventFilter, UnknownRun
from projections import (
    ACTIVE,
    TERMINAL,
    RunFilter,
    RunState,
    RunStatus,
    conversation_run,
    seen_at,
)

__all__ = ["conversation_status", "routes", "run_stream"]


async def run_stream(
    request: Request, principal: Principal, run_id: str, *, conversation_id: str | None
) -> Response:
    """A run channel: replays the run, follows it live, ends when it reaches a terminal status."""
    run = await queries(request).get(principal.organization_id, run_id)
    if conversation_id is not None and run.conversation_id != conversation_id:
        raise UnknownRun(f"run {run_id} not found in conversation {conversation_id}")
    visibility = resolve_visibility(request, principal)
    cursor = resolve_cursor(
        request,
        await store(request).head(),
        run=run,
        sequence_ids=await _sequence_ids(request, run),
    )
    await _check_run_cursor(request, run, cursor)
    latest = await store(request).last_status_change(run_id) if run.terminal else None
    if latest is None and run.terminal:  # its last status change was archived
        latest = (run.last_event_id, run.status.value)
    if latest is not None and cursor >= latest[0]:
        return Response(status_code=204)
    flt = EventFilter(principal.organization_id, run_id=run_id, visibility=visibility)
    return open_stream(request, store(request), Channel(flt, cursor, run_id), principal)


async def _check_run_cursor(request: Request, run: RunState, cursor: int) -> None:
    """A run channel does not replay from the segments: a cursor (0 too) before some of the
    run's archived events is ``410`` naming the segment, never a silent skip of them; the JSON
    pages of ``GET /v1/runs/{id}/events`` read them where the server has ``--archive-dir``."""
    anchor = await store(request).anchor()
    if anchor is None or cursor >= min(anchor.cut_id, run.last_event_id):
        return
    first = max(cursor + 1, run.created_event_id)
    if first > anchor.cut_id:
        return
    segment = await store(request).segment_for(first)
    raise CursorExpired(
        f"run {run.run_id}'s events from {first} to {anchor.cut_id} are archived (segment "
        f"{segment}): read them as JSON pages, or follow from event {anchor.cut_id}",
        cursor=cursor,
        oldest_event_id=anchor.oldest_event_id,
        run_id=run.run_id,
        segment=segment,
    )


async def _sequence_ids(request: Request, run: RunState) -> dict[int, int]:
    """Event id of the requested ``after_sequence`` (only read when that parameter is given)."""
    raw = request.query_params.get("after_sequence")
    earlier = request.headers.get("last-event-id", "").strip() or request.query_params.get(
        "after_event_id"
    )
    if raw is None or earlier:
        return {}
    sequence = bounded_int(raw, "after_sequence", code="invalid_cursor")
    rows = await store(request).fetchall(
        "SELECT sequence, id FROM events WHERE run_id = ? AND sequence = ?", (run.run_id, sequence)
    )
    return {int(r[0]): int(r[1]) for r in rows}


async def conversation_events(request: Request) -> Response:
    principal = await require(request, Role.USER)
    conversation_id = identifier(request.path_params["conversation_id"], "conversation_id")
    run_id = query.RUN_ID.get(request)
    if run_id:
        return await run_stream(request, principal, run_id, conversation_id=conversation_id)
    flt = EventFilter(
        principal.organization_id,
        conversation_id=conversation_id,
        visibility=resolve_visibility(request, principal),
    )
    cursor = resolve_cursor(request, await store(request).head())
    await store(request).check_cursor(cursor)
    return open_stream(request, store(request), Channel(flt, cursor), principal)


async def firehose(request: Request) -> Response:
    principal = await require(request, Role.USER)
    flt = EventFilter(principal.organization_id, visibility=resolve_visibility(request, principal))
    if wants_stream(request):
        cursor = resolve_cursor(request, await store(request).head())
        await store(request).check_cursor(cursor)
        return open_stream(request, store(request), Channel(flt, cursor), principal)
    return await event_page(request, flt)


async def conversation_status(request: Request) -> JSONResponse:
    """The status panel: the conversation's current (or latest) run and what can be done to it."""
    principal = await require(request, Role.USER)
    conversation_id = identifier(request.path_params["conversation_id"], "conversation_id")
    page = await queries(request).list_runs(
        principal.organization_id, RunFilter(conversation_id=conversation_id), limit=20
    )
    current = _current_run(page.items)
    seen = None if current is None else seen_at(current, cap(principal))
    answer = AgentStatus.model_validate(
        {
            "conversation_id": conversation_id,
            "run": None if seen is None else run_json(seen, cap(principal)),
            "panel": None if seen is None else panel(seen),
        }
    )
    return json_response(answer.model_dump(mode="json"))


def _current_run(runs: list[RunState]) -> RunState | None:
    """The run holding the lane, else the one waiting longest, else the latest (ended) one:
    the run the conversation's cancel acts on, while one has not ended."""
    return conversation_run(runs) or (runs[0] if runs else None)


async def cancel_conversation(request: Request) -> JSONResponse:
    """Flag the conversation's current run for cancellation (the one its status panel shows)."""
    principal = await require(request, Role.USER)
    conversation_id = identifier(request.path_params["conversation_id"], "conversation_id")
    body = await read_optional_body(request, CancelBody)
    state = await commands(request).cancel_conversation(
        principal.organization_id, conversation_id, reason=body.reason
    )
    if state is None:
        raise ApiError(
            404,
            "no_active_run",
            f"conversation {conversation_id} has no run that has not ended",
            conversation_id=conversation_id,
        )
    return json_response(run_json(state, cap(principal)))


S = RunStatus
_LABELS = {
    S.QUEUED: "Queued",
    S.WAITING_ON_LANE: "Waiting for another run in this conversation",
    S.RUNNING: "Running",
    S.WAITING_ON_TOOL: "Waiting on a tool",
    S.WAITING_ON_CHILD: "Waiting on a child run",
    S.WAITING_ON_HUMAN: "Waiting for your input",
    S.RESUMING: "Resuming",
    S.COMPLETED: "Completed",
    S.FAILED: "Run failed",
    S.CANCELLED: "Run cancelled",
    S.TIMED_OUT: "Run timed out",
}
_HANDED_OFF = TERMINAL - {S.COMPLETED}
"""Ended runs the panel shows a recovery handoff for."""
_CANCELLABLE = ACTIVE - {S.RESUMING}
"""Runs the panel offers to cancel: those holding their lane, less one waiting for a worker."""


def panel(run: RunState) -> Panel:
    """What the status panel shows; the recovery handoff on failed, timed_out and cancelled.

    Give it the run as the caller sees it (``seen_at``): the handoff shows the journal and error."""
    handoff = None
    if run.status in _HANDED_OFF:
        journal = run.journal or {}
        handoff = Recovery(
            label=_LABELS[run.status],
            error=run.error,
            journal=journal or None,
            handoff_next_action=journal.get("handoff_next_action"),
            can_resume=run.resume_available and run.status is not S.CANCELLED,
        )
    waiting = run.status is S.WAITING_ON_HUMAN
    question = Question.model_validate(run.question) if waiting and run.question else None
    return Panel(
        status=run.status.value,
        label=_LABELS[run.status] + (" (cancel requested)" if run.cancel_requested else ""),
        detail=run.detail,
        can_cancel=run.status in _CANCELLABLE and not run.cancel_requested,
        cancel_requested=run.cancel_requested,
        recovery=handoff,
        question=question,
        can_answer=waiting,
    )


routes = [
    Route("/v1/events", firehose, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/agent-events", conversation_events, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/agent-status", conversation_status, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/cancel", cancel_conversation, methods=["POST"]),
]
