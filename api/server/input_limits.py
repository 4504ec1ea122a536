"""The input limits of the HTTP API: the routes enforce them, ``/openapi.json`` advertises them
(``x-runtrack-limits``), docs/api.md and docs/security.md explain them.

The limits themselves are wire constants, defined in ``api/client/contract.py`` so that a
client reads them without the server; this module holds their checks.
"""

from __future__ import annotations

import re
from typing import Any

from api.client.contract import (
    MAX_EVENTS_PER_APPEND,
    MAX_ID_CHARS,
    MAX_INTEGER,
    MAX_JSON_DEPTH,
    MAX_METADATA_FILTERS,
    MAX_PAGE_SIZE,
)
from api.server.errors import ApiError
from eventstore import CONTROL_CHARACTER

__all__ = [
    "advertised",
    "bounded_int",
    "identifier",
]

_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")


def advertised(max_body_bytes: int) -> dict[str, Any]:
    """The limits as ``/openapi.json`` lists them (those JSON Schema has no keyword for, too)."""
    return {
        "max_body_bytes": max_body_bytes,
        "max_json_depth": MAX_JSON_DEPTH,
        "max_events_per_append": MAX_EVENTS_PER_APPEND,
        "max_metadata_filters": MAX_METADATA_FILTERS,
        "max_page_size": MAX_PAGE_SIZE,
        "max_integer": MAX_INTEGER,
        "strings": "no lone UTF-16 surrogates (\\ud800-\\udfff unpaired) anywhere in a body",
    }


def bounded_int(
    raw: str, name: str, *, low: int = 0, high: int = MAX_INTEGER, code: str = "invalid_parameter"
) -> int:
    """``raw`` as an integer in ``low..high``, or a 400 naming the range."""
    text = raw.strip()
    if _INTEGER.fullmatch(text) is None:
        shown = raw[:40] + ("..." if len(raw) > 40 else "")
        raise ApiError(400, code, f"{name} must be an integer from {low} to {high}; got {shown!r}")
    value = int(text)
    if value < low or value > high:
        raise ApiError(
            400, code, f"{name} must be from {low} to {high}; got {value}", low=low, high=high
        )
    return value


def identifier(raw: str, name: str) -> str:
    """A client-chosen id from a path: one that no run can have is a 400, not an empty answer."""
    if not raw or len(raw) > MAX_ID_CHARS or CONTROL_CHARACTER.search(raw):
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name} must be 1 to {MAX_ID_CHARS} characters without control characters",
        )
    return raw
