"""Hostile webhook receivers on raw TCP (127.0.0.x): they trickle, flood, redirect or hang.

Each one reads the request, then misbehaves in its own way; ``connections`` counts the clients
that connected and ``hung_up`` is set when a client closed its end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawReceiver:
    connections: int = 0
    sent: int = 0
    """Bytes of answer the receiver managed to hand to its socket."""
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self, answer: Handler, host: str = "127.0.0.1") -> RawReceiver:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self._writers.append(writer)
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await read_request(reader)
                await answer(reader, writer)
            self.hung_up.set()

        self._server = await asyncio.start_server(serve, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{port}/hook"
        return self

    async def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.sent += len(data)

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value))


async def wait_for_hang_up(reader: asyncio.StreamReader) -> None:
    """Until the client closes its end (reads return nothing more)."""
    while await reader.read(65536):
        pass
