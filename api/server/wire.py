"""The server's half of the wire format: checks that need the store, and records as responses.

The shapes are ``api/client/models.py``'s, defined once; this module adds only what the client
package cannot hold because it would import the store: the full callback URL check, the store's
record for an appended event, and the mappers from read-model and log records to the responses
(``tests/api/server/test_wire.py`` holds that every answer is exactly its model).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, field_validator

from api.client import models
from eventstore import AgentEvent, NewEvent, Visibility, require_http_url
from projections import RunState, seen_at

__all__ = ["CreateRunBody", "event_json", "field_names", "new_event", "run_json", "shaped"]


class CreateRunBody(models.CreateRunBody):
    """The wire's body, with the store's callback URL check (more than a pattern can say)."""

    @field_validator("callback_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        return require_http_url(value)


def new_event(body: models.EventBody) -> NewEvent:
    return NewEvent(body.event_type, body.payload, body.visibility)


@cache
def field_names(model: type[BaseModel]) -> tuple[str, ...]:
    """``model``'s fields in order, read once (``model_fields`` is a property: slower)."""
    return tuple(model.model_fields)


def shaped(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """``model``'s answer as a dict, for hot paths: its fields are checked, not validated
    (``Model(...).model_dump()`` costs more than the route's own work there)."""
    if tuple(fields) != field_names(model):
        raise TypeError(f"{model.__name__} takes {field_names(model)}, not {tuple(fields)}")
    return fields


_RUN_FIELDS = tuple(models.Run.model_fields)
_RUN_CONVERTED = {"id", "status", "tools_used", "child_run_ids", "terminal"}
_RUN_COPIED = tuple(name for name in _RUN_FIELDS if name not in _RUN_CONVERTED)
"""The ``Run`` fields a ``RunState`` holds as the wire shows them."""


def run_json(state: RunState, visibility: Visibility) -> dict[str, Any]:
    """A run as a reader capped at ``visibility`` sees it: the summary whole, the content
    (journal, detail, error, checkpoint, tools, callback error) from events it may see.

    Keyed by ``Run``'s fields without validating them: this is the hottest mapper."""
    state = seen_at(state, visibility)
    held = state.__dict__
    data = {name: held[name] for name in _RUN_COPIED}
    data["id"] = state.run_id
    data["status"] = state.status.value
    data["tools_used"] = list(state.tools_used)
    data["child_run_ids"] = list(state.child_run_ids)
    data["terminal"] = state.terminal
    return {name: data[name] for name in _RUN_FIELDS}


def event_json(event: AgentEvent) -> dict[str, Any]:
    return event.to_dict()
