"""A real uvicorn server on 127.0.0.1 per test (or one per module and backend, for cases that
do not need a fresh database), and HTTP clients for it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from api.server.app import create_app
from api.server.auth import KeyRing, Role
from api.server.settings import Settings
from tests.conftest import BACKENDS, module_database
from tests.prompt_server import PromptServer


@dataclass
class LiveServer:
    url: str
    app: Starlette
    server: uvicorn.Server
    task: asyncio.Task[None]

    @property
    def keys(self) -> KeyRing:
        ring: KeyRing = self.app.state.keys
        return ring

    async def key(self, role: Role, organization: str = "default") -> str:
        return await self.keys.create(organization, role, name=f"test-{role.label}")

    def client(self, key: str | None = None, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **options)

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_server(settings: Settings) -> LiveServer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(replace(settings, port=port))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = PromptServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return LiveServer(f"http://127.0.0.1:{port}", app, server, task)


ServerFactory = Callable[..., Awaitable[LiveServer]]


@pytest.fixture
async def server_factory(database_url: str) -> AsyncIterator[ServerFactory]:
    started: list[LiveServer] = []
    database = database_url

    async def build(**options: Any) -> LiveServer:
        settings = Settings(database=options.pop("database", database), **options)
        live = await start_server(settings)
        started.append(live)
        return live

    yield build
    for live in started:
        if not live.task.done():
            await live.stop()


@pytest.fixture
async def server(server_factory: ServerFactory) -> LiveServer:
    return await server_factory(heartbeat_seconds=15.0)


@pytest.fixture(scope="module", params=BACKENDS)
async def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    """One open-mode server per backend for a whole module (its module sets a module-wide
    ``anyio_backend``), for cases that neither claim whatever is queued nor count the log:
    starting a server on a fresh database cost more than such a case."""
    with ExitStack() as stack:
        database = module_database(stack, request.param, tmp_path_factory)
        live = await start_server(Settings(database=database, heartbeat_seconds=15.0))
        try:
            yield live
        finally:
            await live.stop()


@pytest.fixture
async def shared_client(shared_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with shared_server.client() as opened:
        yield opened


@pytest.fixture
async def client(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as opened:
        yield opened
