"""Helpers every route module uses: bounded JSON bodies, query parameters, services."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from api.client.models import EventList
from api.server.errors import ApiError
from api.server.json_input import decode_json
from api.server.query import AFTER_EVENT_ID, EVENT_LIMIT
from api.server.wire import field_names
from eventstore import (
    AgentEvent,
    EventFilter,
    EventStore,
    describe_validation_error,
    validation_error_list,
)
from projections import RunCommands, RunQueries

__all__ = [
    "commands",
    "event_page",
    "json_response",
    "queries",
    "read_body",
    "read_optional_body",
    "store",
    "wants_stream",
]

M = TypeVar("M", bound=BaseModel)


def store(request: Request) -> EventStore:
    found: EventStore = request.app.state.store
    return found


def commands(request: Request) -> RunCommands:
    found: RunCommands = request.app.state.commands
    return found


def queries(request: Request) -> RunQueries:
    found: RunQueries = request.app.state.queries
    return found


async def read_body(request: Request, model: type[M]) -> M:
    """Parse and validate a JSON body: 413 when too large, 400 when not JSON, 422 when invalid."""
    raw = await _bounded_body(request, request.app.state.settings.max_body_bytes)
    data = decode_json(raw) if raw else None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message = describe_validation_error(exc, root="body")
        raise ApiError(422, "invalid_request", message, errors=validation_error_list(exc)) from exc


async def read_optional_body(request: Request, model: type[M]) -> M:
    """``read_body`` for a body whose every field is optional: no body is ``{}``."""
    if not _has_body(request):
        return model()
    return await read_body(request, model)


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, read from ``receive`` as ``Request.stream`` does (a disconnect before its end
    is ``ClientDisconnect``), but without its generator: most bodies are one message."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"the body is over {limit} bytes", limit=limit)
    chunks, size, more = [], 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is over {limit} bytes", limit=limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def event_page(request: Request, flt: EventFilter) -> Response:
    """A JSON page of the log in id order; ``next_cursor`` goes back as ``after_event_id``.

    ``head`` is the log's last id when the page was read: a client that wants only what comes
    next (a live board) streams from it.
    """
    after, limit = AFTER_EVENT_ID.value(request), EVENT_LIMIT.value(request)
    page = await store(request).read(flt, after=after, limit=limit)
    if flt.run_id is None:  # a run's own archived events are its route's (runs.run_events)
        await store(request).check_cursor(after)  # after the read: no archive slips between
    return await events_page(request, page.events, page.position)


async def events_page(request: Request, events: Sequence[AgentEvent], position: int) -> Response:
    """An ``EventList`` answer: ``events``, read up to ``position``, and the head now."""
    head = await store(request).head()
    cursor = str(position) if position < head else None
    more = {"next_cursor": cursor, "position": position, "head": head}
    return events_response(EventList, events, more, 200)


def wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers=headers)


def events_response(
    model: type[BaseModel], events: Sequence[AgentEvent], extra: dict[str, Any], status: int
) -> Response:
    """``model``'s answer: ``events`` under its first field, ``extra`` its others (unchecked on
    this hot path: ``tests/api/server/test_wire.py`` holds them to the model), each event's
    public JSON written as it is kept (``AgentEvent.to_json``), not decoded and encoded again."""
    rest = "".join(f",{_quoted(k)}:{_encoded(v)}" for k, v in extra.items())
    listed = ",".join(event.to_json() for event in events)
    body = f"{{{_quoted(field_names(model)[0])}:[{listed}]{rest}}}"
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json")


class JsonText(str):
    """A value already written as JSON: ``events_response`` puts it in as it is."""

    __slots__ = ()


def _encoded(value: Any) -> str:
    return value if isinstance(value, JsonText) else compact_json(value)


@cache
def _quoted(name: str) -> str:
    """A field name as JSON, once per name."""
    return json.dumps(name)


compact_json: Callable[[Any], str] = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode
"""JSON as ``JSONResponse`` writes it (one encoder, not one per call as ``json.dumps`` with
options makes)."""
