"""Fixtures of the security suite: a real server, and a key of each role in two organizations.

Every test here runs on both backends (``database_url`` is parametrised over them).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace

import httpx
import pytest
from starlette.applications import Starlette

from api.server.app import create_app
from api.server.auth import Role
from api.server.runner import server_config
from api.server.settings import Settings
from tests.api.conftest import LiveServer, ServerFactory, server_factory, start_server
from tests.conftest import BACKENDS, module_database
from tests.prompt_server import PromptServer

__all__ = ["ORGANIZATIONS", "Served", "Tenants", "served", "server_factory", "shared_tenants"]

ORGANIZATIONS = ("org-a", "org-b")


@dataclass
class Tenants:
    """A server with a key of every role in each organization; clients close after the test."""

    server: LiveServer
    keys: dict[tuple[str, Role], str] = field(default_factory=dict)
    _clients: dict[tuple[str, Role], httpx.AsyncClient] = field(default_factory=dict)

    async def create_keys(self) -> Tenants:
        for organization in ORGANIZATIONS:
            for role in Role:
                self.keys[organization, role] = await self.server.key(role, organization)
        return self

    def key(self, organization: str, role: Role) -> str:
        return self.keys[organization, role]

    def client(self, organization: str, role: Role) -> httpx.AsyncClient:
        """The key's client, one per key for the whole test (its connections are reused)."""
        if (organization, role) not in self._clients:
            self._clients[organization, role] = self.server.client(self.key(organization, role))
        return self._clients[organization, role]

    async def aclose(self) -> None:
        for opened in self._clients.values():
            await opened.aclose()


@pytest.fixture
async def tenants(server_factory: ServerFactory) -> AsyncIterator[Tenants]:
    server = await server_factory(heartbeat_seconds=15.0)
    found = await Tenants(server).create_keys()
    yield found
    await found.aclose()


@pytest.fixture(scope="module", params=BACKENDS)
async def shared_tenants(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tenants]:
    """One server per backend for a whole module, for tests that only add runs of their own
    (starting a server and its keys per case cost more than the cases themselves)."""
    with ExitStack() as stack:
        database = module_database(stack, request.param, tmp_path_factory)
        server = await start_server(Settings(database=database, heartbeat_seconds=15.0))
        found = await Tenants(server).create_keys()
        try:
            yield found
        finally:
            await found.aclose()
            await server.stop()


@dataclass
class Served:
    port: int
    app: Starlette

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Served]:
    """A real uvicorn server built as ``runtrack serve`` builds it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(replace(settings, port=port))
    config = server_config(app, settings, log_level="warning", timeout_graceful_shutdown=2)
    server = PromptServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield Served(port, app)
    finally:
        server.should_exit = True
        await task
