"""The tamper-evident hash chain.

Version 2 (every database since migration 6, from the id it records in ``chain_version``): an
event's ``content_hash`` is SHA-256 over the canonical JSON of the event *without* ``prev_hash``,
and its ``hash`` is SHA-256 over ``runtrack chain v2\n<prev_hash>\n<content_hash>``. The link does
not depend on the content, so a line that shows only an event's id and hashes (another
organization's event in an export) still proves its link, and a signed head binds every event
before it. Version 1 (the events written before the migration): ``hash`` is SHA-256 over the
canonical JSON of the event *with* ``prev_hash``. Canonical JSON: keys sorted, no spaces, UTF-8,
no NaN/Infinity; the payload is stored as its own canonical text, so the hashed bytes can be
rebuilt from a row without decoding anything. An auditor can recompute every hash with any JSON
library that sorts keys (docs/eventstore.md, "The hash chain"; what it proves: docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from .records import AgentEvent, decode_json

__all__ = [
    "CHAIN_V1",
    "CHAIN_V2",
    "V2_LINK_PREFIX",
    "ChainBreak",
    "canonical_json",
    "content_hash",
    "event_content_hash",
    "event_hash",
    "link_hash",
    "recompute_hash",
    "verify_link",
]

CHAIN_V1 = 1
CHAIN_V2 = 2
V2_LINK_PREFIX = "runtrack chain v2\n"
_V2_DOMAIN = V2_LINK_PREFIX.encode("ascii")
"""Keeps a v2 link hash from being the hash of anything else (a v1 event's canonical JSON
starts with ``{``)."""

_quote = json.encoder.encode_basestring


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_reference = _CANONICAL.encode
"""The definition of the canonical form: every hash of an existing log was made with it."""

_dumps = orjson.dumps
_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
"""Sorted keys; subclasses (a dict or str subclass may write itself differently), dataclasses
and datetimes are refused by orjson, so they take the reference encoder, as before."""
_SHORT_EXPONENT = re.compile(rb"e-[0-9](?![0-9])")
"""orjson writes ``1e-7`` where ``repr`` writes ``1e-07``."""


def canonical_json(value: Any) -> str:
    """The one JSON form used for payloads and hashing: the reference encoder's exact text.

    orjson writes it several times faster, and it writes the same text for every value except
    floats in [1e-9, 1e-4) (``1e-7``, ``0.00001``: ``repr`` writes ``1e-07``, ``1e-05``),
    NaN and infinities (``null``, where the reference refuses them) and the types it knows
    and ``json`` does not (enums, UUIDs); it refuses integers outside 64 bits. So its text is
    kept only when it holds neither of those float forms and decodes back to ``value``;
    anything else goes to the reference encoder.
    """
    if not _FAST:
        return _reference(value)
    try:
        data = _dumps(value, option=_OPTIONS)
    except TypeError:  # integers past 64 bits, non-string keys, depth past 255, subclasses
        return _reference(value)
    if (
        b".0000" in data
        or (b"e-" in data and _SHORT_EXPONENT.search(data) is not None)
        or decode_json(data) != value
    ):
        return _reference(value)
    return data.decode()


def _fast_path_is_safe() -> bool:
    """Whether every float form in which the installed orjson differs from the reference is
    one ``canonical_json`` sends to the reference encoder: one probe per decade, since a
    float's written form changes only with its exponent."""
    for exponent in range(-325, 310):
        for mantissa in ("1", "1.5", "9.875", "1.2345678901234567"):
            probe = float(f"{mantissa}e{exponent}")
            if not math.isfinite(probe):
                continue
            data = _dumps(probe)
            flagged = b".0000" in data or _SHORT_EXPONENT.search(data) is not None
            if data.decode() != _reference(probe) and not flagged:
                return False
    return True


_FAST = _fast_path_is_safe()


def _canonical_text(
    id: int,
    organization_id: str,
    run_id: str,
    conversation_id: str,
    sequence: int,
    event_type: str,
    visibility: str,
    payload_json: str,
    created_at: str,
    prev_hash: str | None,
) -> str:
    """The event's canonical JSON (keys sorted), with ``prev_hash`` (v1) or without (v2)."""
    prev = "" if prev_hash is None else f',"prev_hash":{_quote(prev_hash)}'
    return (
        f'{{"conversation_id":{_quote(conversation_id)},"created_at":{_quote(created_at)},'
        f'"event_type":{_quote(event_type)},"id":{id},"organization_id":{_quote(organization_id)},'
        f'"payload":{payload_json}{prev},"run_id":{_quote(run_id)},'
        f'"sequence":{sequence},"visibility":{_quote(visibility)}}}'
    )


def content_hash(
    *,
    id: int,
    organization_id: str,
    run_id: str,
    conversation_id: str,
    sequence: int,
    event_type: str,
    visibility: str,
    payload_json: str,
    created_at: str,
) -> str:
    """SHA-256 of the event's canonical JSON without ``prev_hash`` (chain v2's content)."""
    text = _canonical_text(
        id, organization_id, run_id, conversation_id, sequence, event_type, visibility,
        payload_json, created_at, None,
    )  # fmt: skip
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def link_hash(prev_hash: str, content: str) -> str:
    """Chain v2's ``hash``: what binds an event's content hash to the hash before it."""
    return hashlib.sha256(
        _V2_DOMAIN + prev_hash.encode("ascii") + b"\n" + content.encode("ascii")
    ).hexdigest()


def event_hash(
    *,
    id: int,
    organization_id: str,
    run_id: str,
    conversation_id: str,
    sequence: int,
    event_type: str,
    visibility: str,
    payload_json: str,
    created_at: str,
    prev_hash: str,
    version: int = CHAIN_V2,
) -> str:
    """The event's ``hash`` in chain ``version``."""
    if version == CHAIN_V2:
        content = content_hash(
            id=id,
            organization_id=organization_id,
            run_id=run_id,
            conversation_id=conversation_id,
            sequence=sequence,
            event_type=event_type,
            visibility=visibility,
            payload_json=payload_json,
            created_at=created_at,
        )
        return link_hash(prev_hash, content)
    text = _canonical_text(
        id, organization_id, run_id, conversation_id, sequence, event_type, visibility,
        payload_json, created_at, prev_hash,
    )  # fmt: skip
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_content_hash(event: AgentEvent) -> str:
    """``event``'s v2 content hash, from its payload as stored when that is the hashed text
    (always, for events this store wrote), else from its canonical form."""
    stored = _content_of(event, event.payload_json)
    if link_hash(event.prev_hash, stored) == event.hash:
        return stored
    return _content_of(event, canonical_json(decode_json(event.payload_json)))


def _content_of(event: AgentEvent, payload_json: str) -> str:
    return content_hash(
        id=event.id,
        organization_id=event.organization_id,
        run_id=event.run_id,
        conversation_id=event.conversation_id,
        sequence=event.sequence,
        event_type=event.event_type,
        visibility=event.visibility,
        payload_json=payload_json,
        created_at=event.created_at,
    )


def recompute_hash(event: AgentEvent, version: int = CHAIN_V2) -> str:
    return event_hash(
        id=event.id,
        organization_id=event.organization_id,
        run_id=event.run_id,
        conversation_id=event.conversation_id,
        sequence=event.sequence,
        event_type=event.event_type,
        visibility=event.visibility,
        payload_json=canonical_json(decode_json(event.payload_json)),
        created_at=event.created_at,
        prev_hash=event.prev_hash,
        version=version,
    )


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def verify_link(
    event: AgentEvent,
    expected_prev_hash: str | None,
    version: int = CHAIN_V2,
    *,
    check_hash: bool = True,
) -> ChainBreak | None:
    """Check one event: (when known) that it follows the expected previous hash, and its hash
    in chain ``version`` (``check_hash``)."""
    if expected_prev_hash is not None and event.prev_hash != expected_prev_hash:
        return ChainBreak(
            event.id,
            "prev_hash does not match the previous event: an event was removed or reordered",
        )
    if check_hash and recompute_hash(event, version) != event.hash:
        return ChainBreak(
            event.id, "hash does not match the event's content: the event was modified"
        )
    return None
