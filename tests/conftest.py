"""Fixtures shared by the whole suite.

Every store test runs against each backend through the ``store_factory`` fixture: SQLite always,
PostgreSQL whenever a server is reachable, in a schema of its own per test. Under CI a missing
PostgreSQL is an error, not a skip. Tests run on asyncio only: the store's writer and tail are
built on asyncio, as uvicorn is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import pytest

from eventstore import EventStore, disable_memory_statistics, open_store, scratch_schema

StoreFactory = Callable[..., EventStore]


def pytest_configure(config: pytest.Config) -> None:
    """SQLite runs as ``runtrack serve`` runs it (memory statistics off, so a replay frames
    pages on several readers at once), set before any connection is opened."""
    disable_memory_statistics()


POSTGRES_URL = os.environ.get("RUNTRACK_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


@cache
def postgres_problem() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        name = exc.__class__.__name__
        return f"no PostgreSQL at {POSTGRES_URL} ({name}); set RUNTRACK_TEST_POSTGRES"
    return None


def require_postgres() -> None:
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests: {problem}")
    pytest.skip(problem)


def module_database(
    stack: ExitStack, backend: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A fresh database of ``backend`` for a module's shared server, dropped with ``stack``."""
    if backend == "postgresql":
        require_postgres()
        return stack.enter_context(scratch_schema(POSTGRES_URL, prefix="t_")).url
    return str(tmp_path_factory.mktemp("shared") / "events.db")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_postgres()
    return str(request.param)


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    require_postgres()
    with scratch_schema(POSTGRES_URL, prefix="t_") as schema:
        yield schema.url


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The database every store (and server) of one test shares."""
    if backend == "postgresql":
        url: str = request.getfixturevalue("postgres_schema_url")
        return url
    return str(tmp_path / "events.db")


@pytest.fixture
def store_factory(database_url: str) -> StoreFactory:
    """Builds (unopened) stores of the current backend, all on the test's database."""

    def build(**options: Any) -> EventStore:
        return open_store(database_url, **options)

    return build


@pytest.fixture
async def receivers() -> Any:
    """Starts webhook receivers (``await receivers(failures=0, port=0)``); stops them all after."""
    from tests.receiver import Receiver

    started: list[Receiver] = []

    async def start(failures: int = 0, port: int = 0) -> Receiver:
        receiver = await Receiver(failures=failures).start(port)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Any:
    async with store_factory() as opened:
        yield opened
