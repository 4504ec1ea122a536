"""Waiting for a condition that no event signals (a counter in the server under test)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Return once ``condition()`` holds; fail after ``within`` seconds.

    Used only for state the server keeps without notifying anyone (open-stream counts,
    subscriber counts); everything that can be awaited is awaited instead.
    """

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - nothing to await: the state has no event
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), within)
