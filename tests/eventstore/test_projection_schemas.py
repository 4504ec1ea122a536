"""A read model whose schema changed is recreated empty and reported stale until refilled."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from eventstore import (
    AgentEvent,
    Dialect,
    EventStore,
    Projection,
    Transaction,
    WriteContext,
    record_fingerprint,
)
from tests.conftest import StoreFactory

from .helpers import custom, new_run

pytestmark = pytest.mark.anyio


class Counts(Projection):
    """Events per run (derived from the log), and notes kept beside it (not derived)."""

    name = "counts"
    derived_tables = ("counts",)

    def __init__(self, version: int) -> None:
        self.version = version

    def schema(self, dialect: Dialect) -> Sequence[str]:
        extra = ", note TEXT" if self.version > 1 else ""
        return (
            "CREATE TABLE IF NOT EXISTS counts "
            f"(run_id TEXT PRIMARY KEY, n BIGINT NOT NULL{extra})",
            "CREATE TABLE IF NOT EXISTS count_notes (run_id TEXT PRIMARY KEY, note TEXT)",
        )

    def apply(self, tx: Transaction, events: Sequence[AgentEvent]) -> None:
        for event in events:
            tx.execute(
                "INSERT INTO counts (run_id, n) VALUES (?, 1) "
                "ON CONFLICT (run_id) DO UPDATE SET n = counts.n + 1",
                (event.run_id,),
            )


async def counts(store: EventStore) -> dict[str, int]:
    rows = await store.fetchall("SELECT run_id, n FROM counts")
    return {str(run): int(n) for run, n in rows}


async def test_a_changed_schema_empties_the_derived_tables_until_they_are_refilled(
    store_factory: StoreFactory,
) -> None:
    async with store_factory(projections=[Counts(1)]) as store:
        assert store.stale_projections == []  # a fresh database has nothing to refill
        await new_run(store, "run-1")
        await store.append("org-test", "run-1", [custom(1), custom(2)])

        def note(context: WriteContext) -> None:
            context.tx.execute("INSERT INTO count_notes (run_id, note) VALUES ('run-1', 'kept')")

        await store.transact(note)
    async with store_factory(projections=[Counts(1)]) as store:
        assert store.stale_projections == []
        assert await counts(store) == {"run-1": 3}

    async with store_factory(projections=[Counts(2)]) as store:
        assert store.stale_projections == ["counts"]
        assert await counts(store) == {"run-1": 3}  # reported, not touched: nobody will refill
    async with store_factory(projections=[Counts(2)], replace_stale_tables=True) as store:
        assert store.stale_projections == ["counts"]
        assert await counts(store) == {}  # recreated with the new column, empty
        assert await store.fetchall("SELECT note FROM count_notes") == [("kept",)]
    async with store_factory(projections=[Counts(2)], replace_stale_tables=True) as store:
        assert store.stale_projections == ["counts"]  # still: nobody refilled it

        def refill(context: WriteContext) -> None:
            context.tx.execute("INSERT INTO counts (run_id, n, note) VALUES ('run-1', 3, 'v2')")
            record_fingerprint(context.tx, Counts(2))

        await store.transact(refill)
    async with store_factory(projections=[Counts(2)]) as store:
        assert store.stale_projections == []
        assert await counts(store) == {"run-1": 3}


async def test_a_projection_added_to_an_existing_log_is_stale(
    store_factory: StoreFactory,
) -> None:
    async with store_factory() as store:
        await new_run(store, "run-1")
    async with store_factory(projections=[Counts(1)]) as store:
        assert store.stale_projections == ["counts"]
