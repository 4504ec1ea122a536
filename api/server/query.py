"""Query parameters, defined once: the routes read them and ``/openapi.json`` shows them.

Each parameter holds its name, its schema and how it is read, so a default, a bound or a
pattern cannot say one thing in the document and do another in the route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request

from api.client.contract import (
    MAX_HISTORY_SECONDS,
    MAX_ID_CHARS,
    MAX_INTEGER,
    MAX_METADATA_FILTERS,
    MAX_PAGE_SIZE,
    VISIBILITIES,
)
from api.server.errors import ApiError
from api.server.input_limits import bounded_int
from eventstore import RunStatus
from projections.queries import CURSOR_PATTERN

__all__ = [
    "ACTIVE",
    "AFTER",
    "AFTER_EVENT_ID",
    "AFTER_SEQUENCE",
    "AGENT_ID",
    "AT_EVENT_ID",
    "BEFORE",
    "CONVERSATION_ID",
    "CREATED_AFTER",
    "CREATED_BEFORE",
    "EVENT_LIMIT",
    "EXPORT_LIMIT",
    "KEPT_HEAD",
    "LANE_KEY",
    "METADATA",
    "ORDER",
    "PUBLIC_KEY",
    "RUN_ID",
    "RUN_ID_PREFIX",
    "RUN_LIMIT",
    "SECONDS",
    "STATUS",
    "STOP_REASON",
    "TEXT_FILTERS",
    "VISIBILITY",
    "Documented",
    "Param",
]


class Documented(Protocol):
    """What ``/openapi.json`` shows of a parameter."""

    @property
    def name(self) -> str: ...

    @property
    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Param:
    """A parameter that is read as it comes (a text, or one the code reading it checks)."""

    name: str
    schema: dict[str, Any]

    def get(self, request: Request) -> str | None:
        return request.query_params.get(self.name)


def _integer(low: int, high: int, default: int | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    return schema if default is None else {**schema, "default": default}


@dataclass(frozen=True)
class Integer:
    """An integer within ``low..high`` (at most 2^63-1, what the databases hold)."""

    name: str
    default: int | None = None
    """Shown in the schema; a parameter without one is ``None`` when absent."""
    low: int = 0
    high: int = MAX_INTEGER

    @property
    def schema(self) -> dict[str, Any]:
        return _integer(self.low, self.high, self.default)

    def get(self, request: Request) -> int | None:
        raw = request.query_params.get(self.name)
        if raw is None:
            return self.default
        return bounded_int(raw, self.name, low=self.low, high=self.high)

    def value(self, request: Request) -> int:
        """The parameter, or 0 when it is absent and has no default."""
        found = self.get(request)
        return 0 if found is None else found


@dataclass(frozen=True)
class Choice:
    name: str
    choices: tuple[str, ...]
    default: str

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices), "default": self.default}

    def get(self, request: Request) -> str:
        raw = request.query_params.get(self.name, self.default)
        if raw not in self.choices:
            wanted = " or ".join(self.choices)
            raise ApiError(400, "invalid_parameter", f"{self.name} must be {wanted}; got {raw!r}")
        return raw


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


@dataclass(frozen=True)
class Boolean:
    name: str

    @property
    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def get(self, request: Request) -> bool | None:
        raw = request.query_params.get(self.name)
        if raw is None:
            return None
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ApiError(400, "invalid_parameter", f"{self.name} must be true or false; got {raw!r}")


@dataclass(frozen=True)
class Statuses:
    """Run statuses, repeated or separated by commas."""

    name: str

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "string", "enum": [s.value for s in RunStatus]},
            "description": "Repeat, or separate with commas",
        }

    def get(self, request: Request) -> tuple[RunStatus, ...]:
        values = request.query_params.getlist(self.name)
        statuses = {s for value in values for s in value.split(",") if s}
        try:
            return tuple(RunStatus(s) for s in sorted(statuses))
        except ValueError as exc:
            raise ApiError(400, "invalid_parameter", f"unknown status: {exc}") from None


@dataclass(frozen=True)
class PublicKeyList:
    """Ed25519 public keys in hex, repeatable up to ``longest``: the keys a verify trusts."""

    name: str
    longest: int

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "maxItems": self.longest,
            "description": "Check signed heads with these Ed25519 public keys (repeat; "
            "default: the server's own and its --trusted-public-key ones)",
        }

    def get(self, request: Request) -> list[str]:
        values = request.query_params.getlist(self.name)
        if len(values) > self.longest:
            raise ApiError(
                400,
                "invalid_parameter",
                f"{self.name} is given at most {self.longest} times; got {len(values)}",
            )
        for value in values:
            if not _HEX_KEY.fullmatch(value):
                raise ApiError(
                    400, "invalid_parameter", f"{self.name} must be 64 lower-case hex digits"
                )
        return values


_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class MetadataFilters:
    """``key=value`` filters on a run's metadata, repeatable up to a cap."""

    name: str

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "maxItems": MAX_METADATA_FILTERS,
            "items": {"type": "string", "pattern": "^[^=\\x00]+=[^\\x00]*$"},
            "description": f"key=value, repeatable (at most {MAX_METADATA_FILTERS})",
        }

    def get(self, request: Request) -> tuple[tuple[str, str], ...]:
        raws = request.query_params.getlist(self.name)
        if len(raws) > MAX_METADATA_FILTERS:
            raise ApiError(
                400,
                "too_many_filters",
                f"at most {MAX_METADATA_FILTERS} metadata filters per query; got {len(raws)}",
                limit=MAX_METADATA_FILTERS,
            )
        return tuple(dict.fromkeys(_metadata_pair(raw) for raw in raws))


@dataclass(frozen=True)
class Text:
    """A text of at most ``longest`` characters (a longer one is a 400, not a silent miss)."""

    name: str
    longest: int
    description: str

    @property
    def schema(self) -> dict[str, Any]:
        return {**_TEXT, "maxLength": self.longest, "description": self.description}

    def get(self, request: Request) -> str | None:
        raw = request.query_params.get(self.name)
        if raw is not None and len(raw) > self.longest:
            raise ApiError(
                400,
                "invalid_parameter",
                f"{self.name} holds at most {self.longest} characters; got {len(raw)}",
            )
        return raw


def _metadata_pair(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise ApiError(400, "invalid_parameter", f"metadata filters are key=value; got {raw!r}")
    return key, value


_TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}
"""Any text but NUL, which no path or query may hold (``api.server.app._has_nul``)."""
_LIST_CURSOR = {"type": "string", "pattern": CURSOR_PATTERN}

AFTER_EVENT_ID = Integer("after_event_id")
AFTER_SEQUENCE = Integer("after_sequence")
AT_EVENT_ID = Integer("at_event_id", low=1)
EVENT_LIMIT = Integer("limit", 100, low=1, high=MAX_PAGE_SIZE)
RUN_LIMIT = Integer("limit", 20, low=1, high=MAX_PAGE_SIZE)
VISIBILITY = Param(
    "visibility",
    {
        "type": "string",
        "enum": list(VISIBILITIES),
        "description": "Highest visibility wanted (default operator), capped by the key's role",
    },
)
"""Read by ``api.server.sse.resolve_visibility``, which caps it by the key's role."""
RUN_ID = Param("run_id", _TEXT)
EXPORT_LIMIT = Integer("limit", 1000, low=1, high=MAX_PAGE_SIZE)
KEPT_HEAD = Param(
    "head",
    {
        "type": "string",
        "pattern": "^[1-9][0-9]{0,17}:[0-9a-f]{64}$",
        "description": "A head kept earlier, EVENT_ID:HASH: the log must reach it, with that hash",
    },
)
PUBLIC_KEY = PublicKeyList("public_key", longest=16)
RUN_ID_PREFIX = Text("run_id_prefix", MAX_ID_CHARS, "Runs whose id starts with this text")
SECONDS = Integer("seconds", 60, low=1, high=MAX_HISTORY_SECONDS)
STATUS = Statuses("status")
ACTIVE = Boolean("active")
METADATA = MetadataFilters("metadata")
AGENT_ID, CONVERSATION_ID, LANE_KEY, STOP_REASON, CREATED_AFTER, CREATED_BEFORE = TEXT_FILTERS = (
    Param("agent_id", _TEXT),
    Param("conversation_id", _TEXT),
    Param("lane_key", _TEXT),
    Param("stop_reason", _TEXT),
    Param("created_after", _TEXT),
    Param("created_before", _TEXT),
)
"""The run filters taken as they come; the queries check them."""
ORDER = Choice("order", ("asc", "desc"), "desc")
AFTER = Param("after", {**_LIST_CURSOR, "description": "A next_cursor of an earlier page"})
BEFORE = Param(
    "before",
    {
        **_LIST_CURSOR,
        "description": "A prev_cursor of an earlier page (with after: the runs between the two)",
    },
)
