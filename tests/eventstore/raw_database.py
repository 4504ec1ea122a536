"""The database under a store, reached with the plain driver: to tamper with what the store wrote.

The contract suite uses it to check, once for both backends, that the database itself refuses
to change the log and that ``verify`` finds the changes made with the guards switched off.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import psycopg

from eventstore import StoreError
from eventstore.postgres import translate_error as postgres_translate_error
from eventstore.sqlite import translate_error as sqlite_translate_error
from tests.conftest import StoreFactory

from .helpers import ORG, message, new_run


@dataclass(frozen=True)
class RawDatabase:
    """One backend's database (a SQLite path or a PostgreSQL URL) and its driver's errors."""

    backend: str
    url: str

    @property
    def refusal(self) -> type[Exception]:
        """What the driver raises when the append-only guard refuses a statement."""
        if self.backend == "sqlite":
            return sqlite3.IntegrityError
        return psycopg.errors.RaiseException

    @property
    def truncate(self) -> str:
        """Emptying the table at once: SQLite has no TRUNCATE, an unqualified DELETE is its form."""
        return "DELETE FROM events" if self.backend == "sqlite" else "TRUNCATE events"

    def execute(self, *statements: str) -> None:
        """Run ``statements`` in autocommit, as an operator with a SQL shell would."""
        if self.backend == "sqlite":
            connection = sqlite3.connect(self.url, isolation_level=None)
            try:
                for statement in statements:
                    connection.execute(statement)
            finally:
                connection.close()
            return
        with psycopg.connect(self.url, autocommit=True) as pg:
            for statement in statements:
                pg.execute(statement)

    def tamper(self, *statements: str) -> None:
        """Switch the append-only guards off, then run ``statements``: what an attacker could do."""
        if self.backend == "sqlite":
            guards_off = ["DROP TRIGGER events_no_update", "DROP TRIGGER events_no_delete"]
        else:
            guards_off = ["ALTER TABLE events DISABLE TRIGGER USER"]
        self.execute(*guards_off, *statements)

    def translate(self, exc: BaseException) -> StoreError | None:
        """The backend's own mapping of a driver error to a store error."""
        if self.backend == "sqlite":
            return sqlite_translate_error(exc)
        return postgres_translate_error(exc)

    def driver_errors(self) -> tuple[Exception, Exception]:
        """A uniqueness violation and a lost-connection error, as this backend's driver raises."""
        if self.backend == "sqlite":
            return sqlite3.IntegrityError("UNIQUE"), sqlite3.OperationalError("disk I/O")
        return psycopg.errors.UniqueViolation("dup"), psycopg.OperationalError("gone")


async def make_log(store_factory: StoreFactory, messages: int = 4) -> None:
    """A known log to tamper with: ids 1 and 2 create run-a and run-b, then the messages
    alternate between them: 3 (run-b), 4 (run-a), 5 (run-b), 6 (run-a)."""
    async with store_factory() as store:
        await new_run(store, "run-a")
        await new_run(store, "run-b")
        for n in range(messages):
            await store.append(ORG, "run-a" if n % 2 else "run-b", [message(str(n))])
