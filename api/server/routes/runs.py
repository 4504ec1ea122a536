"""``/v1/runs``: create, list, read, claim, append, heartbeat, cancel, resume, tool results."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.client.contract import MAX_METADATA_FILTERS, MAX_PAGE_SIZE
from api.client.models import (
    AppendEventsBody,
    CancelBody,
    ClaimBody,
    HeartbeatBody,
    ToolResultBody,
)
from api.server.auth import Role, cap, require
from api.server.errors import ApiError
from api.server.rate_limits import rate_limits
from api.server.routes._common import (
    bool_param,
    commands,
    event_page,
    events_response,
    int_param,
    json_response,
    queries,
    read_body,
    wants_stream,
)
from api.server.routes.streams import run_stream
from api.server.sse import resolve_visibility
from api.server.wire import CreateRunBody, event_json, new_event, run_json
from eventstore import EventFilter, Visibility
from projections import DURATION_BOUNDS_MS, RunFilter, RunStatus

__all__ = ["routes"]


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
    params = request.query_params
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(400, "invalid_parameter", f"order must be asc or desc; got {order!r}")
    page = await queries(request).list_runs(
        principal.organization_id,
        _run_filter(request),
        limit=int_param(request, "limit", 20, low=1, high=MAX_PAGE_SIZE),
        order=order,  # type: ignore[arg-type]
        after=params.get("after"),
        before=params.get("before"),
    )
    return json_response(
        {
            "items": [run_json(run, cap(principal)) for run in page.items],
            "next_cursor": page.next_cursor,
            "prev_cursor": page.prev_cursor,
        }
    )


async def run_stats(request: Request) -> JSONResponse:
    """Counts over every run the filters match: by status, and finished runs by duration."""
    principal = await require(request, Role.USER)
    stats = await queries(request).stats(principal.organization_id, _run_filter(request))
    bounds = [*DURATION_BOUNDS_MS, None]
    return json_response(
        {
            "total": stats.total,
            "by_status": stats.by_status,
            "durations": [
                {"below_ms": bound, "count": count}
                for bound, count in zip(bounds, stats.durations, strict=True)
            ],
        }
    )


def _run_filter(request: Request) -> RunFilter:
    params = request.query_params
    statuses = {s for value in params.getlist("status") for s in value.split(",") if s}
    try:
        parsed = tuple(RunStatus(s) for s in sorted(statuses))
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"unknown status: {exc}") from None
    return RunFilter(
        statuses=parsed,
        active=bool_param(request, "active"),
        agent_id=params.get("agent_id") or params.get("agent"),
        conversation_id=params.get("conversation_id"),
        lane_key=params.get("lane_key"),
        stop_reason=params.get("stop_reason"),
        created_after=params.get("created_after"),
        created_before=params.get("created_before"),
        metadata=_metadata_filters(params.getlist("metadata")),
    )


def _metadata_filters(raws: list[str]) -> tuple[tuple[str, str], ...]:
    if len(raws) > MAX_METADATA_FILTERS:
        raise ApiError(
            400,
            "too_many_filters",
            f"at most {MAX_METADATA_FILTERS} metadata filters per query; got {len(raws)}",
            limit=MAX_METADATA_FILTERS,
        )
    return tuple(dict.fromkeys(_metadata_pair(raw) for raw in raws))


def _metadata_pair(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise ApiError(400, "invalid_parameter", f"metadata filters are key=value; got {raw!r}")
    return key, value


async def get_run(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    state = await queries(request).get(principal.organization_id, request.path_params["run_id"])
    return json_response(run_json(state, cap(principal)))


async def claim_run(request: Request) -> Response:
    principal = await require(request, Role.OPERATOR)
    body = await read_body(request, ClaimBody)
    claim = await commands(request).claim(
        principal.organization_id, body.worker_id, agent_id=body.agent_id, lane_key=body.lane_key
    )
    if claim is None:
        return Response(status_code=204)
    # The claimer is the run's worker: the run, its checkpoint and its tool results are whole,
    # because they are what the worker resumes from (docs/api.md, "What a role sees").
    return json_response(
        {
            "run": run_json(claim.run, Visibility.INTERNAL),
            "checkpoint": None if claim.checkpoint is None else event_json(claim.checkpoint),
            "tool_results": [event_json(e) for e in claim.tool_results],
        }
    )


async def append_events(request: Request) -> Response:
    principal = await require(request, Role.OPERATOR)
    rate_limits(request).appends.take(principal)
    body = await read_body(request, AppendEventsBody)
    metrics = request.app.state.metrics
    with metrics.append_latency.time():
        events, run = await commands(request).append_and_get(
            principal.organization_id,
            request.path_params["run_id"],
            [new_event(event) for event in body.events],
            expected_sequence=body.expected_sequence,
            idempotency_key=body.idempotency_key,
        )
    metrics.events_appended.inc(len(events))
    state = {"status": run.status.value, "cancel_requested": run.cancel_requested}
    return events_response(events, {"run": state}, 201)


async def run_events(request: Request) -> Response:
    principal = await require(request, Role.USER)
    run_id = request.path_params["run_id"]
    if wants_stream(request):
        return await run_stream(request, principal, run_id, conversation_id=None)
    await queries(request).get(principal.organization_id, run_id)
    int_param(request, "after_sequence", 0)  # in range, though only a stream starts from it
    flt = EventFilter(
        principal.organization_id, run_id=run_id, visibility=resolve_visibility(request, principal)
    )
    return await event_page(request, flt)


async def heartbeat(request: Request) -> JSONResponse:
    principal = await require(request, Role.OPERATOR)
    body = await read_body(request, HeartbeatBody)
    state = await commands(request).heartbeat(
        principal.organization_id, request.path_params["run_id"], worker_id=body.worker_id
    )
    return json_response(
        {
            "run_id": state.run_id,
            "status": state.status.value,
            "cancel_requested": state.cancel_requested,
        }
    )


async def cancel_run(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    body = await read_body(request, CancelBody) if await _has_body(request) else CancelBody()
    state = await commands(request).cancel(
        principal.organization_id, request.path_params["run_id"], reason=body.reason
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
    return json_response(
        {"event": event_json(event), "replayed": replayed}, 200 if replayed else 201
    )


async def list_tool_results(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    events = await queries(request).tool_results(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    return json_response({"items": [event_json(e) for e in events]})


async def messages(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    events = await queries(request).messages(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    return json_response({"items": [_message(e) for e in events]})


def _message(event: Any) -> dict[str, Any]:
    return {
        "id": event.id,
        "sequence": event.sequence,
        "created_at": event.created_at,
        **event.payload,
    }


async def usage(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    found = await queries(request).usage(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    return json_response(
        {
            "prompt_tokens": found.prompt_tokens,
            "completion_tokens": found.completion_tokens,
            "total_tokens": found.total_tokens,
            "num_steps": found.num_steps,
            "steps": found.steps,
        }
    )


async def journal(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    events = await queries(request).journal(
        principal.organization_id, request.path_params["run_id"], cap(principal)
    )
    current = events[-1].payload if events else None
    history = [{"id": e.id, "created_at": e.created_at, **e.payload} for e in events]
    return json_response({"current": current, "history": history})


async def state_at(request: Request) -> JSONResponse:
    principal = await require(request, Role.USER)
    run_id = request.path_params["run_id"]
    event_id = int_param(request, "at_event_id", -1, low=1)
    if event_id < 0:
        state = await queries(request).get(principal.organization_id, run_id)
    else:
        state = await queries(request).state_at(principal.organization_id, run_id, event_id)
    return json_response(run_json(state, cap(principal)))


async def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )


routes = [
    Route("/v1/runs", create_run, methods=["POST"]),
    Route("/v1/runs", list_runs, methods=["GET"]),
    Route("/v1/runs/claim", claim_run, methods=["POST"]),
    Route("/v1/runs/stats", run_stats, methods=["GET"]),
    Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
    Route("/v1/runs/{run_id}/events", append_events, methods=["POST"]),
    Route("/v1/runs/{run_id}/events", run_events, methods=["GET"]),
    Route("/v1/runs/{run_id}/heartbeat", heartbeat, methods=["POST"]),
    Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/resume", resume_run, methods=["POST"]),
    Route("/v1/runs/{run_id}/tool-results", record_tool_result, methods=["POST"]),
    Route("/v1/runs/{run_id}/tool-results", list_tool_results, methods=["GET"]),
    Route("/v1/runs/{run_id}/messages", messages, methods=["GET"]),
    Route("/v1/runs/{run_id}/usage", usage, methods=["GET"]),
    Route("/v1/runs/{run_id}/journal", journal, methods=["GET"]),
    Route("/v1/runs/{run_id}/state", state_at, methods=["GET"]),
]
