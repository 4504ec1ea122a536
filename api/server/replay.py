"""A stream's replay: the stored events after its cursor, as pages framed by the database.

One reader task per stream plans the pages (``page_end`` steps over ids only) and has the
database frame up to ``store.parallel_reads`` of them at once, each on its own reader
connection and thread (``store.scan_slots`` bounds this across every stream of the store).
The framed pages wait, ``AHEAD`` at most, for the stream to send them, in order. The
replay ends when the live tail's buffer covers the next page (the stream then subscribes from
there), or when the log has no more; a run channel's stream closes it once the run has ended.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from eventstore import (
    EventFilter,
    EventStore,
    FramePage,
    cancel_and_wait,
    page_end,
    read_frames,
)

__all__ = ["AHEAD", "PAGE", "READER_TASK", "Replay"]

PAGE = 1000
"""Events per replay read (and per write to the client); larger pages gain nothing (see
docs/benchmarks.md, "Notes from the code")."""
AHEAD = 5
"""Pages a stream may have framed or being framed before it has taken them: with the one being
sent, at most six pages are held per replaying stream, however slowly its client reads. Fewer
keep too few pages framing while the stream sends (docs/benchmarks.md, "Notes from the code")."""
READER_TASK = "runtrack-replay-reader"
"""The name of a replay's reader task."""

_Item = FramePage | Exception | None


@dataclass
class Replay:
    """What to replay: the events ``filter`` matches after ``cursor``."""

    store: EventStore
    filter: EventFilter
    cursor: int
    pages_framed: int = field(default=0, init=False)
    """Pages the database has framed for this replay so far, sent or not."""

    async def pages(self) -> AsyncGenerator[FramePage, None]:
        """The pages in order; the reader task stops when the consumer does."""
        ready: asyncio.Queue[_Item] = asyncio.Queue()
        credits = asyncio.Semaphore(AHEAD)
        reader = asyncio.create_task(self._read(ready, credits), name=READER_TASK)
        try:
            while (page := await ready.get()) is not None:
                if isinstance(page, Exception):
                    raise page
                credits.release()
                yield page
        finally:
            await cancel_and_wait([reader])

    async def _read(self, ready: asyncio.Queue[_Item], credits: asyncio.Semaphore) -> None:
        """Puts the pages in ``ready``, then None (or the error that stopped the reading).

        A page is framed only with a credit, which the consumer gives back when it takes a page:
        a stream whose client stops reading stops its replay's reading too.
        """
        plan = _Plan(self.store, self.filter, self.cursor)
        framing: deque[asyncio.Task[FramePage]] = deque()
        try:
            while True:
                while len(framing) < self.store.parallel_reads:
                    if framing and credits.locked():
                        break  # take what is framed first rather than wait for a credit
                    await credits.acquire()
                    if (span := await plan.next()) is None:
                        credits.release()
                        break
                    framing.append(self._frame(*span))
                if not framing:
                    break
                ready.put_nowait(await framing.popleft())
        except Exception as error:
            ready.put_nowait(error)
            return
        finally:
            await cancel_and_wait(framing)
        ready.put_nowait(None)

    def _frame(self, after: int, upto: int) -> asyncio.Task[FramePage]:
        return asyncio.create_task(self._framed(after, upto))

    async def _framed(self, after: int, upto: int) -> FramePage:
        async with self.store.scan_slots:
            page = await read_frames(self.store, self.filter, after=after, upto=upto, limit=PAGE)
        self.pages_framed += 1
        return page


class _Plan:
    """The replay's next pages, as id ranges ``(after, upto]`` each holding one page."""

    def __init__(self, store: EventStore, flt: EventFilter, cursor: int) -> None:
        self._store = store
        self._filter = flt
        self._start = cursor
        self._head = cursor

    async def next(self) -> tuple[int, int] | None:
        """The next range, or None once the live tail covers the rest or the log has no more.

        Ranges end at a page's last event, or at the head of the log as read (a committed
        position) for the last, short page; the head is read again only when a range reaches it.
        """
        if self._store.live_from(self._start):
            return None
        if self._start >= self._head:
            self._head = await self._store.head()
            if self._start >= self._head:
                return None
        after = self._start
        self._start = await page_end(
            self._store, self._filter, after=after, upto=self._head, size=PAGE
        )
        return after, self._start
