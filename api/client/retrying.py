"""Calls the worker SDK repeats through transport errors: only those a repeat cannot double.

A transport error (a reset, a refused connection, a timeout) leaves the client not knowing
whether the server acted on the request; a repeat is harmless only when the request is a read,
a heartbeat, or carries what makes the server answer a repeat with the first outcome (an
append's idempotency key, a tool result's call id, a child's creation key). docs/workers.md,
"When the server is away", lists which calls are repeated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

__all__ = ["FIRST_DELAY", "MAX_DELAY", "RETRY_SECONDS", "retrying"]

logger = logging.getLogger("runtrack.worker")
T = TypeVar("T")
FIRST_DELAY = 0.05
MAX_DELAY = 1.0
"""Seconds between attempts: 50 ms, doubling up to this (a restarting server is back in ~1 s)."""
RETRY_SECONDS = 30.0
"""How long a call is repeated by default (``Worker(retry_seconds=…)``): a server restart or a
failover, not an outage; past it the call raises, and the handler meets the error."""


async def retrying(call: Callable[[], Awaitable[T]], what: str, for_seconds: float) -> T:
    """``call()``'s answer, asking again after each transport error until ``for_seconds``
    have passed since the first attempt; then the last error is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + for_seconds
    delay = FIRST_DELAY
    while True:
        try:
            return await call()
        except httpx.TransportError as exc:
            if loop.time() + delay > deadline:
                raise
            logger.warning("%s failed (%s: %s): trying again", what, type(exc).__name__, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
