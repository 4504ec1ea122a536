"""The server's half of the wire format: checks that need the store, and records as responses.

The shapes are ``api/client/models.py``'s, defined once; this module adds only what the client
package cannot hold because it would import the store: the full callback URL check, the store's
record for an appended event, and the mappers from read-model and log records to the responses
(``tests/api/server/test_wire.py`` holds that they produce exactly the models' fields).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import field_validator

from api.client import models
from eventstore import AgentEvent, NewEvent, Visibility, require_http_url
from projections import RunState, seen_at

__all__ = ["CreateRunBody", "event_json", "new_event", "run_json"]


class CreateRunBody(models.CreateRunBody):
    """The wire's body, with the store's callback URL check (more than a pattern can say)."""

    @field_validator("callback_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        return require_http_url(value)


def new_event(body: models.EventBody) -> NewEvent:
    return NewEvent(body.event_type, body.payload, body.visibility)


def run_json(state: RunState, visibility: Visibility) -> dict[str, Any]:
    """A run as a reader capped at ``visibility`` sees it: the summary whole, the content
    (journal, detail, error, checkpoint, tools, callback error) from events it may see."""
    state = seen_at(state, visibility)
    data = dataclasses.asdict(state)
    del data["content_views"]
    data["status"] = state.status.value
    data["tools_used"] = list(state.tools_used)
    data["child_run_ids"] = list(state.child_run_ids)
    data["terminal"] = state.terminal
    return {"id": state.run_id, **data}


def event_json(event: AgentEvent) -> dict[str, Any]:
    return event.to_dict()
