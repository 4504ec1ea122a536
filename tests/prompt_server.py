"""uvicorn's server for the suite's in-process servers, stopping without its fixed waits.

uvicorn's main loop looks at ``should_exit`` every 0.1 s, and its shutdown pauses 0.1 s after
asking connections to close, then polls every 0.1 s: each stop cost at least 0.2 s, and the
suite starts and stops several hundred servers. Here setting ``should_exit`` wakes the loop at
once, and the shutdown takes the same steps (stop listening, ask each connection to close, wait
for connections and tasks within the graceful timeout, then the lifespan's shutdown) polling
every few milliseconds, so a stop costs what it waits for. Startup is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn

__all__ = ["PromptServer"]

TICK = 0.1
"""uvicorn's own tick: the Date header and the request limit are still looked at this often."""
POLL = 0.005
"""How often the shutdown looks whether connections and tasks are done."""


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

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            await asyncio.wait_for(self._drained(), self.config.timeout_graceful_shutdown)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel()
        await self.lifespan.shutdown()

    async def _drained(self) -> None:
        # uvicorn's server state is plain sets, with nothing to await: it is polled.
        while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
            await asyncio.sleep(POLL)
        for server in self.servers:
            await server.wait_closed()
