"""``/v1/runs``: create, list, read, claim, append, heartbeat, cancel, resume, input, tool
results."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from functools import cache
from time import perf_counter

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.client.models import (
    Appended,
    AppendedRun,
    AppendEventsBody,
    CancelBody,
    Claim,
    ClaimBody,
    DurationBucket,
    Heartbeat,
    HeartbeatBody,
    InputBody,
    Journal,
    Message,
    MessageList,
    RunList,
    RunStats,
    StatusHistory,
    StatusSample,
    ToolResultBody,
    ToolResultList,
    ToolResultRecorded,
    Usage,
)
from api.server import query
from api.server.auth import Role, cap, require
from api.server.claim_wait import claim_with_wait
from api.server.rate_limits import rate_limits
from api.server.routes._common import (
    JsonText,
    commands,
    compact_json,
    event_page,
    events_page,
    events_response,
    json_response,
    queries,
    read_body,
    read_optional_body,
    store,
    wants_stream,
)
from api.server.routes.streams import run_stream
from api.server.sse import resolve_visibility
from api.server.wire import (
    CreateRunBody,
    event_json,
    field_names,
    new_event,
    run_json,
    shaped,
)
from eventstore import AgentEvent, EventFilter, Visibility, format_timestamp
from projections import DURATION_BOUNDS_MS, RunFilter
from projections import Claim as RunClaim

__all__ = ["hot_routes", "routes"]


async def create_run(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    rate_limits(request).run_creations.take(principal)
    body = await read_body(request, CreateRunBody)
    state = await commands(request).create(
        principal.organization_id,
        body.agent_id,
        conversation_id=body.conversation_id,
        lane_key=body.lane_key,
        metadata=body.metadata,
        callback_url=body.callback_url,
        parent_run_id=body.parent_run_id,
        message=body.message,
        idempotency_key=body.idempotency_key,
    )
    return json_response(
        run_json(state, cap(principal)), 201, {"Location": f"/v1/runs/{state.run_id}"}
    )


async def list_runs(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    order = query.ORDER.get(request)
    page = await queries(request).list_runs(
        principal.organization_id,
        _run_filter(request),
        limit=query.RUN_LIMIT.value(request),
        order=order,  # type: ignore[arg-type]
        after=query.AFTER.get(request),
        before=query.BEFORE.get(request),
    )
    items = [run_json(run, cap(principal)) for run in page.items]
    return json_response(
        shaped(RunList, items=items, next_cursor=page.next_cursor, prev_cursor=page.prev_cursor)
    )


async def run_stats(request: Request) -> JSONResponse:
    """Counts over every run the filters match: by status, and finished runs by duration."""
    principal = await require(request, Role.USER)
    stats = await queries(request).stats(principal.organization_id, _run_filter(request))
    bounds = [*DURATION_BOUNDS_MS, None]
    durations = [
        DurationBucket(below_ms=bound, count=count)
        for bound, count in zip(bounds, stats.durations, strict=True)
    ]
    answer = RunStats(total=stats.total, by_status=stats.by_status, durations=durations)
    return json_response(answer.model_dump(mode="json"))


async def status_history(request: Request) -> JSONResponse:
    """Runs by status at each of the last ``seconds`` seconds (the board's chart at load)."""
    principal = await require(request, Role.USER)
    seconds = query.SECONDS.value(request)
    flt = _run_filter(request)
    now = datetime.now(UTC)
    moments = [
        format_timestamp(now - timedelta(seconds=back)) for back in range(seconds - 1, -1, -1)
    ]
    samples = await queries(request).status_history(principal.organization_id, flt, moments)
    answer = StatusHistory(
        seconds=seconds,
        samples=[StatusSample(at=s.at, by_status=s.by_status) for s in samples],
    )
    return json_response(answer.model_dump(mode="json"))


def _run_filter(request: Request) -> RunFilter:
    return RunFilter(
        statuses=query.STATUS.get(request),
        active=query.ACTIVE.get(request),
        agent_id=query.AGENT_ID.get(request) or request.query_params.get("agent"),
        conversation_id=query.CONVERSATION_ID.get(request),
        lane_key=query.LANE_KEY.get(request),
        stop_reason=query.STOP_REASON.get(request),
        created_after=query.CREATED_AFTER.get(request),
        created_before=query.CREATED_BEFORE.get(request),
        metadata=query.METADATA.get(request),
        run_id_prefix=query.RUN_ID_PREFIX.get(request) or None,
    )


async def get_run(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    state = await queries(request).get(principal.organization_id, request.path_params["run_id"])
    return json_response(run_json(state, cap(principal)))


async def claim_run(request: Request) -> Response:
    principal = await require(request, Role.OPERATOR)
    body = await read_body(request, ClaimBody)
    organization_id = principal.organization_id

    def attempt() -> Awaitable[RunClaim | None]:
        return commands(request).claim(
            organization_id, body.worker_id, agent_id=body.agent_id, lane_key=body.lane_key
        )

    key = (organization_id, body.agent_id, body.lane_key)
    wait = min(body.wait_seconds, request.app.state.settings.max_claim_wait)
    claim = await claim_with_wait(store(request), key, attempt, wait, request.receive)
    if claim is None:
        return Response(status_code=204)
    # The claimer is the run's worker: the run and what it resumes from are whole, because they
    # are what the worker resumes from (docs/api.md, "What a role sees").
    checkpoint = None if claim.checkpoint is None else event_json(claim.checkpoint)
    timeout = request.app.state.settings.heartbeat_timeout
    return json_response(
        shaped(
            Claim,
            run=run_json(claim.run, Visibility.INTERNAL),
            checkpoint=checkpoint,
            tool_results=[event_json(e) for e in claim.tool_results],
            human_inputs=[event_json(e) for e in claim.human_inputs],
            questions=[event_json(e) for e in claim.questions],
            tool_calls_started=[event_json(e) for e in claim.tool_calls_started],
            heartbeat_timeout_seconds=timeout,
            heartbeat_interval_seconds=timeout / 3,
        )
    )


async def append_events(request: Request) -> Response:
    principal = await require(request, Role.OPERATOR)
    rate_limits(request).appends.take(principal)
    body = await read_body(request, AppendEventsBody)
    metrics = request.app.state.metrics
    started = perf_counter()
    try:
        events, run = await commands(request).append_and_get(
            principal.organization_id,
            request.path_params["run_id"],
            [new_event(event) for event in body.events],
            expected_sequence=body.expected_sequence,
            idempotency_key=body.idempotency_key,
        )
    finally:  # as ``Histogram.time()`` does, without its context object per request
        metrics.append_latency.observe(perf_counter() - started)
    metrics.events_appended.inc(len(events))
    state = _appended_run(run.status.value, run.cancel_requested)
    return events_response(Appended, events, {"run": state}, 201)


_STATUS, _CANCEL_REQUESTED = field_names(AppendedRun)
"""``AppendedRun``'s fields, unpacked once: the append answers without a call per request."""


@cache
def _appended_run(status: str, cancel_requested: bool) -> JsonText:
    """The answer's ``run``, encoded once per status and flag (a few dozen values at most)."""
    return JsonText(compact_json({_STATUS: status, _CANCEL_REQUESTED: cancel_requested}))


async def run_events(request: Request) -> Response:
    principal = await require(request, Role.USER)
    run_id = request.path_params["run_id"]
    if wants_stream(request):
        return await run_stream(request, principal, run_id, conversation_id=None)
    run = await queries(request).get(principal.organization_id, run_id)
    query.AFTER_SEQUENCE.get(request)  # in range, though only a stream starts from it
    visibility = resolve_visibility(request, principal)
    after = query.AFTER_EVENT_ID.value(request)
    archived = await queries(request).archived_events(run, visibility, after)
    if archived is not None:  # from the segments, up to the cut; the live log after it
        events, cut = archived
        limit = query.EVENT_LIMIT.value(request)
        position = events[limit - 1].id if len(events) > limit else cut
        return await events_page(request, events[:limit], position)
    flt = EventFilter(principal.organization_id, run_id=run_id, visibility=visibility)
    return await event_page(request, flt)


async def heartbeat(request: Request) -> JSONResponse:
    principal = await require(request, Role.OPERATOR)
    body = await read_optional_body(request, HeartbeatBody)
    state = await commands(request).heartbeat(
        principal.organization_id, request.path_params["run_id"], worker_id=body.worker_id
    )
    beat = Heartbeat(
        run_id=state.run_id, status=state.status.value, cancel_requested=state.cancel_requested
    )
    return json_response(beat.model_dump(mode="json"))


async def cancel_run(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    body = await read_optional_body(request, CancelBody)
    state = await commands(request).cancel(
        principal.organization_id, request.path_params["run_id"], reason=body.reason
    )
    return json_response(run_json(state, cap(principal)))


async def answer_run(request: Request) -> JSONResponse:
    """A person's answer to a run waiting on a human: recorded, and the run moves on."""
    principal = await require(request, Role.USER)
    body = await read_body(request, InputBody)
    state = await commands(request).answer(
        principal.organization_id,
        request.path_params["run_id"],
        body.response,
        question_id=body.question_id,
        answered_by=principal.key_id,
    )
    return json_response(run_json(state, cap(principal)))


async def resume_run(request: Request) -> JSONResponse:
    principal = await require(request, Role.OPERATOR)
    state = await commands(request).resume(principal.organization_id, request.path_params["run_id"])
    return json_response(run_json(state, cap(principal)))


async def record_tool_result(request: Request) -> JSONResponse:
    principal = await require(request, Role.OPERATOR)
    rate_limits(request).appends.take(principal)
    body = await read_body(request, ToolResultBody)
    event, replayed = await commands(request).record_tool_result(
        principal.organization_id, request.path_params["run_id"], body.model_dump()
    )
    answer = shaped(ToolResultRecorded, event=event_json(event), replayed=replayed)
    return json_response(answer, 200 if replayed else 201)


async def list_tool_results(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    events = await queries(request).tool_results(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    return json_response(shaped(ToolResultList, items=[event_json(e) for e in events]))


async def messages(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    events = await queries(request).messages(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    items = [_message(e) for e in events]
    return json_response(MessageList(items=items).model_dump(mode="json"))


def _message(event: AgentEvent) -> Message:
    return Message(
        id=event.id, sequence=event.sequence, created_at=event.created_at, **event.payload
    )


async def usage(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    found = await queries(request).usage(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    answer = Usage.model_validate(
        {
            "prompt_tokens": found.prompt_tokens,
            "completion_tokens": found.completion_tokens,
            "total_tokens": found.total_tokens,
            "num_steps": found.num_steps,
            "steps": found.steps,
        }
    )
    return json_response(answer.model_dump(mode="json"))


async def journal(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    events = await queries(request).journal(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    current = events[-1].payload if events else None
    history = [{"id": e.id, "created_at": e.created_at, **e.payload} for e in events]
    answer = Journal.model_validate({"current": current, "history": history})
    return json_response(answer.model_dump(mode="json"))


async def state_at(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    run_id = request.path_params["run_id"]
    event_id = query.AT_EVENT_ID.get(request)
    if event_id is None:
        state = await queries(request).get(principal.organization_id, run_id)
    else:
        state = await queries(request).state_at(principal.organization_id, run_id, event_id)
    return json_response(run_json(state, cap(principal)))


_append = Route("/v1/runs/{run_id}/events", append_events, methods=["POST"])
hot_routes = [_append]
"""Served past Starlette's per-request layers (``api/server/hot_path.py``)."""

routes = [
    Route("/v1/runs", create_run, methods=["POST"]),
    Route("/v1/runs", list_runs, methods=["GET"]),
    Route("/v1/runs/claim", claim_run, methods=["POST"]),
    Route("/v1/runs/stats", run_stats, methods=["GET"]),
    Route("/v1/runs/stats/history", status_history, methods=["GET"]),
    Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
    _append,
    Route("/v1/runs/{run_id}/events", run_events, methods=["GET"]),
    Route("/v1/runs/{run_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/resume", resume_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/input", answer_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/tool-results", record_tool_result, methods=["POST"]),
    Route("/v1/runs/{run_id}/tool-results", list_tool_results, methods=["GET"]),
    Route("/v1/runs/{run_id}/messages", messages, methods=["GET"]),
    Route("/v1/runs/{run_id}/usage", usage, methods=["GET"]),
    Route("/v1/runs/{run_id}/journal", journal, methods=["GET"]),
    Route("/v1/runs/{run_id}/state", state_at, methods=["GET"]),
]
