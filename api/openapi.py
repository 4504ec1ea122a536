"""``/openapi.json``, generated from the same pydantic models the routes validate with."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .models import (
    AppendEventsBody,
    CancelBody,
    ClaimBody,
    CreateRunBody,
    HeartbeatBody,
    Run,
    StoredEvent,
    ToolResultBody,
)

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"
_ERRORS = (400, 401, 403, 404, 409, 413, 422)
_RATE_LIMITED = (*_ERRORS, 429)
"""Routes under a per-key rate (docs/security.md): 429 with Retry-After."""
_STREAMED = (*_ERRORS, 429, 503)
"""Routes that open streams: 429 past a key's or organization's cap, 503 past the server's."""


@dataclass(frozen=True)
class _Op:
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    ok: int = 200
    returns: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    sse: bool = False
    errors: tuple[int, ...] = field(default=_ERRORS)


_EVENT_QUERY = (("after_event_id", "integer"), ("limit", "integer"), ("visibility", "string"))
_STREAM_QUERY = (
    ("after_event_id", "integer"),
    ("after_sequence", "integer"),
    ("visibility", "string"),
)
_LIST_QUERY = (
    ("status", "string"),
    ("active", "boolean"),
    ("agent_id", "string"),
    ("conversation_id", "string"),
    ("lane_key", "string"),
    ("stop_reason", "string"),
    ("created_after", "string"),
    ("created_before", "string"),
    ("metadata", "string"),
    ("limit", "integer"),
    ("order", "string"),
    ("after", "string"),
    ("before", "string"),
)

OPERATIONS = (
    _Op("post", "/v1/runs", "Create a run", CreateRunBody, 201, "Run", errors=_RATE_LIMITED),
    _Op("get", "/v1/runs", "List runs", returns="RunList", query=_LIST_QUERY),
    _Op(
        "get",
        "/v1/runs/stats",
        "Counts of the runs the filters match: by status, finished ones by duration",
        returns="RunStats",
        query=tuple(q for q in _LIST_QUERY if q[0] not in ("limit", "order", "after", "before")),
    ),
    _Op("post", "/v1/runs/claim", "Claim the oldest claimable run (204 when none)", ClaimBody),
    _Op("get", "/v1/runs/{run_id}", "Get a run", returns="Run"),
    _Op(
        "post",
        "/v1/runs/{run_id}/events",
        "Append events",
        AppendEventsBody,
        201,
        errors=_RATE_LIMITED,
    ),
    _Op(
        "get",
        "/v1/runs/{run_id}/events",
        "The run's events (JSON pages, or SSE)",
        returns="EventList",
        query=(*_EVENT_QUERY, ("after_sequence", "integer")),
        sse=True,
        errors=_STREAMED,
    ),
    _Op("post", "/v1/runs/{run_id}/heartbeat", "Record liveness", HeartbeatBody),
    _Op("post", "/v1/runs/{run_id}/cancel", "Request cancellation", CancelBody, returns="Run"),
    _Op("post", "/v1/runs/{run_id}/resume", "Resume from the latest checkpoint", returns="Run"),
    _Op(
        "post",
        "/v1/runs/{run_id}/tool-results",
        "Record a tool result once",
        ToolResultBody,
        201,
        errors=_RATE_LIMITED,
    ),
    _Op("get", "/v1/runs/{run_id}/tool-results", "Recorded tool results"),
    _Op("get", "/v1/runs/{run_id}/messages", "The run's messages"),
    _Op("get", "/v1/runs/{run_id}/usage", "Token usage and steps"),
    _Op("get", "/v1/runs/{run_id}/journal", "The run journal"),
    _Op(
        "get",
        "/v1/runs/{run_id}/state",
        "The run as of an event id",
        returns="Run",
        query=(("at_event_id", "integer"),),
    ),
    _Op(
        "get",
        "/v1/events",
        "The log (JSON pages, or the SSE firehose)",
        returns="EventList",
        query=_EVENT_QUERY,
        sse=True,
        errors=_STREAMED,
    ),
    _Op(
        "get",
        "/v1/conversations/{conversation_id}/agent-events",
        "A conversation's SSE stream",
        query=(*_STREAM_QUERY, ("run_id", "string")),
        sse=True,
        errors=_STREAMED,
    ),
    _Op("get", "/v1/conversations/{conversation_id}/agent-status", "The status panel"),
    _Op("get", "/v1/me", "The calling key: organization, role, highest visibility"),
    _Op("get", "/v1/audit/verify", "Verify the hash chain", query=(("run_id", "string"),)),
    _Op("get", "/healthz", "Liveness", errors=()),
    _Op("get", "/readyz", "Readiness", errors=(503,)),
)


@cache
def openapi_document() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [
        (m, "validation")
        for m in (
            CreateRunBody,
            AppendEventsBody,
            ClaimBody,
            HeartbeatBody,
            CancelBody,
            ToolResultBody,
        )
    ] + [(Run, "serialization"), (StoredEvent, "serialization")]
    _, definitions = models_json_schema(models, ref_template=_REF)
    schemas = {**definitions.get("$defs", {}), **_extra_schemas()}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runtrack",
            "version": "0.1.0",
            "description": "Event-sourced tracker for durable agent runs.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _operation(op: _Op) -> dict[str, Any]:
    parameters = [
        {"name": name[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _path_names(op.path)
    ] + [
        {"name": name, "in": "query", "required": False, "schema": {"type": kind}}
        for name, kind in op.query
    ]
    content: dict[str, Any] = {"application/json": {"schema": _ref_or_object(op.returns)}}
    if op.sse:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(op.ok): {"description": "OK", "content": content}}
    for status in op.errors:
        responses[str(status)] = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
        }
    operation: dict[str, Any] = {
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body is not CancelBody,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}
            },
        }
    return operation


def _path_names(path: str) -> list[str]:
    return [part for part in path.split("/") if part.startswith("{")]


def _ref_or_object(name: str | None) -> dict[str, Any]:
    return {"type": "object"} if name is None else {"$ref": _REF.format(model=name)}


def _extra_schemas() -> dict[str, Any]:
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {"type": "object"},
                    },
                }
            },
        },
        "RunList": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": _REF.format(model="Run")}},
                "next_cursor": {"type": ["string", "null"]},
            },
        },
        "RunStats": {
            "type": "object",
            "required": ["total", "by_status", "durations"],
            "properties": {
                "total": {"type": "integer"},
                "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
                "durations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "below_ms": {"type": ["integer", "null"]},
                            "count": {"type": "integer"},
                        },
                    },
                },
            },
        },
        "EventList": {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": _REF.format(model="StoredEvent")}},
                "next_cursor": {"type": ["string", "null"]},
                "position": {"type": "integer"},
                "head": {"type": "integer"},
            },
        },
    }
