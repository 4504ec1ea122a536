"""Stopping background tasks the same way everywhere."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger("runtrack.tasks")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel every task, then wait until all have finished their clean-up.

    A task that had already failed does not stop the others from being waited for: its error
    is logged, not raised (the caller is tearing down, and nobody is left to handle it).
    """
    stopping = list(tasks)
    for task in stopping:
        task.cancel()
    outcomes = await asyncio.gather(*stopping, return_exceptions=True)
    for task, outcome in zip(stopping, outcomes, strict=True):
        if isinstance(outcome, Exception):
            logger.warning("%s had failed when it was stopped: %r", task.get_name(), outcome)
