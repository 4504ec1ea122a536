"""The hash offline verification recomputes for most lines, shared by the walk and its workers.

``offline.py`` checks every other case (chain v1, a payload in another JSON form) through
``chain.event_hash``; this is the common one written out for speed.
"""

from __future__ import annotations

import hashlib

import msgspec

from .chain import V2_LINK_PREFIX
from .offline_sources import Line

__all__ = ["v2_as_written"]

_sha256 = hashlib.sha256


class _Content(msgspec.Struct):
    """An event's content in canonical JSON's key order: msgspec writes a struct's fields in
    order, compact, with strings escaped as ``json.dumps(ensure_ascii=False)`` escapes them,
    and the payload as written. Faster than formatting the text (docs/benchmarks.md,
    2026-12-02); where the two could differ the hash does not match and ``offline._whole``
    hashes the canonical text."""

    conversation_id: str
    created_at: str
    event_type: str
    id: int
    organization_id: str
    payload: msgspec.Raw
    run_id: str
    sequence: int
    visibility: str


_encode = msgspec.json.Encoder().encode


def v2_as_written(line: Line) -> str:
    """The line's chain v2 hash with its payload as written: most lines' (``offline._whole`` is
    the general case), as ``chain.content_hash`` and ``link_hash`` compute it."""
    text = _encode(
        _Content(
            line.conversation_id,
            line.created_at,
            line.event_type,
            line.id,
            line.organization_id,
            line.payload,
            line.run_id,
            line.sequence,
            line.visibility,
        )
    )
    content = _sha256(text).hexdigest()
    return _sha256(f"{V2_LINK_PREFIX}{line.prev_hash}\n{content}".encode("ascii")).hexdigest()
