"""Storage records: what an event is once stored, and what a caller asks to append.

Records are frozen dataclasses (cheap to build from a database row); payloads are kept as their
canonical JSON text, decoded only when someone asks for ``payload``. Streaming and exporting
events therefore never decode and re-encode a payload.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = [
    "GENESIS_HASH",
    "AgentEvent",
    "EventFilter",
    "EventPage",
    "NewEvent",
    "Visibility",
    "decode_json",
    "plain_names",
    "quote_json",
    "refilled_events",
]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first event in the log."""


class Visibility(enum.IntEnum):
    """Who may see an event. Each level includes the ones below it: user ⊂ operator ⊂ internal."""

    USER = 1
    OPERATOR = 2
    INTERNAL = 3

    @property
    def label(self) -> str:
        """The stored name (a table lookup: the fold asks it for every event it folds)."""
        return _LABELS[self]

    @classmethod
    def parse(cls, value: str | Visibility) -> Visibility:
        if isinstance(value, Visibility):
            return value
        try:
            return cls[value.upper()]
        except (KeyError, AttributeError):
            raise ValueError(
                f"visibility must be one of user, operator, internal; got {value!r}"
            ) from None

    def labels_up_to(self) -> tuple[str, ...]:
        """The stored labels a reader at this level may see (precomputed: every stream's filter
        asks this for every event it is woken for)."""
        return _LABELS_UP_TO[self]


_LABELS = {level: level.name.lower() for level in Visibility}
_LEVELS = {label: level for level, label in _LABELS.items()}
_LABELS_UP_TO = {
    level: tuple(other.name.lower() for other in Visibility if other <= level)
    for level in Visibility
}


@dataclass(frozen=True)
class NewEvent:
    """An event a caller wants appended; validated and normalised before it reaches the writer."""

    event_type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    visibility: str | None = None


@dataclass(frozen=True)
class AgentEvent:
    """One committed event of the log, exactly as stored and hashed."""

    id: int
    organization_id: str
    run_id: str
    conversation_id: str
    sequence: int
    event_type: str
    visibility: str
    payload_json: str
    created_at: str
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> AgentEvent:
        """Build from a database row in ``EVENT_COLUMNS`` order.

        Fills ``__dict__`` directly, cheaper than the frozen dataclass ``__init__`` (which
        calls ``object.__setattr__`` per field), and replay builds one per event.
        """
        event = _new(cls)
        event.__dict__.update(zip(_FIELDS, row, strict=True))
        return event

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, decoded once (a plain cache: Python 3.11's ``cached_property`` locks)."""
        decoded: dict[str, Any] | None = self.__dict__.get("_payload")
        if decoded is None:
            decoded = decode_json(self.payload_json)
            self.__dict__["_payload"] = decoded
        return decoded

    @property
    def visibility_level(self) -> Visibility:
        return _LEVELS[self.visibility]

    def to_json(self) -> str:
        """The public JSON form (SSE ``data:``, exports), built without decoding the payload."""
        return (
            f'{{"id":{self.id},"event_type":{quote_json(self.event_type)},'
            f'"run_id":{quote_json(self.run_id)},'
            f'"conversation_id":{quote_json(self.conversation_id)},'
            f'"organization_id":{quote_json(self.organization_id)},"sequence":{self.sequence},'
            f'"visibility":{quote_json(self.visibility)},"payload":{self.payload_json},'
            f'"created_at":{quote_json(self.created_at)},"prev_hash":{quote_json(self.prev_hash)},'
            f'"hash":{quote_json(self.hash)}}}'
        )

    def to_dict(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.to_json())
        return decoded


_decode = msgspec.json.Decoder().decode
_reference_loads = json.loads


def decode_json(text: str | bytes) -> Any:
    """``json.loads``, several times faster: msgspec reads every value of our canonical text
    as ``json`` does (integers of any size exactly, floats correctly rounded); what it refuses
    (``NaN``, ``1e400``, a lone surrogate escape) goes to ``json.loads``, which decides as
    before."""
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return _reference_loads(text)


quote_json: Callable[[str], str] = json.encoder.encode_basestring
"""A string as the public JSON form writes it (``to_json``)."""

_ESCAPED = json.encoder.ESCAPE
"""The characters ``quote_json`` escapes: ``"``, ``\\`` and those below U+0020 (the pattern
of the pure-Python encoder that the C one mirrors)."""


def plain_names(event: AgentEvent) -> bool:
    """Whether the names a client chose for ``event`` (its type, run, conversation and
    organization) are written in JSON as they are, between quotes: nothing to escape.

    Stored with the event, so that the database frames such events without quoting them (see
    ``framing``); names with a quote or a backslash are rare, and stay quoted.
    """
    names = f"{event.event_type}{event.run_id}{event.conversation_id}{event.organization_id}"
    return _ESCAPED.search(names) is None


def refilled_events(rows: Iterable[Sequence[Any]]) -> Iterator[AgentEvent]:
    """One event per row (``EVENT_COLUMNS`` order), the *same* object refilled each time.

    For a fold that keeps an event's values but never the event itself (a rebuild folds the
    whole log): it saves building and freeing an object and its dict per event, a quarter of
    reading the log. The payload is decoded on first use, as for any event.

    The row is unpacked into the event's dict by name (``_FIELDS``' order): a row of another
    length is refused, and this costs a third of ``update(zip(_FIELDS, row))``
    (docs/benchmarks.md).
    """
    event = _new(AgentEvent)
    values = event.__dict__
    for row in rows:
        (
            values["id"],
            values["organization_id"],
            values["run_id"],
            values["conversation_id"],
            values["sequence"],
            values["event_type"],
            values["visibility"],
            values["payload_json"],
            values["created_at"],
            values["prev_hash"],
            values["hash"],
        ) = row
        values["_payload"] = None
        yield event


_new = object.__new__
_FIELDS = (
    "id",
    "organization_id",
    "run_id",
    "conversation_id",
    "sequence",
    "event_type",
    "visibility",
    "payload_json",
    "created_at",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class EventFilter:
    """Which events a reader wants; ``organization_id=None`` means every tenant (internal use)."""

    organization_id: str | None = None
    run_id: str | None = None
    conversation_id: str | None = None
    visibility: Visibility = Visibility.INTERNAL

    def matches(self, event: AgentEvent) -> bool:
        return (
            (self.organization_id is None or event.organization_id == self.organization_id)
            and (self.run_id is None or event.run_id == self.run_id)
            and (self.conversation_id is None or event.conversation_id == self.conversation_id)
            and (
                self.visibility is Visibility.INTERNAL
                or event.visibility in self.visibility.labels_up_to()
            )
        )


@dataclass(frozen=True)
class EventPage:
    """A page of events and the position (event id) the reader has scanned up to.

    ``position`` can be past the last event returned: a filtered read scans events it may not
    return, and a reader resumes from ``position`` without scanning them again.
    """

    events: list[AgentEvent]
    position: int
