"""What only the SQLite backend has: its file, its triggers, and SIGKILL durability."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from eventstore import ConcurrencyConflict, SQLiteEventStore, StoreUnavailable
from eventstore.sqlite import translate_error

from .helpers import ORG, message, new_run

pytestmark = pytest.mark.anyio


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


async def make_log(path: Path, messages: int = 4) -> None:
    async with SQLiteEventStore(path) as store:
        await new_run(store, "run-a")
        await new_run(store, "run-b")
        for n in range(messages):
            await store.append(ORG, "run-a" if n % 2 else "run-b", [message(str(n))])


@pytest.mark.parametrize(
    "statement",
    ["UPDATE events SET payload = '{}' WHERE id = 1", "DELETE FROM events WHERE id = 1"],
)
async def test_the_database_refuses_update_and_delete(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "log.db"
    await make_log(path)
    with raw(path) as connection, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        connection.execute(statement)


async def tampered(path: Path, *statements: str) -> None:
    with raw(path) as connection:
        connection.execute("DROP TRIGGER events_no_update")
        connection.execute("DROP TRIGGER events_no_delete")
        for statement in statements:
            connection.execute(statement)


@pytest.mark.parametrize(
    ("statements", "bad_id", "reason"),
    [
        (
            ['UPDATE events SET payload = \'{"content":"evil","role":"user"}\' WHERE id = 4'],
            4,
            "modified",
        ),
        (["UPDATE events SET visibility = 'internal' WHERE id = 3"], 3, "modified"),
        (["DELETE FROM events WHERE id = 3"], 3, "missing"),
        (["DELETE FROM events WHERE id = 6"], 6, "missing"),
        (
            [
                "UPDATE events SET id = -1 WHERE id = 3",
                "UPDATE events SET id = 3 WHERE id = 4",
                "UPDATE events SET id = 4 WHERE id = -1",
            ],
            3,
            "",
        ),
    ],
    ids=["modified-payload", "modified-visibility", "deleted", "deleted-last", "swapped"],
)
async def test_verify_finds_the_first_tampered_event(
    tmp_path: Path, statements: list[str], bad_id: int, reason: str
) -> None:
    path = tmp_path / "log.db"
    await make_log(path)
    await tampered(path, *statements)
    async with SQLiteEventStore(path) as store:
        report = await store.verify()
    assert not report.ok
    assert report.first_bad_event_id == bad_id
    assert reason in (report.reason or "")


async def test_verify_of_one_run_checks_it_against_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    await make_log(path)
    await tampered(
        path, 'UPDATE events SET payload = \'{"content":"x","role":"user"}\' WHERE id = 4'
    )
    async with SQLiteEventStore(path) as store:
        assert (await store.verify(run_id="run-b")).ok  # run-b's events are intact
        report = await store.verify(run_id="run-a")
    assert not report.ok
    assert report.first_bad_event_id == 4


async def test_a_missing_head_stops_writes_instead_of_forking_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    await make_log(path)
    await tampered(path, "DELETE FROM events WHERE id = 6")
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


def test_driver_errors_are_translated_at_the_boundary() -> None:
    assert isinstance(translate_error(sqlite3.IntegrityError("UNIQUE")), ConcurrencyConflict)
    assert isinstance(translate_error(sqlite3.OperationalError("disk I/O")), StoreUnavailable)
    assert translate_error(ValueError("not ours")) is None
