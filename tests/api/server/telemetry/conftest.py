"""Fixtures of the exporter's tests: a store with the read model, and an OTLP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from eventstore import EventStore
from projections import RunProjection
from tests.conftest import StoreFactory
from tests.otlp_receiver import OtlpReceiver


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[EventStore]:
    async with store_factory(projections=[RunProjection()]) as opened:
        yield opened


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    started = await OtlpReceiver().start()
    yield started
    await started.stop()
