"""Fixtures of the client tests that need a live server: the adapters' and the docs' runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from api.client import RuntrackClient
from api.server.settings import Settings
from tests.api.conftest import LiveServer, start_server


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    server = await start_server(Settings(database=str(tmp_path / "client.db")))
    yield server
    await server.stop()


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[RuntrackClient]:
    async with RuntrackClient(live.url) as opened:
        yield opened
