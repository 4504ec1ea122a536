"""The live tail: one in-memory fan-out per store, never a poller per subscriber.

The writer publishes each committed group here (in commit order). The broadcaster keeps the most
recent events in a buffer in id order, with each channel's (run, conversation, organization)
events beside it while a stream of that kind is open, and wakes only the subscribers whose
channel an event touches (the firehose is every channel). A woken subscriber reads only its
channel's events after its cursor, so a wake costs what the stream receives, not the buffer's
size. A subscriber always works from its own cursor: it reads the buffer when the buffer still
covers its cursor, and the database otherwise. Because ids are commit-ordered and the cursor
only moves forward, the hand-off from replay to live can neither skip nor repeat an event,
whatever the interleaving.

Events committed by another process (a second server, a CLI on the same file) reach the buffer
through ``catch_up``: the store's single poller (or a PostgreSQL notification) calls it, and it
reads what is missing from the database in id order.
"""

from __future__ import annotations

import asyncio
import bisect
import operator
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from .records import AgentEvent, EventFilter, EventPage

__all__ = ["Broadcaster", "ChannelKey", "subscribe"]

ChannelKey = tuple[str, ...]
_FIREHOSE: ChannelKey = ("all",)
WAKE_BATCH = 256
"""Subscribers woken per turn of the event loop (see ``Broadcaster._wake_batch``)."""
MEMO_PAGES = 64
"""Live pages kept for sharing between streams until the buffer next grows."""
KEEP_UNWATCHED_DIVISOR = 4
"""A kind's lanes outlive its last stream by the buffer's capacity over this many events."""
ReadPage = Callable[[EventFilter, int, int], Awaitable[EventPage]]
ReadAfter = Callable[[int, int], Awaitable[list[AgentEvent]]]


def channel_of(flt: EventFilter) -> ChannelKey:
    """The narrowest channel that carries every event ``flt`` can match."""
    if flt.run_id is not None:
        return ("run", flt.run_id)
    if flt.conversation_id is not None:
        return ("conversation", flt.conversation_id)
    if flt.organization_id is not None:
        return ("organization", flt.organization_id)
    return _FIREHOSE


_ID = operator.attrgetter("id")
_NAME_OF: dict[str, Callable[[AgentEvent], str]] = {
    "run": operator.attrgetter("run_id"),
    "conversation": operator.attrgetter("conversation_id"),
    "organization": operator.attrgetter("organization_id"),
}
"""The channel kinds that have lanes, and the field of an event that names its channel."""
_NO_EVENTS: list[AgentEvent] = []
Lanes = dict[str, list[AgentEvent]]


def _file(lanes: Lanes, name_of: Callable[[AgentEvent], str], events: list[AgentEvent]) -> None:
    """Appends each of ``events`` to the lane its ``name_of`` names."""
    for event in events:
        name = name_of(event)
        lane = lanes.get(name)
        if lane is None:
            lanes[name] = [event]
        else:
            lane.append(event)


class _Index:
    """The buffer, in id order, and per channel the buffered events on it (its lane).

    A stream can match only events of its channel (``channel_of``), so reading its lane after
    its cursor costs the events it may receive: a quiet conversation's wake reads its one new
    event, not the thousands the others had since. The firehose's lane is the buffer itself.
    Lanes are keyed by kind, then name, so that indexing an event builds no key tuples.

    A kind's lanes are kept only while they are needed: built from the buffer when a stream of
    the kind opens (or a page of the kind is asked for), and kept up to date from then on. Once
    no stream of the kind is left, they are kept for ``keep_unwatched`` more events, then
    dropped, so an append path with no stream of a kind files nothing for it. Keeping a kind
    costs about four times per event what building it costs per buffered event, so keeping it
    for a quarter of the buffer costs at most one rebuild, and a dashboard that reconnects
    within that rebuilds nothing (docs/benchmarks.md, "lazy lanes").
    """

    def __init__(self, keep_unwatched: int) -> None:
        self.events: list[AgentEvent] = []
        self._keep_unwatched = keep_unwatched
        self._lanes: dict[str, Lanes] = {}  # only the kinds kept, in the order they were built
        self._touched: dict[str, set[str]] = {}
        self._watchers: dict[str, int] = {}  # open streams per kind, for the kinds that have any
        self._unwatched: dict[str, int] = {}  # kinds kept without a stream: events left to keep
        self._grown = False  # events were added since the last ``take_touched``

    @property
    def kinds(self) -> list[str]:
        """The channel kinds whose lanes are kept now."""
        return list(self._lanes)

    def watch(self, kind: str) -> None:
        """A stream of ``kind`` opens: its lanes are built now (if not kept already) and kept."""
        self._watchers[kind] = self._watchers.get(kind, 0) + 1
        self._unwatched.pop(kind, None)
        self._keep(kind)

    def unwatch(self, kind: str) -> None:
        """A stream of ``kind`` ends; the last one starts the count before its lanes go."""
        left = self._watchers[kind] - 1
        if left:
            self._watchers[kind] = left
        else:
            del self._watchers[kind]
            self._unwatched[kind] = self._keep_unwatched

    def _keep(self, kind: str) -> None:
        """Builds ``kind``'s lanes from the buffer, once: from then on ``add`` and
        ``drop_oldest`` keep them equal to the buffer, as if they had been kept all along."""
        if kind not in self._lanes:
            lanes: Lanes = {}
            _file(lanes, _NAME_OF[kind], self.events)
            self._lanes[kind] = lanes
            self._touched[kind] = set()
            if kind not in self._watchers:  # asked for by a page alone: kept as if just left
                self._unwatched[kind] = self._keep_unwatched

    def add(self, events: list[AgentEvent]) -> None:
        """Appends ``events`` (ids above every buffered one) and notes their channels."""
        self.events.extend(events)
        self._grown = True
        for kind, lanes in self._lanes.items():
            name_of = _NAME_OF[kind]
            _file(lanes, name_of, events)
            self._touched[kind].update(map(name_of, events))
        if self._unwatched:
            self._count_unwatched(len(events))

    def _count_unwatched(self, added: int) -> None:
        """Drops the lanes of the kinds that went ``keep_unwatched`` events without a stream."""
        for kind, left in list(self._unwatched.items()):
            if left > added:
                self._unwatched[kind] = left - added
            else:
                del self._unwatched[kind], self._lanes[kind], self._touched[kind]

    def after(self, channel: ChannelKey, cursor: int) -> list[AgentEvent]:
        """The buffered events of ``channel`` with ids above ``cursor``, in id order."""
        if channel == _FIREHOSE:
            lane = self.events
        else:
            self._keep(channel[0])
            lane = self._lanes[channel[0]].get(channel[1], _NO_EVENTS)
        return lane[bisect.bisect_right(lane, cursor, key=_ID) :]

    def drop_oldest(self, count: int) -> int:
        """Drops the ``count`` oldest events from the buffer and their lanes; the last id dropped.

        The dropped events are the oldest of every lane too, so each lane loses as many events
        as were dropped from it, counted without a search: a trim costs the events it drops,
        not the number of channels. An emptied lane is forgotten.
        """
        dropped = self.events[:count]
        del self.events[:count]
        for kind, lanes in self._lanes.items():
            for name, gone in Counter(map(_NAME_OF[kind], dropped)).items():
                lane = lanes[name]
                if gone == len(lane):
                    del lanes[name]
                else:
                    del lane[:gone]
        return dropped[-1].id

    def take_touched(self) -> list[ChannelKey]:
        """The channels events were added to since the last call (the firehose if any).

        Only the kept kinds' channels are noted: a kind without lanes has no stream to wake,
        and a stream that opens meanwhile reads the buffer before it first waits.
        """
        touched: list[ChannelKey] = [
            (kind, name) for kind, names in self._touched.items() for name in names
        ]
        for names in self._touched.values():
            names.clear()
        if self._grown:
            touched.append(_FIREHOSE)
            self._grown = False
        return touched

    def size(self) -> tuple[int, int]:
        """How many lanes there are, and how many events they hold together."""
        lanes = [lane for by_name in self._lanes.values() for lane in by_name.values()]
        return len(lanes), sum(map(len, lanes))


@dataclass(eq=False)
class _Waiter:
    channel: ChannelKey
    event: asyncio.Event


class Broadcaster:
    """Recent committed events, in id order, and the subscribers waiting for more."""

    def __init__(
        self,
        head: int,
        *,
        capacity: int = 20_000,
        linger: float = 0.0,
        wake_budget: float | None = None,
    ) -> None:
        self._index = _Index(keep_unwatched=capacity // KEEP_UNWATCHED_DIVISOR)
        self._covered_after = head  # every committed event with id > this is in the buffer
        self._last_id = head
        self._capacity = capacity
        self._waiters: dict[ChannelKey, set[_Waiter]] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._linger = linger
        self._window = linger
        self._wake_budget = wake_budget
        self._timer: asyncio.TimerHandle | None = None
        self._last_wake = float("-inf")
        self._pages: dict[tuple[int, EventFilter, int], EventPage] = {}

    @property
    def last_id(self) -> int:
        return self._last_id

    @property
    def wake_window(self) -> float:
        """Seconds within which later commits are coalesced into one wake-up."""
        return self._window

    @property
    def subscriber_count(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())

    @property
    def index_size(self) -> tuple[int, int]:
        """The channels with events in the buffer, and the events their lanes hold (one per
        buffered event and kept kind): bounded by the buffer, however many channels come and
        go."""
        return self._index.size()

    @property
    def indexed_kinds(self) -> list[str]:
        """The channel kinds (run, conversation, organization) whose lanes are kept now."""
        return self._index.kinds

    def covers(self, cursor: int) -> bool:
        return cursor >= self._covered_after

    def publish(self, events: list[AgentEvent], previous_head: int) -> bool:
        """Add events committed after ``previous_head``; False when a gap must be read first."""
        if previous_head > self._last_id:
            return False
        self._append_fresh(events)
        return True

    async def catch_up(self, read_after: ReadAfter, target: int | None = None) -> None:
        """Read from the database every committed event the buffer lacks (up to ``target``)."""
        async with self._lock:
            while target is None or self._last_id < target:
                events = await read_after(self._last_id, 1000)
                if not events:
                    return
                self._append_fresh(events)  # a publish may have run while we read

    def since(self, cursor: int, flt: EventFilter, limit: int = 1000) -> EventPage:
        """Buffered events after ``cursor`` that ``flt`` matches, at most ``limit`` of them.

        The position is the buffer's end, or the last event's id when ``limit`` cut the page: a
        stream whose channel has nothing new learns the head and moves its cursor there.
        Pages are shared: a thousand streams on one channel, woken together at one cursor, get
        the same page object (filtered once, encoded once by the SSE layer); treat it as
        read-only. The memo keeps at most ``MEMO_PAGES`` pages of at most ``limit`` events, and
        is dropped whenever the buffer grows.
        """
        key = (cursor, flt, limit)
        page = self._pages.get(key)
        if page is None:
            page = self._page(cursor, flt, limit)
            if len(self._pages) < MEMO_PAGES:
                self._pages[key] = page
        return page

    def _page(self, cursor: int, flt: EventFilter, limit: int) -> EventPage:
        """Looks only at the events of ``flt``'s channel after ``cursor``: those are the only
        ones it can match, so a quiet stream's wake costs its own events, not the buffer's.

        When nothing cuts the page, its position is the head: no event between the cursor and
        the head lies on the channel other than those scanned, so moving there skips nothing.
        """
        rest = self._index.after(channel_of(flt), cursor)
        if len(rest) <= limit:  # the live case: a wake's worth of events
            return EventPage([e for e in rest if flt.matches(e)], max(cursor, self._last_id))
        matched: list[AgentEvent] = []
        for event in rest:
            if flt.matches(event):
                matched.append(event)
                if len(matched) == limit:
                    return EventPage(matched, event.id)
        return EventPage(matched, max(cursor, self._last_id))

    def register(self, channel: ChannelKey) -> _Waiter:
        """A stream of ``channel`` opens: from here on, every event on it wakes the waiter
        (its kind's lanes are built now if no stream of the kind kept them)."""
        waiter = _Waiter(channel, asyncio.Event())
        self._waiters.setdefault(channel, set()).add(waiter)
        if channel != _FIREHOSE:
            self._index.watch(channel[0])
        return waiter

    def unregister(self, waiter: _Waiter) -> None:
        waiters = self._waiters.get(waiter.channel)
        if waiters is not None and waiter in waiters:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[waiter.channel]
            if waiter.channel != _FIREHOSE:
                self._index.unwatch(waiter.channel[0])

    def close(self) -> None:
        """Wake everyone so that subscribers notice the store is closing."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()

    @property
    def closed(self) -> bool:
        return self._closed

    def _append_fresh(self, events: list[AgentEvent]) -> None:
        """Appends those of ``events`` (in id order, as committed) not buffered yet: a suffix,
        found by a search rather than a test per event (a commit's events are all fresh)."""
        start = bisect.bisect_right(events, self._last_id, key=_ID)
        if start < len(events):
            self._append(events[start:] if start else events)

    def _append(self, events: list[AgentEvent]) -> None:
        self._pages.clear()
        self._index.add(events)
        self._last_id = events[-1].id
        self._trim()
        self._wake()

    def _trim(self) -> None:
        excess = len(self._index.events) - self._capacity
        if excess > self._capacity // 4:  # trim in chunks: deleting a list prefix is O(n)
            self._covered_after = self._index.drop_oldest(excess)

    def _wake(self) -> None:
        """Wake the touched channels, at most once per ``linger`` seconds.

        The first publish after a quiet spell wakes at once; later ones within the window are
        coalesced into one wake at its end. Under load each subscriber then wakes (and its
        stream writes) once per window with everything new, instead of once per commit; when
        idle, nothing is delayed. Events are in the buffer already: only wake-ups wait.

        With a ``wake_budget`` (subscriber wake-ups per second), the window also grows with the
        number of subscribers the last flush woke: ten thousand streams woken every 50 ms would
        keep the loop busy with nothing else, starving the appends that feed them; a window of
        ``woken / budget`` seconds leaves the rest of the loop's time to everything else.
        """
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_wake + self._window
        if loop.time() >= due:
            self._flush_wakes()
        else:
            self._timer = loop.call_at(due, self._flush_wakes)

    def _flush_wakes(self) -> None:
        self._timer = None
        self._last_wake = asyncio.get_running_loop().time()
        touched = self._index.take_touched()
        pending = [w for channel in touched for w in self._waiters.get(channel, ())]
        if self._wake_budget:
            self._window = max(self._linger, len(pending) / self._wake_budget)
        self._wake_batch(pending, 0)

    def _wake_batch(self, pending: list[_Waiter], start: int) -> None:
        """Wake ``WAKE_BATCH`` subscribers and leave the rest to the loop's next turn.

        Setting ten thousand events at once puts ten thousand stream tasks ahead of every
        request in the loop's ready queue, and each step of an append (read, commit, reply)
        waits behind all of them. In batches, the loop polls its sockets between batches.
        """
        end = start + WAKE_BATCH
        for waiter in pending[start:end]:
            waiter.event.set()
        if end < len(pending):
            asyncio.get_running_loop().call_soon(self._wake_batch, pending, end)


async def subscribe(
    broadcaster: Broadcaster,
    read_page: ReadPage,
    flt: EventFilter,
    after: int,
    *,
    page_size: int = 1000,
    idle_timeout: float | None = None,
) -> AsyncGenerator[EventPage, None]:
    """Replay from ``after`` then follow live; yields pages whose positions strictly increase.

    A page may carry no events but a higher position (everything it scanned was filtered out):
    a consumer can move its cursor without receiving what it may not see. With
    ``idle_timeout``, a page with no events and an unchanged position is yielded after that
    many seconds without news (an idle tick: SSE turns it into a heartbeat comment, since
    cancelling a pending ``anext()`` from outside would destroy the generator).
    """
    cursor = after
    waiter = broadcaster.register(channel_of(flt))
    idle = None if idle_timeout is None else _IdleTimer(waiter.event, idle_timeout)
    try:
        while not broadcaster.closed:
            waiter.event.clear()  # before looking: a publish from here on wakes the wait below
            if broadcaster.covers(cursor):
                page = broadcaster.since(cursor, flt, page_size)
            else:
                page = await read_page(flt, cursor, page_size)
            if page.position > cursor:
                cursor = page.position
                if idle is not None:
                    idle.news()
                yield page
            elif idle is None:
                await waiter.event.wait()
            elif await idle.wait():
                idle.news()
                yield EventPage([], cursor)
    finally:
        if idle is not None:
            idle.cancel()
        broadcaster.unregister(waiter)


class _IdleTimer:
    """Wakes a subscriber after ``limit`` seconds without news, with one timer per period.

    A timer per wait (``asyncio.timeout``, let alone ``wait_for`` and its task) would cost a
    heap push and a cancel every time a busy stream waits, a large share of the loop with
    thousands of busy streams (docs/benchmarks.md). Here a timer is armed for the end
    of the quiet period; when it fires early (news came meanwhile) it re-arms for the new end.
    """

    _EARLY = 0.001  # the loop may run a timer up to its clock resolution early

    def __init__(self, event: asyncio.Event, limit: float) -> None:
        self._event = event
        self._limit = limit
        self._loop = asyncio.get_running_loop()
        self._quiet_since = self._loop.time()
        self._handle: asyncio.TimerHandle | None = None
        self._expired = False

    def news(self) -> None:
        """Something was sent: the quiet period starts again."""
        self._quiet_since = self._loop.time()

    async def wait(self) -> bool:
        """Wait for a wake-up; True when it came from ``limit`` seconds of quiet."""
        self._expired = False
        if self._handle is None:
            self._handle = self._loop.call_at(self._quiet_since + self._limit, self._check)
        await self._event.wait()
        return self._expired

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        due = self._quiet_since + self._limit
        if self._loop.time() >= due - self._EARLY:
            self._expired = True
            self._event.set()
        else:
            self._handle = self._loop.call_at(due, self._check)
