"""``/openapi.json``, generated from the same pydantic models the routes validate with."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from api.client.contract import (
    CUSTOM_TYPE_PATTERN,
    IDENTIFIER_PATTERN,
    MAX_ID_CHARS,
    MAX_INTEGER,
    MAX_METADATA_FILTERS,
    MAX_PAGE_SIZE,
    SERVER_WRITTEN_TYPES,
    VISIBILITIES,
)
from api.client.models import (
    AppendEventsBody,
    CancelBody,
    Claim,
    ClaimBody,
    CreateRunBody,
    Error,
    EventList,
    HeartbeatBody,
    Run,
    RunList,
    RunStats,
    StoredEvent,
    ToolResultBody,
    ToolResultRecorded,
)
from api.server.input_limits import advertised
from eventstore import PAYLOAD_MODELS, RunStatus
from projections.queries import CURSOR_PATTERN

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
    query: tuple[tuple[str, dict[str, Any]], ...] = ()
    sse: bool = False
    errors: tuple[int, ...] = field(default=_ERRORS)
    also: tuple[tuple[int, str, str | None], ...] = ()
    """Other success answers: (status, when, the schema of the body or None for no body)."""
    open: bool = False
    """Needs no key."""


_CURSOR = {"type": "integer", "minimum": 0, "maximum": MAX_INTEGER}
_VISIBILITY = {
    "type": "string",
    "enum": list(VISIBILITIES),
    "description": "Highest visibility wanted (default operator), capped by the key's role",
}


def _limit(default: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": default}


_EVENT_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("after_event_id", _CURSOR),
    ("limit", _limit(100)),
    ("visibility", _VISIBILITY),
)
_STREAM_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("after_event_id", _CURSOR),
    ("after_sequence", _CURSOR),
    ("visibility", _VISIBILITY),
)
_TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}
"""Any text but NUL, which no path or query may hold (``api.server.app._has_nul``)."""
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": IDENTIFIER_PATTERN}
_LIST_CURSOR = {"type": "string", "pattern": CURSOR_PATTERN}
_FILTER_QUERY: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "status",
        {
            "type": "array",
            "items": {"type": "string", "enum": [s.value for s in RunStatus]},
            "description": "Repeat, or separate with commas",
        },
    ),
    ("active", {"type": "boolean"}),
    ("agent_id", _TEXT),
    ("conversation_id", _TEXT),
    ("lane_key", _TEXT),
    ("stop_reason", _TEXT),
    ("created_after", _TEXT),
    ("created_before", _TEXT),
    (
        "metadata",
        {
            "type": "array",
            "maxItems": MAX_METADATA_FILTERS,
            "items": {"type": "string", "pattern": "^[^=\\x00]+=[^\\x00]*$"},
            "description": f"key=value, repeatable (at most {MAX_METADATA_FILTERS})",
        },
    ),
)
_LIST_QUERY = (
    *_FILTER_QUERY,
    ("limit", _limit(20)),
    ("order", {"type": "string", "enum": ["asc", "desc"], "default": "desc"}),
    ("after", {**_LIST_CURSOR, "description": "A next_cursor of an earlier page"}),
    (
        "before",
        {
            **_LIST_CURSOR,
            "description": "A prev_cursor of an earlier page (with after: "
            "the runs between the two)",
        },
    ),
)

OPERATIONS = (
    _Op("post", "/v1/runs", "Create a run", CreateRunBody, 201, "Run", errors=_RATE_LIMITED),
    _Op("get", "/v1/runs", "List runs", returns="RunList", query=_LIST_QUERY),
    _Op(
        "get",
        "/v1/runs/stats",
        "Counts of the runs the filters match: by status, finished ones by duration",
        returns="RunStats",
        query=_FILTER_QUERY,
    ),
    _Op(
        "post",
        "/v1/runs/claim",
        "Claim the oldest claimable run (204 when none)",
        ClaimBody,
        returns="Claim",
        also=((204, "No run is claimable", None),),
    ),
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
        query=(*_EVENT_QUERY, ("after_sequence", _CURSOR)),
        sse=True,
        errors=_STREAMED,
    ),
    _Op("post", "/v1/runs/{run_id}/heartbeat", "Record liveness", HeartbeatBody),
    _Op("post", "/v1/runs/{run_id}/cancel", "Request cancellation", CancelBody, returns="Run"),
    _Op("post", "/v1/runs/{run_id}/resume", "Resume from the latest checkpoint", returns="Run"),
    _Op(
        "post",
        "/v1/runs/{run_id}/tool-results",
        "Record a tool result once (200 with replayed: true when it was recorded before)",
        ToolResultBody,
        201,
        "ToolResultRecorded",
        also=((200, "Recorded before: the first result, replayed", "ToolResultRecorded"),),
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
        query=(("at_event_id", {**_CURSOR, "minimum": 1}),),
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
        query=(*_STREAM_QUERY, ("run_id", _TEXT)),
        sse=True,
        errors=_STREAMED,
    ),
    _Op("get", "/v1/conversations/{conversation_id}/agent-status", "The status panel"),
    _Op("get", "/v1/me", "The calling key: organization, role, highest visibility"),
    _Op("get", "/v1/audit/verify", "Verify the hash chain", query=(("run_id", _TEXT),)),
    _Op("get", "/healthz", "Liveness", errors=(), open=True),
    _Op("get", "/readyz", "Readiness", errors=(503,), open=True),
)


_RESPONSES = (Run, StoredEvent, RunList, EventList, Claim, ToolResultRecorded, RunStats, Error)


@cache
def openapi_document(max_body_bytes: int) -> dict[str, Any]:
    """The document; ``max_body_bytes`` is the server's setting, advertised with the limits."""
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
    ] + [(model, "serialization") for model in _RESPONSES]
    models += [(model, "validation") for model in PAYLOAD_MODELS.values()]
    _, definitions = models_json_schema(models, ref_template=_REF)
    schemas = definitions.get("$defs", {})
    schemas["EventBody"] = _event_body(schemas["EventBody"])
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "runtrack",
            "version": "0.1.0",
            "description": "Event-sourced tracker for durable agent runs. Input limits are "
            "in x-runtrack-limits (docs/api.md, Limits): a body over max_body_bytes is 413, one "
            "nesting objects and arrays deeper than max_json_depth or holding a lone surrogate "
            "is 422.",
            "x-runtrack-limits": advertised(max_body_bytes),
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
        {"name": name[1:-1], "in": "path", "required": True, "schema": _ID}
        for name in _path_names(op.path)
    ] + [
        {"name": name, "in": "query", "required": False, "schema": schema}
        for name, schema in op.query
    ]
    content: dict[str, Any] = {"application/json": {"schema": _ref_or_object(op.returns)}}
    if op.sse:
        content["text/event-stream"] = _SSE
    responses: dict[str, Any] = {str(op.ok): {"description": "OK", "content": content}}
    for status, when, schema in op.also:
        responses[str(status)] = _also(when, schema)
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
    if op.open:
        operation["security"] = []
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body is not CancelBody,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}
            },
        }
    return operation


_SSE: dict[str, Any] = {
    "schema": {
        "type": "string",
        "description": "A text/event-stream: blocks of id/event/data lines (docs/api.md)",
    },
    "itemSchema": {
        "type": "object",
        "description": "One server-sent event; data is the event's JSON",
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": _REF.format(model="StoredEvent")},
            },
            "retry": {"type": "integer"},
        },
    },
}


def _also(when: str, schema: str | None) -> dict[str, Any]:
    if schema is None:
        return {"description": when}
    content = {"application/json": {"schema": {"$ref": _REF.format(model=schema)}}}
    return {"description": when, "content": content}


def _event_body(plain: dict[str, Any]) -> dict[str, Any]:
    """One shape per core event type (its payload's model), and one for ``custom.`` types."""
    properties = plain["properties"]
    core = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["event_type", "payload"] if _has_required(model) else ["event_type"],
            "properties": {
                **properties,
                "event_type": {"const": str(event_type)},
                "payload": {"$ref": _REF.format(model=model.__name__)},
            },
        }
        for event_type, model in PAYLOAD_MODELS.items()
        if event_type not in SERVER_WRITTEN_TYPES  # the server writes these, clients cannot
    ]
    custom_type = {**properties["event_type"], "pattern": CUSTOM_TYPE_PATTERN}
    custom = {**plain, "properties": {**properties, "event_type": custom_type}}
    return {"title": "EventBody", "oneOf": [*core, custom]}


def _has_required(model: type[BaseModel]) -> bool:
    """Whether the payload may be left out (it defaults to ``{}``)."""
    try:
        model.model_validate({})
    except ValidationError:
        return True
    return False


def _path_names(path: str) -> list[str]:
    return [part for part in path.split("/") if part.startswith("{")]


def _ref_or_object(name: str | None) -> dict[str, Any]:
    return {"type": "object"} if name is None else {"$ref": _REF.format(model=name)}
