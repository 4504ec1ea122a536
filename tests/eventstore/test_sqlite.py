"""What only the SQLite backend has: its pragmas, and a head read from the last row."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from eventstore import (
    WAL_AUTOCHECKPOINT_PAGES,
    WRITER_CACHE_KIB,
    SQLiteEventStore,
    StoreUnavailable,
    WriteContext,
)

from .helpers import ORG, message
from .raw_database import RawDatabase, make_log

pytestmark = pytest.mark.anyio


async def test_a_missing_head_stops_writes_instead_of_forking_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    await make_log(lambda: SQLiteEventStore(path))
    RawDatabase("sqlite", str(path)).tamper("DELETE FROM events WHERE id = 6")
    async with SQLiteEventStore(path) as store:
        with pytest.raises(StoreUnavailable, match="tampered"):
            await store.append(ORG, "run-a", [message()])


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
async def test_synchronous_setting_is_applied(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "log.db"
    async with SQLiteEventStore(path, synchronous=synchronous) as store:  # type: ignore[arg-type]
        level = await store.transact(lambda c: c.tx.fetchone("PRAGMA synchronous"))
        mode = await store.fetchall("PRAGMA journal_mode")
    assert level == ({"FULL": 2, "NORMAL": 1}[synchronous],)
    assert mode == [("wal",)]


async def test_the_writer_checkpoints_rarely_and_caches_its_hot_pages(tmp_path: Path) -> None:
    """Rarer checkpoints copy each index page once for many commits (``sqlite.py``)."""
    async with SQLiteEventStore(tmp_path / "log.db") as store:
        pages = await store.transact(lambda c: c.tx.fetchone("PRAGMA wal_autocheckpoint"))
        cache = await store.transact(lambda c: c.tx.fetchone("PRAGMA cache_size"))
    assert pages == (WAL_AUTOCHECKPOINT_PAGES,)
    assert cache == (-WRITER_CACHE_KIB,)
    assert WAL_AUTOCHECKPOINT_PAGES > 1000  # SQLite's default


async def test_none_binds_as_null_through_the_registered_adapter(tmp_path: Path) -> None:
    """The backend registers an adapter for None (the cheaper way through Python's sqlite3):
    every way of binding None still stores NULL, and a stored run reads back the same."""
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]("anything") is None
    async with SQLiteEventStore(tmp_path / "log.db") as store:

        def unit(context: WriteContext) -> list[tuple[Any, ...]]:
            tx = context.tx
            tx.execute("CREATE TABLE nulls (a, b)")
            tx.execute("INSERT INTO nulls VALUES (?, ?)", (None, 1))
            tx.executemany("INSERT INTO nulls VALUES (?, ?)", [(None, 2), (3, None)])
            return tx.fetchall("SELECT a IS NULL, typeof(a), b IS NULL FROM nulls ORDER BY rowid")

        assert await store.transact(unit) == [(1, "null", 0), (1, "null", 0), (0, "integer", 1)]


async def test_a_database_a_newer_version_migrated_is_refused(tmp_path: Path) -> None:
    """An older server would write what the newer schema no longer means (chain v1 hashes past
    the v2 cutover, say): it must refuse to open the database, naming the versions."""
    path = tmp_path / "newer.db"
    async with SQLiteEventStore(path):
        pass
    lite = sqlite3.connect(path, isolation_level=None)
    lite.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'later', 'now')"
    )
    lite.close()
    with pytest.raises(StoreUnavailable, match=r"migrations \[99\] that this version"):
        async with SQLiteEventStore(path):
            pass
