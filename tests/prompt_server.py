"""uvicorn's server for the suite's in-process servers, stopping without its polling delay.

uvicorn's main loop looks at ``should_exit`` every 0.1 s, so each stop waited up to that long
for nothing; the suite starts and stops several hundred servers. Here setting ``should_exit``
also wakes the loop at once. Everything else (startup, the shutdown's own steps, the lifespan)
is uvicorn's.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

__all__ = ["PromptServer"]

TICK = 0.1
"""uvicorn's own tick: the Date header and the request limit are still looked at this often."""


class PromptServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        self._exit_requested = asyncio.Event()
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        return self._exit_requested.is_set()

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value:
            self._exit_requested.set()
        else:
            self._exit_requested.clear()

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_requested.wait(), TICK)
            should_exit = await self.on_tick(counter)
