"""A webhook receiver for callback tests: a small ASGI app on a real uvicorn, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.prompt_server import PromptServer
from tests.waiting import eventually


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers ``failures`` times with 500, then 200; records every request."""

    failures: int = 0
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    url: str = ""
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    async def wait_for(self, count: int, within: float = 30) -> list[Received]:
        async with self.arrived:
            await asyncio.wait_for(
                self.arrived.wait_for(lambda: len(self.requests) >= count), within
            )
        return self.requests

    async def _hook(self, request: Request) -> Response:
        async with self.arrived:
            self.requests.append(Received(dict(request.headers), await request.body()))
            self.arrived.notify_all()
            failing = len(self.requests) <= self.failures
        return Response(status_code=500 if failing else 200)

    async def start(self, port: int = 0) -> Receiver:
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(64)
        except OSError:
            sock.close()
            raise
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        self._server = PromptServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        server = self._server
        await eventually(lambda: server.started)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
