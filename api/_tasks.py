"""Stopping background tasks the same way everywhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("runtrack.tasks")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task once, then wait until all have finished their clean-up.

    A task that had already failed does not stop the others from being waited for: its error
    is logged, not raised (the caller is tearing down, and nobody is left to handle it).

    The caller may itself be cancelled while it waits, and more than once: anyio (under
    sse-starlette) cancels a stream's task again on every loop turn until it has left the
    cancelled scope. Those cancellations must not reach the tasks being stopped: a second
    cancel in the middle of psycopg's own cancel-and-drain closes the pooled connection. So
    the wait is shielded, and a cancellation of the caller is raised once all have finished.
    """
    stopping = list(tasks)
    for task in stopping:
        task.cancel()
    waiting = asyncio.gather(*stopping, return_exceptions=True)
    cancelled = False
    while True:
        try:
            outcomes = await asyncio.shield(waiting)
            break
        except asyncio.CancelledError:
            cancelled = True
    for task, outcome in zip(stopping, outcomes, strict=True):
        if isinstance(outcome, Exception):
            logger.warning("%s had failed when it was stopped: %r", task.get_name(), outcome)
    if cancelled:
        raise asyncio.CancelledError
