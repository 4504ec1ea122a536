from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from eventstore import EventStore
from projections import RunCommands, RunProjection, RunQueries
from tests.conftest import StoreFactory

ORG = "org-test"


@dataclass
class Runs:
    store: EventStore
    commands: RunCommands
    queries: RunQueries


@pytest.fixture
async def runs(store_factory: StoreFactory) -> AsyncIterator[Runs]:
    async with store_factory(projections=[RunProjection()]) as store:
        yield Runs(store, RunCommands(store), RunQueries(store))
