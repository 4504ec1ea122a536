"""An archive's segments, written ahead of the units that take their events out of the log.

A unit may delete only events whose segment is durable and read back, so the writer waits for
the segment of its next unit unless that was written while the unit before it ran. Writing
ahead all the time left the appends no time with the writer between units (docs/benchmarks.md,
"archive rate with appenders"), so the archive asks for segments ahead only while its units
found nobody waiting (``SegmentsAhead.want``): alone, the writer never idles between units;
with appends waiting, each segment is written after the unit before it, as that gap lets them
commit.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .segments import Batch, Manifest, write_segment
from .tasks import cancel_and_wait

__all__ = ["WRITES", "Ready", "SegmentsAhead"]

WRITES = 2
"""Segments written at once: a segment's four fsyncs were most of its writing, and the
writer (alone) deleted faster than one thread wrote (docs/benchmarks.md, "the archive's
rate")."""

ReadBatch = Callable[[int, int], Awaitable[Batch | None]]
"""Events ``(after, upto]`` of the log as a batch, None when there are none."""
CheckJoin = Callable[[Batch, int, str], None]
"""Raises when a batch does not follow the cut ``(id, hash)`` it should follow."""


@dataclass(frozen=True)
class Ready:
    """A durable, checked segment and the creation time of its last event (for the anchor)."""

    manifest: Manifest
    last_created_at: str


class SegmentsAhead:
    """Reads and writes the segments of ``(cut, last_id]`` in order, one task, as far ahead
    as asked (``want``, in events); ``take`` hands the oldest ones over."""

    def __init__(
        self,
        read: ReadBatch,
        check_join: CheckJoin,
        directory: Path,
        cut: tuple[int, str],
        last_id: int,
        batch: int,
    ) -> None:
        self._read, self._check_join = read, check_join
        self._directory, self._last_id, self._batch = directory, last_id, batch
        self._cut = cut
        self._ready: list[Ready] = []
        self._wanted = 0
        self._ended = False
        self._more_wanted = asyncio.Event()
        """Set when ``want`` or ``take`` may have left the producer something to write."""
        self._written = asyncio.Event()
        """Set when a segment was written, or the producer stopped."""
        self._reading = self._start_read(cut[0])
        self._producer = asyncio.ensure_future(self._produce())

    def want(self, events: int) -> None:
        """Keep up to ``events`` events in written segments (0: write none until ``take``)."""
        self._wanted = events
        self._more_wanted.set()

    async def take(self, events: int) -> list[Ready]:
        """The oldest written segments, up to ``events`` events in all but at least one (empty
        at the end); waits for one when none is written yet."""
        wanted = self._wanted
        while not self._ready:
            if self._ended or self._producer.done():
                self._producer.result()  # its error, if any, is the archive's
                return []
            self._wanted = max(wanted, 1)  # this one, and no more than asked before
            self._more_wanted.set()
            self._written.clear()
            waiting = asyncio.ensure_future(self._written.wait())
            await asyncio.wait([waiting, self._producer], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
        taken = [self._ready.pop(0)]
        while self._ready and _events(taken) + self._ready[0].manifest.count <= events:
            taken.append(self._ready.pop(0))
        self._wanted = wanted
        self._more_wanted.set()
        return taken

    async def aclose(self) -> None:
        """Stop after the segment being written (a segment cut off mid-write would be left for
        the next archive's clean-up while this one's thread still writes it)."""
        self._ended = True
        self._more_wanted.set()
        await asyncio.wait([self._producer])
        await cancel_and_wait([self._reading])
        if not self._producer.cancelled():
            self._producer.exception()  # retrieved: raised by ``take`` or moot after an error

    async def _produce(self) -> None:
        """Up to ``WRITES`` segments written at once (their fsyncs overlap), handed over in
        order; stops once the range is read, or ``aclose`` asked, after the writes begun."""
        writing: deque[tuple[Batch, asyncio.Future[Manifest]]] = deque()
        read_all = False
        try:
            while True:
                while not (read_all or self._ended) and self._room(writing):
                    found = await self._reading
                    if found is None:
                        read_all = True
                        break
                    self._check_join(found, *self._cut)
                    self._cut = (found.last_id, found.last_hash)
                    self._reading = self._start_read(found.last_id)
                    writing.append((found, asyncio.ensure_future(self._write(found))))
                if writing:
                    found, write = writing[0]
                    manifest = await write
                    writing.popleft()
                    self._ready.append(Ready(manifest, found.last_created_at))
                    self._written.set()
                elif read_all or self._ended:
                    break
                else:
                    self._more_wanted.clear()
                    await self._more_wanted.wait()
        finally:
            self._ended = True
            self._written.set()
            if writing:  # after an error: let the writes begun finish (a thread each)
                await asyncio.wait([write for _, write in writing])
                for _, write in writing:
                    write.exception()  # retrieved: the first error is the archive's

    def _room(self, writing: deque[tuple[Batch, asyncio.Future[Manifest]]]) -> bool:
        """Whether another segment may be begun: fewer than ``WRITES`` at once, and fewer
        events written or being written than wanted."""
        pending = sum(found.count for found, _ in writing)
        return len(writing) < WRITES and _events(self._ready) + pending < self._wanted

    async def _write(self, found: Batch) -> Manifest:
        return await asyncio.to_thread(write_segment, self._directory, found)

    def _start_read(self, after: int) -> asyncio.Task[Batch | None]:
        return asyncio.ensure_future(self._read(after, min(after + self._batch, self._last_id)))


def _events(ready: list[Ready]) -> int:
    return sum(r.manifest.count for r in ready)
