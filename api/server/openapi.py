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
    SERVER_WRITTEN_TYPES,
)
from api.client.models import (
    AgentStatus,
    Appended,
    AppendEventsBody,
    AuditReport,
    CancelBody,
    ChainHeadAnswer,
    Claim,
    ClaimBody,
    CreateRunBody,
    Error,
    EventList,
    ExportPage,
    Health,
    Heartbeat,
    HeartbeatBody,
    InputBody,
    Journal,
    Me,
    MessageList,
    NotReady,
    Ready,
    Run,
    RunList,
    RunStats,
    StatusHistory,
    StoredEvent,
    ToolResultBody,
    ToolResultList,
    ToolResultRecorded,
    Usage,
)
from api.server import query
from api.server.errors import OLDEST_EVENT_HEADER
from api.server.input_limits import advertised
from api.server.query import Documented
from eventstore import PAYLOAD_MODELS, USER_ONLY_TYPES

__all__ = ["OPERATIONS", "openapi_document"]

_REF = "#/components/schemas/{model}"
_ERRORS = (400, 401, 403, 404, 409, 413, 422)
_RATE_LIMITED = (*_ERRORS, 429)
"""Routes under a per-key rate (docs/security.md): 429 with Retry-After."""
_STREAMED = (*_ERRORS, 410, 429, 503)
"""Routes that open streams: 429 past a key's or organization's cap, 503 past the server's;
410 for a cursor older than the oldest kept event, or a run's archived events the server cannot
read (header ``Runtrack-Oldest-Event-Id``)."""
_OLDEST_HEADER = {
    OLDEST_EVENT_HEADER: {
        "description": "The oldest event the live log keeps (the rest is archived)",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_ARCHIVED = (*_ERRORS, 410)
"""Routes that read a run's events: 410 ``run_archived`` when they are archived and the server
cannot read the segments."""
_PAGED = (*_ERRORS, 410)
"""Routes that page the log from a cursor: 410 ``cursor_expired`` for one older than the
oldest kept event."""


@dataclass(frozen=True)
class _Op:
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    ok: int = 200
    returns: type[BaseModel] | None = None
    """The JSON answer's model; None for a route that only streams."""
    query: tuple[Documented, ...] = ()
    sse: bool = False
    errors: tuple[int, ...] = field(default=_ERRORS)
    also: tuple[tuple[int, str, type[BaseModel] | None], ...] = ()
    """Other answers: (status, when, the body's model or None for no body)."""
    open: bool = False
    """Needs no key."""

    def answers(self) -> dict[int, type[BaseModel] | None]:
        """The model of each status's JSON body (None: no JSON body)."""
        found: dict[int, type[BaseModel] | None] = dict.fromkeys(self.errors, Error)
        found.update({status: model for status, _, model in self.also})
        return {**found, self.ok: self.returns}


_EVENT_QUERY = (query.AFTER_EVENT_ID, query.EVENT_LIMIT, query.VISIBILITY)
_STREAM_QUERY = (query.AFTER_EVENT_ID, query.AFTER_SEQUENCE, query.VISIBILITY)
_FILTER_QUERY = (
    query.STATUS,
    query.ACTIVE,
    *query.TEXT_FILTERS,
    query.METADATA,
    query.RUN_ID_PREFIX,
)
_LIST_QUERY = (*_FILTER_QUERY, query.RUN_LIMIT, query.ORDER, query.AFTER, query.BEFORE)
_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": IDENTIFIER_PATTERN}

_OPTIONAL_BODIES: tuple[type[BaseModel], ...] = (CancelBody, HeartbeatBody)
"""Bodies whose every field is optional: the request may send none."""

OPERATIONS = (
    _Op("post", "/v1/runs", "Create a run", CreateRunBody, 201, Run, errors=_RATE_LIMITED),
    _Op("get", "/v1/runs", "List runs", returns=RunList, query=_LIST_QUERY),
    _Op(
        "get",
        "/v1/runs/stats",
        "Counts of the runs the filters match: by status, finished ones by duration",
        returns=RunStats,
        query=_FILTER_QUERY,
    ),
    _Op(
        "get",
        "/v1/runs/stats/history",
        "Runs by status at each of the last seconds (default 60), replayed from the log",
        returns=StatusHistory,
        query=(*_FILTER_QUERY, query.SECONDS),
    ),
    _Op(
        "post",
        "/v1/runs/claim",
        "Claim the oldest claimable run (204 when none)",
        ClaimBody,
        returns=Claim,
        also=((204, "No run is claimable", None),),
    ),
    _Op("get", "/v1/runs/{run_id}", "Get a run", returns=Run),
    _Op(
        "post",
        "/v1/runs/{run_id}/events",
        "Append events",
        AppendEventsBody,
        201,
        Appended,
        errors=_RATE_LIMITED,
    ),
    _Op(
        "get",
        "/v1/runs/{run_id}/events",
        "The run's events (JSON pages, or SSE)",
        returns=EventList,
        query=(*_EVENT_QUERY, query.AFTER_SEQUENCE),
        sse=True,
        errors=_STREAMED,
    ),
    _Op("post", "/v1/runs/{run_id}/heartbeat", "Record liveness", HeartbeatBody, returns=Heartbeat),
    _Op("post", "/v1/runs/{run_id}/cancel", "Request cancellation", CancelBody, returns=Run),
    _Op(
        "post",
        "/v1/runs/{run_id}/resume",
        "Resume from the latest checkpoint (waiting on the lane while another run holds it)",
        returns=Run,
    ),
    _Op(
        "post",
        "/v1/runs/{run_id}/input",
        "Answer a run waiting on a human; it moves on through its lane",
        InputBody,
        returns=Run,
    ),
    _Op(
        "post",
        "/v1/runs/{run_id}/tool-results",
        "Record a tool result once (200 with replayed: true when it was recorded before)",
        ToolResultBody,
        201,
        ToolResultRecorded,
        also=((200, "Recorded before: the first result, replayed", ToolResultRecorded),),
        errors=_RATE_LIMITED,
    ),
    _Op(
        "get",
        "/v1/runs/{run_id}/tool-results",
        "Recorded tool results",
        returns=ToolResultList,
        errors=_ARCHIVED,
    ),
    _Op(
        "get",
        "/v1/runs/{run_id}/messages",
        "The run's messages",
        returns=MessageList,
        errors=_ARCHIVED,
    ),
    _Op(
        "get",
        "/v1/runs/{run_id}/usage",
        "Token usage and steps",
        returns=Usage,
        errors=_ARCHIVED,
    ),
    _Op(
        "get",
        "/v1/runs/{run_id}/journal",
        "The run journal",
        returns=Journal,
        errors=_ARCHIVED,
    ),
    _Op(
        "get",
        "/v1/runs/{run_id}/state",
        "The run as of an event id",
        returns=Run,
        query=(query.AT_EVENT_ID,),
        errors=_ARCHIVED,
    ),
    _Op(
        "get",
        "/v1/events",
        "The log (JSON pages, or the SSE firehose)",
        returns=EventList,
        query=_EVENT_QUERY,
        sse=True,
        errors=_STREAMED,
    ),
    _Op(
        "get",
        "/v1/conversations/{conversation_id}/agent-events",
        "A conversation's SSE stream",
        query=(*_STREAM_QUERY, query.RUN_ID),
        sse=True,
        errors=_STREAMED,
    ),
    _Op(
        "get",
        "/v1/conversations/{conversation_id}/agent-status",
        "The status panel",
        returns=AgentStatus,
    ),
    _Op(
        "post",
        "/v1/conversations/{conversation_id}/cancel",
        "Request cancellation of the conversation's current run (404 no_active_run: none)",
        CancelBody,
        returns=Run,
    ),
    _Op("get", "/v1/me", "The calling key: organization, role, highest visibility", returns=Me),
    _Op(
        "get",
        "/v1/audit/verify",
        "Verify the hash chain and its signed heads",
        returns=AuditReport,
        query=(query.RUN_ID, query.KEPT_HEAD, query.PUBLIC_KEY),
    ),
    _Op(
        "get",
        "/v1/audit/head",
        "The latest signed chain head (404 no_signed_head: none yet)",
        returns=ChainHeadAnswer,
    ),
    _Op(
        "get",
        "/v1/audit/export",
        "A page of the whole log: the caller's events whole, the others redacted to their hashes",
        returns=ExportPage,
        query=(query.AFTER_EVENT_ID, query.EXPORT_LIMIT, query.VISIBILITY),
        errors=_PAGED,
    ),
    _Op("get", "/healthz", "Liveness", returns=Health, errors=(), open=True),
    _Op(
        "get",
        "/readyz",
        "Readiness",
        returns=Ready,
        also=((503, "The database did not answer a read", NotReady),),
        errors=(),
        open=True,
    ),
)


def _responses() -> list[type[BaseModel]]:
    """Every answer's model, each once, in the order the operations name them."""
    found: dict[type[BaseModel], None] = {StoredEvent: None, Error: None}
    for op in OPERATIONS:
        found |= {model: None for model in op.answers().values() if model is not None}
    return list(found)


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
            InputBody,
            ToolResultBody,
        )
    ] + [(model, "serialization") for model in _responses()]
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
        {"name": param.name, "in": "query", "required": False, "schema": param.schema}
        for param in op.query
    ]
    content: dict[str, Any] = {}
    if op.returns is not None:
        content["application/json"] = {"schema": _ref(op.returns)}
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
        if status == 410:
            responses["410"]["headers"] = _OLDEST_HEADER
    operation: dict[str, Any] = {
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
    }
    if op.open:
        operation["security"] = []
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body not in _OPTIONAL_BODIES,
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


def _also(when: str, model: type[BaseModel] | None) -> dict[str, Any]:
    if model is None:
        return {"description": when}
    return {"description": when, "content": {"application/json": {"schema": _ref(model)}}}


_ONLY_USER = {name: {"visibility": {"enum": ["user", None]}} for name in USER_ONLY_TYPES}
"""The event types whose visibility can only be ``user`` (or left to its default, ``user``)."""


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
                **_ONLY_USER.get(event_type, {}),
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


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": _REF.format(model=model.__name__)}
