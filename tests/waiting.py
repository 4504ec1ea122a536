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


def request_unread(port: int) -> bool:
    """Whether a connection accepted on ``port`` holds bytes its server has not read yet (the
    kernel's receive queue, ``/proc/net/tcp``): a request sent to a stopped server is there."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as sockets:
            for line in sockets.readlines()[1:]:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                ours = state == "01" and int(local.rsplit(":", 1)[1], 16) == port  # established
                if ours and int(queues.split(":")[1], 16) > 0:
                    return True
    return False
