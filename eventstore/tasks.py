"""Stopping background tasks the same way everywhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import anyio

logger = logging.getLogger("runtrack.tasks")

STOP_SECONDS = 15.0
"""How long a clean-up waits for the tasks it stopped (psycopg gives up on a query's cancel
after ten)."""


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task once, then wait until all have finished their clean-up.

    A task that had already failed does not stop the others from being waited for: its error
    is logged, not raised (the caller is tearing down, and nobody is left to handle it).

    The caller may itself be in a cancelled anyio scope (a stream whose client left, under
    sse-starlette), which cancels it again on every loop turn while it waits. Those
    cancellations must not reach the tasks being stopped: a second cancel in the middle of
    psycopg's own cancel-and-drain closes the pooled connection. So the wait is shielded from
    them, for ``STOP_SECONDS`` at most; the caller's cancellation carries on after it.
    """
    stopping = list(tasks)
    for task in stopping:
        task.cancel()
    with anyio.move_on_after(STOP_SECONDS, shield=True) as waited:
        outcomes = await asyncio.gather(*stopping, return_exceptions=True)
        for task, outcome in zip(stopping, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.warning("%s had failed when it was stopped: %r", task.get_name(), outcome)
    if waited.cancelled_caught:
        unfinished = [task.get_name() for task in stopping if not task.done()]
        logger.warning("still stopping after %s s: %s", STOP_SECONDS, ", ".join(unfinished))


def stop_requested() -> bool:
    """Whether the running task has been cancelled, even if the CancelledError never reached it.

    On Python 3.11 ``asyncio.wait_for`` returns its result instead of raising when the wait
    ends in the same loop turn as the cancel, and psycopg_pool waits for a free connection with
    it: the task goes on as if never cancelled, and ``cancel_and_wait`` cancels it only once.
    Every PostgreSQL read checks it once the pool has answered (``PostgresEventStore.fetchall``),
    so no caller has to.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
