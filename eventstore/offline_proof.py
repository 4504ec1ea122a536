"""Which whole events of an export a head actually vouches for.

A head (a kept one, or one whose signature verified) naming event H binds every event before H
back along the chain: a whole line's hash covers its content and its ``prev_hash``, and a
redacted chain v2 line's hash is recomputed from its ``prev_hash`` and ``content_hash``. A
redacted v1 line gives its hash without the content it was computed from: nothing ties that
hash to its ``prev_hash``, so the binding stops there, and whole events before it are proven
only by a head that names one of them or an event after them with no redacted v1 line between.
Every other whole event is self-consistent only: *unproven* (docs/security.md, "Chain v2").
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Coverage"]

MAX_RANGES = 64
"""Ranges listed in a report; past it only the count grows (a report stays short)."""


@dataclass
class Coverage:
    """Walked in id order, told only of redacted lines and of heads (every other line is
    whole, so a walk over whole lines costs nothing here); ``finish`` after the last line."""

    unproven: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)
    """Unproven stretches, first and last id; a stretch may hold redacted lines."""
    truncated: bool = False
    """More stretches than ``MAX_RANGES`` were unproven."""
    _settled: int = 0
    """The last id whose fate is known: a redacted line, or the last event a head proved.
    The whole events after it, up to the current line, are open: a later head may bind them."""
    _proven_since: bool = True
    """A whole event was proven since the last unproven stretch (a new range starts)."""

    def start(self, first_id: int) -> None:
        self._settled = first_id - 1

    def redacted(self, event_id: int) -> None:
        """A redacted v1 line: the binding stops here, what is still open before it is
        unproven."""
        self._close(event_id - 1)
        self._settled = event_id

    def bound(self, head_id: int) -> None:
        """A head vouches for event ``head_id``: the open whole events up to it are proven (a
        head on a redacted line, or on an event already settled, binds nothing more)."""
        if head_id > self._settled:
            self._settled = head_id
            self._proven_since = True

    def finish(self, last_id: int) -> None:
        """After the last line: whole events after the last head are unproven too."""
        self._close(last_id)
        self._settled = max(self._settled, last_id)

    def _close(self, end: int) -> None:
        start = self._settled + 1
        if start > end:
            return
        self.unproven += end - start + 1
        if self.truncated:
            pass
        elif self.ranges and not self._proven_since:
            self.ranges[-1] = (self.ranges[-1][0], end)
        elif len(self.ranges) < MAX_RANGES:
            self.ranges.append((start, end))
        else:
            self.truncated = True
        self._proven_since = False
