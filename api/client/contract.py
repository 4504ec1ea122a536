"""The constants of the wire contract: input limits, patterns, names of statuses and event types.

They are defined here, in the client package, so that a client reads them without loading the
server or the store; the server imports them from here. Where the store keeps its own (it cannot
import ``api``), ``tests/api/client/test_contract.py`` holds the two equal.

The limits are part of the API contract rather than settings (a client may rely on them),
except the body size, which an operator sets with ``runtrack serve --max-body-bytes``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BeforeValidator

__all__ = [
    "APPENDABLE_TYPES",
    "CALLBACK_URL_PATTERN",
    "CUSTOM_TYPE_PATTERN",
    "EVENT_TYPE_PATTERN",
    "IDENTIFIER_PATTERN",
    "INTEGRAL",
    "MAX_CLAIM_WAIT_SECONDS",
    "MAX_EVENTS_PER_APPEND",
    "MAX_HISTORY_SECONDS",
    "MAX_ID_CHARS",
    "MAX_INTEGER",
    "MAX_JSON_DEPTH",
    "MAX_METADATA_FILTERS",
    "MAX_PAGE_SIZE",
    "MAX_TEXT_CHARS",
    "SERVER_WRITTEN_TYPES",
    "STATUSES",
    "TERMINAL_STATUSES",
    "VISIBILITIES",
]

MAX_JSON_DEPTH = 64
"""Levels of objects and arrays in a request body, the body itself being level 1: far above
what real payloads nest, far below the depth at which the decoder or serializer recurses out."""
MAX_EVENTS_PER_APPEND = 1000
MAX_METADATA_FILTERS = 32
"""``metadata=key=value`` filters in one listing: each is a sub-select of the query."""
MAX_PAGE_SIZE = 1000
MAX_CLAIM_WAIT_SECONDS = 30.0
"""The longest ``wait_seconds`` a claim may wait server-side for a claimable run."""
MAX_HISTORY_SECONDS = 300
"""The longest look back of ``GET /v1/runs/stats/history``: it replays every run that changed."""
MAX_ID_CHARS = 200
"""Identifiers a client chooses: agent, conversation, worker, tool call, idempotency key."""
MAX_TEXT_CHARS = 4000
"""Short free text: a cancel reason, a tool error."""
MAX_INTEGER = 2**63 - 1
"""The largest integer a counter, id or cursor may hold: both backends store them as 64-bit."""

IDENTIFIER_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
"""What an identifier may hold, as a JSON Schema pattern: anything but control characters."""

STATUSES = (
    "queued",
    "waiting_on_lane",
    "running",
    "waiting_on_tool",
    "waiting_on_child",
    "waiting_on_human",
    "resuming",
    "completed",
    "failed",
    "cancelled",
    "timed_out",
)
"""Every status a run can have, in the lifecycle's order (``projections/lifecycle.py``)."""
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timed_out"})
"""Statuses of runs that have ended (``Run.terminal`` says it of one run)."""
VISIBILITIES = ("user", "operator", "internal")
"""From narrowest to widest: each level includes the ones before it."""

SERVER_WRITTEN_TYPES = frozenset({"run_created", "callback_attempted", "human_input", "chain_head"})
"""Event types only the server writes (``POST /v1/runs``, the callback deliverer, ``POST
/v1/runs/{id}/input``, the head signer): appended through the API they would let a client fake
a run's start, a delivery's outcome, a person's answer or a signed head."""
APPENDABLE_TYPES = (
    "run_status_changed",
    "cancel_requested",
    "tool_started",
    "tool_finished",
    "checkpoint_created",
    "journal_updated",
    "message_created",
    "step_completed",
    "child_run_started",
    "child_run_finished",
    "human_input_requested",
    "metadata_updated",
)
"""The core event types a client may append."""
CUSTOM_TYPE_PATTERN = "^custom\\.[^\\x00-\\x1f\\x7f-\\x9f]+$"
EVENT_TYPE_PATTERN = f"^({'|'.join(APPENDABLE_TYPES)}|{CUSTOM_TYPE_PATTERN[1:-1]})$"
"""The event types an append through the API accepts: a core type the server does not keep to
itself, or ``custom.`` and no control characters."""

_LABEL = "[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_PORT = "0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_TOP_LABEL = "[A-Za-z_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
"""A last label that starts with a letter: never read as a number, so the name is no address."""
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_QUAD = f"{_OCTET}(\\.{_OCTET}){{3}}"
CALLBACK_URL_PATTERN = (
    f"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
    f"(({_LABEL}\\.)*{_TOP_LABEL}\\.?|{_QUAD})"
    f"(:({_PORT})?)?([/?#][!-~]*)?$"
)
"""What ``/openapi.json`` promises of a callback URL: the URLs the server's check
(``eventstore/callback_url.py``) takes, less bracketed IPv6 literals and names whose last label
starts with a digit (which it also takes), so that a client generating URLs from the schema
never meets a refusal."""


def _integral(value: Any) -> Any:
    """JSON has one number type: ``3.0`` is the integer 3, as JSON Schema counts it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


INTEGRAL = BeforeValidator(_integral)
"""Put after an integer's constraints in ``Annotated`` (so that the schema shows them): strict
validation then also takes ``3.0``, as JSON Schema does."""
