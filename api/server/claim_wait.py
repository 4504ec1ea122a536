"""A claim that waits server-side for a claimable run, woken by the live tail, never polling.

The wait follows the organization's channel of the broadcaster from the log's head as it was
*before* the first attempt, so a run that becomes claimable between an attempt and the wait is
a wake, never missed. A wake is a page holding an event after which a run may have become
claimable: a ``run_created``, a status change into a claimable status, or one out of an active
status (a lane freeing). Each such wake tries the claim once more, as one write unit like any
claim, so two waiting workers never get the same run.

Waiting claims of one organization and filters take their turns through a ``ClaimGate``: an
attempt that found nothing after the tail's position P proves that nothing is claimable as of
P, so a claim woken by events up to P skips its attempt. Fifty idle workers woken by one new
run then cost about two attempts, not fifty. The wait ends at its deadline, when the client
disconnects, or when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sse_starlette.sse import EventSourceResponse
from starlette.types import Receive

from eventstore import AgentEvent, EventFilter, EventPage, EventStore, EventType, Visibility
from projections import ACTIVE, CLAIMABLE

__all__ = ["ClaimGate", "claim_with_wait", "wakes_a_claim"]

T = TypeVar("T")
GateKey = tuple[str, str | None, str | None]
"""(organization, agent_id, lane_key): claims that find the same runs."""

_CLAIMABLE = frozenset(status.value for status in CLAIMABLE)
_ACTIVE = frozenset(status.value for status in ACTIVE)


def wakes_a_claim(event: AgentEvent) -> bool:
    """Whether a run may have become claimable after ``event``."""
    if event.event_type == EventType.RUN_CREATED:
        return True
    if event.event_type != EventType.RUN_STATUS_CHANGED:
        return False
    payload = event.payload
    to = payload.get("to")
    return to in _CLAIMABLE or (payload.get("from") in _ACTIVE and to not in _ACTIVE)


@dataclass
class ClaimGate:
    """One store's waiting claims: one attempt at a time per key, none that cannot find more
    than an earlier empty attempt did."""

    _empty_at: dict[GateKey, int] = field(default_factory=dict)
    _locks: dict[GateKey, asyncio.Lock] = field(default_factory=dict)
    _users: dict[GateKey, int] = field(default_factory=dict)
    """Attempts under way or queued per key: a key's entries go when its last one ends."""

    async def attempt(
        self, key: GateKey, position: int, attempt: Callable[[], Awaitable[T | None]]
    ) -> T | None:
        """``attempt()`` unless an empty one already saw the log up to ``position``."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                if self._empty_at.get(key, -1) >= position:
                    return None
                claimed = await attempt()
                if claimed is None:
                    self._empty_at[key] = max(self._empty_at.get(key, -1), position)
                return claimed
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
                self._empty_at.pop(key, None)


_GATES: weakref.WeakKeyDictionary[EventStore, ClaimGate] = weakref.WeakKeyDictionary()


def gate_of(store: EventStore) -> ClaimGate:
    gate = _GATES.get(store)
    if gate is None:
        gate = _GATES[store] = ClaimGate()
    return gate


async def claim_with_wait(
    store: EventStore,
    key: GateKey,
    attempt: Callable[[], Awaitable[T | None]],
    wait_seconds: float,
    receive: Receive,
) -> T | None:
    """``attempt()`` now and after each waking event until it gives a claim or time is up."""
    if wait_seconds <= 0:
        return await attempt()
    cursor = await store.head()  # read before the attempt: a commit after it is a wake
    gate = gate_of(store)
    claimed = await gate.attempt(key, cursor, attempt)
    if claimed is not None:
        return claimed
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    pages = store.subscribe(EventFilter(key[0], visibility=Visibility.INTERNAL), after=cursor)
    ended = asyncio.ensure_future(_ended(receive))
    try:
        while (position := await _woken(pages, ended, deadline - loop.time())) is not None:
            claimed = await gate.attempt(key, position, attempt)
            if claimed is not None:
                return claimed
        return None
    finally:
        ended.cancel()
        await pages.aclose()


async def _woken(
    pages: AsyncGenerator[EventPage, None], ended: asyncio.Future[None], within: float
) -> int | None:
    """The tail's position at a waking page that came ``within`` seconds (before a disconnect
    or shutdown), or None. One ``asyncio.wait`` over the news and the end, with the deadline as
    its timeout: cancelling it ends the subscription, which is fine since the claim ends then."""
    if within <= 0 or ended.done():
        return None
    news: asyncio.Future[int | None] = asyncio.ensure_future(_next_waking(pages))
    waits: set[asyncio.Future[object]] = {news, ended}  # type: ignore[arg-type]
    done, _ = await asyncio.wait(waits, timeout=within, return_when="FIRST_COMPLETED")
    if news in done:
        return news.result()
    news.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await news
    return None


async def _next_waking(pages: AsyncGenerator[EventPage, None]) -> int | None:
    """The position of the next page with a waking event; None when the tail closed."""
    async for page in pages:
        if any(wakes_a_claim(event) for event in page.events):
            return page.position
    return None


async def _ended(receive: Receive) -> None:
    """Returns when the client disconnects or the server starts shutting down."""
    gone = asyncio.ensure_future(_disconnected(receive))
    # sse-starlette's shutdown watch: the one the SSE streams end on (uvicorn's should_exit)
    exiting = asyncio.ensure_future(EventSourceResponse._listen_for_exit_signal())
    try:
        await asyncio.wait({gone, exiting}, return_when="FIRST_COMPLETED")
    finally:
        gone.cancel()
        exiting.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
