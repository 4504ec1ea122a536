"""Which chain version each event of a walk must have been hashed with.

A log holds chain v1 events up to the id before its cutover and chain v2 events from the cutover
on (``chain_version.v2_from``, recorded by migration 6; 1 for a database created since). A walk
learns the cutover from the database or from a signed head, which signs it; until then (an
export with no head yet) a whole event may match either version, but v1 may never follow v2.
Knowing the cutover matters for redacted lines: a v2 line carries its ``content_hash``, so its
link is checked and a head binds what lies before it; a holder of the export who stripped that
field to make the line look like an unbindable v1 one is caught once the cutover is known.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .chain import CHAIN_V1, CHAIN_V2, ChainBreak, link_hash

__all__ = ["ChainVersions"]


@dataclass
class ChainVersions:
    """What a walk in id order knows and has seen of the two chain versions."""

    v2_from: int | None = None
    """The first id hashed with chain v2, once known (the database, a signed head)."""
    first_walked: int = 0
    last_v1: int = 0
    """The last event seen hashed with v1 (0: none): v1 events are a prefix of the log."""
    first_v2: int = 0
    """The first event seen hashed with v2 (0: none)."""
    likely: int = CHAIN_V2
    """The version to try first while the cutover is unknown: the last one seen."""

    def expected(self, event_id: int) -> int | None:
        """The version ``event_id`` must have, or None while the cutover is unknown."""
        if self.v2_from is None:
            return None
        return CHAIN_V2 if event_id >= self.v2_from else CHAIN_V1

    def past_cutover(self, event_id: int) -> bool:
        """Whether ``event_id`` is v2 with nothing left to note: a v2 event was seen already
        and the cutover, if known, is at or before it (the common case, checked cheaply)."""
        return self.first_v2 > 0 and (self.v2_from is None or event_id >= self.v2_from)

    def whole(
        self, event_id: int, event_hash: str, hash_in: Callable[[int], str]
    ) -> ChainBreak | None:
        """A whole event: ``hash_in(version)`` recomputes its hash. The version its id must
        have is tried first; the other one too, to say which rule a matching hash breaks."""
        expected = self.expected(event_id)
        version = self.likely if expected is None else expected
        if hash_in(version) != event_hash:
            version = CHAIN_V1 if version == CHAIN_V2 else CHAIN_V2
            if hash_in(version) != event_hash:
                return ChainBreak(
                    event_id, "hash does not match the event's content: the event was modified"
                )
        return self.saw(event_id, version)

    def saw(self, event_id: int, version: int) -> ChainBreak | None:
        """``event_id`` verified with ``version``: whether that is where that version belongs."""
        if not self.first_walked:
            self.first_walked = event_id
        expected = self.expected(event_id)
        if expected is not None and expected != version:
            return _misplaced(event_id, version, self.v2_from)
        if version == CHAIN_V1:
            if self.first_v2:
                return ChainBreak(
                    event_id,
                    f"this event is hashed with chain v1 after event {self.first_v2}, hashed "
                    "with chain v2: the chain was rewritten up to here",
                )
            self.last_v1 = event_id
        elif not self.first_v2:
            self.first_v2 = event_id
        self.likely = version
        return None

    def redacted(
        self, event_id: int, prev_hash: str, event_hash: str, content_hash: str
    ) -> ChainBreak | None:
        """A redacted line: with its ``content_hash`` its v2 link is checked; without, it is a
        v1 line, whose link cannot be checked, and which the cutover must allow."""
        if not content_hash:
            return self.saw(event_id, CHAIN_V1)
        if link_hash(prev_hash, content_hash) != event_hash:
            return ChainBreak(
                event_id,
                "the hash of this redacted event does not follow from its prev_hash and "
                "content_hash: the chain was rewritten up to here",
            )
        return self.saw(event_id, CHAIN_V2)

    def learn(self, v2_from: int | None, event_id: int, where: str) -> ChainBreak | None:
        """The cutover as ``where`` (a signed head at ``event_id``, the database) states it,
        checked against another statement and against the events already walked."""
        if v2_from is None:
            return None
        if self.v2_from is not None and self.v2_from != v2_from:
            return ChainBreak(
                event_id,
                f"{where} says chain v2 starts at event {v2_from}, but the log says "
                f"{self.v2_from}: the chain was rewritten",
            )
        self.v2_from = v2_from
        if self.last_v1 >= v2_from:
            return _misplaced(max(v2_from, self.first_walked), CHAIN_V1, v2_from)
        if self.first_v2 and self.first_v2 < v2_from:
            return _misplaced(self.first_v2, CHAIN_V2, v2_from)
        return None


def _misplaced(event_id: int, version: int, v2_from: int | None) -> ChainBreak:
    if version == CHAIN_V1:
        return ChainBreak(
            event_id,
            f"this event is hashed with chain v1 (or is a redacted line without its "
            f"content_hash), but chain v2 starts at event {v2_from}: the chain was rewritten, "
            "or the line was stripped",
        )
    return ChainBreak(
        event_id,
        f"this event is hashed with chain v2, but chain v2 starts only at event {v2_from}",
    )
