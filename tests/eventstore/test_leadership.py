"""Leadership: one holder per database at a time, handed over when the holder goes."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import StoreFactory

pytestmark = pytest.mark.anyio


async def test_one_leader_at_a_time_and_hand_over_on_close(store_factory: StoreFactory) -> None:
    async with store_factory() as first_store, store_factory() as second_store:
        first = await first_store.leadership("services", interval=0.05).start()
        await asyncio.wait_for(first.wait_until_leader(), 10)
        second = await second_store.leadership("services", interval=0.05).start()
        other = await second_store.leadership("another-name", interval=0.05).start()
        await asyncio.wait_for(other.wait_until_leader(), 10)  # names are independent
        assert not second.is_leader
        await first.aclose()
        await asyncio.wait_for(second.wait_until_leader(), 10)
        assert not first.is_leader
        await second.aclose()
        await other.aclose()
