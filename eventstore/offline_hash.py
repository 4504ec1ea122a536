"""The hash offline verification recomputes for most lines, shared by the walk and its workers.

``offline.py`` checks every other case (chain v1, a payload in another JSON form) through
``chain.event_hash``; this is the common one written out for speed.
"""

from __future__ import annotations

import hashlib
import json

from .chain import V2_LINK_PREFIX
from .offline_sources import Line

__all__ = ["v2_as_written"]

_quote = json.encoder.encode_basestring
_sha256 = hashlib.sha256


def v2_as_written(line: Line) -> str:
    """The line's chain v2 hash with its payload as written: most lines' (``offline._whole`` is
    the general case), written out here for speed, as ``chain.content_hash`` and
    ``link_hash``."""
    text = (
        f'{{"conversation_id":{_quote(line.conversation_id)},'
        f'"created_at":{_quote(line.created_at)},"event_type":{_quote(line.event_type)},'
        f'"id":{line.id},"organization_id":{_quote(line.organization_id)},'
        f'"payload":{bytes(line.payload).decode("utf-8")},"run_id":{_quote(line.run_id)},'
        f'"sequence":{line.sequence},"visibility":{_quote(line.visibility)}}}'
    )
    content = _sha256(text.encode("utf-8")).hexdigest()
    return _sha256(f"{V2_LINK_PREFIX}{line.prev_hash}\n{content}".encode("ascii")).hexdigest()
