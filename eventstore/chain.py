"""The tamper-evident hash chain.

Each event's ``hash`` is SHA-256 over the canonical JSON of the event, which includes the previous
event's hash (``prev_hash``). Canonical JSON: keys sorted, no spaces, UTF-8, no NaN/Infinity; the
payload is stored as its own canonical text, so the hashed bytes can be rebuilt from a row without
decoding anything. An auditor can recompute every hash with any JSON library that sorts keys (see
docs/eventstore.md, "The hash chain"; what the chain proves: docs/security.md).
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

__all__ = ["ChainBreak", "canonical_json", "event_hash", "verify_link"]

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
) -> str:
    """SHA-256 of the event's canonical JSON (sorted keys, written out by hand for speed)."""
    text = (
        f'{{"conversation_id":{_quote(conversation_id)},"created_at":{_quote(created_at)},'
        f'"event_type":{_quote(event_type)},"id":{id},"organization_id":{_quote(organization_id)},'
        f'"payload":{payload_json},"prev_hash":{_quote(prev_hash)},"run_id":{_quote(run_id)},'
        f'"sequence":{sequence},"visibility":{_quote(visibility)}}}'
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recompute_hash(event: AgentEvent) -> str:
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
    )


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def verify_link(event: AgentEvent, expected_prev_hash: str | None) -> ChainBreak | None:
    """Check one event: its hash, and (when known) that it follows the expected previous hash."""
    if expected_prev_hash is not None and event.prev_hash != expected_prev_hash:
        return ChainBreak(
            event.id,
            "prev_hash does not match the previous event: an event was removed or reordered",
        )
    if recompute_hash(event) != event.hash:
        return ChainBreak(
            event.id, "hash does not match the event's content: the event was modified"
        )
    return None
