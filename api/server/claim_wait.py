"""A claim that waits server-side for a claimable run, woken by the live tail, never polling.

The wait follows the organization's channel of the broadcaster from the log's head as it was
*before* the first attempt, so a run that becomes claimable between an attempt and the wait is
a wake, never missed. Each wake that carries a ``run_created`` or ``run_status_changed`` event
(a new run, a run queued again, a lane freeing: every way a run becomes claimable) tries the
claim once more, as one write unit like any claim, so two waiting workers never both get a run.
The wait ends at its deadline, when the client disconnects, or when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TypeVar

from sse_starlette.sse import EventSourceResponse
from starlette.types import Receive

from eventstore import EventFilter, EventPage, EventStore, EventType, Visibility

__all__ = ["WAKING_TYPES", "claim_with_wait"]

T = TypeVar("T")

WAKING_TYPES = frozenset({EventType.RUN_CREATED, EventType.RUN_STATUS_CHANGED})
"""The events after which a run may have become claimable: the others wake nothing."""


async def claim_with_wait(
    store: EventStore,
    organization_id: str,
    attempt: Callable[[], Awaitable[T | None]],
    wait_seconds: float,
    receive: Receive,
) -> T | None:
    """``attempt()`` now and after each waking event until it gives a claim or time is up."""
    if wait_seconds <= 0:
        return await attempt()
    cursor = await store.head()
    claimed = await attempt()
    if claimed is not None:
        return claimed
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    flt = EventFilter(organization_id, visibility=Visibility.INTERNAL)
    pages = store.subscribe(flt, after=cursor)
    ended = asyncio.ensure_future(_ended(receive))
    try:
        while await _woken(pages, ended, deadline - loop.time()):
            claimed = await attempt()
            if claimed is not None:
                return claimed
        return None
    finally:
        ended.cancel()
        await pages.aclose()


async def _woken(
    pages: AsyncGenerator[EventPage, None], ended: asyncio.Future[None], within: float
) -> bool:
    """Whether a waking event came ``within`` seconds (before a disconnect or shutdown).

    One ``asyncio.wait`` over the news and the end, with the deadline as its timeout: a
    cancelled wait on the subscription ends it, which is fine since the claim ends then."""
    if within <= 0 or ended.done():
        return False
    news: asyncio.Future[bool] = asyncio.ensure_future(_next_waking(pages))
    waits: set[asyncio.Future[object]] = {news, ended}  # type: ignore[arg-type]
    done, _ = await asyncio.wait(waits, timeout=within, return_when="FIRST_COMPLETED")
    if news in done:
        return news.result()
    news.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await news
    return False


async def _next_waking(pages: AsyncGenerator[EventPage, None]) -> bool:
    """True at the next page with a waking event; False when the tail closed (shutdown)."""
    async for page in pages:
        if any(event.event_type in WAKING_TYPES for event in page.events):
            return True
    return False


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
