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
from dataclasses import dataclass
from typing import Any

from .records import AgentEvent

__all__ = ["ChainBreak", "canonical_json", "event_hash", "verify_link"]

_quote = json.encoder.encode_basestring


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(value: Any) -> str:
    """The one JSON form used for payloads and hashing.

    One prebuilt encoder: ``json.dumps`` with arguments builds a new encoder on every call.
    """
    return _CANONICAL.encode(value)


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
        payload_json=canonical_json(json.loads(event.payload_json)),
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
