"""What the SQLite and PostgreSQL writers share: the ``Transaction`` over the writer's connection,
savepoints, commit and rollback, the projection tables at open, closing.

A backend's writer subclasses ``ConnectionWriter`` and supplies only what really differs: how it
connects and creates its schema, how a group transaction starts (taking the log's write lock and
reading the head under it), whether a transaction is open, and how its driver's errors
translate. Statements both databases take alike are written here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from .appending import Head
from .chain_cutover import read_chain_v2_from
from .dialect import Dialect
from .errors import StoreError, StoreUnavailable
from .projection_schemas import prepare_projection_tables
from .protocol import Projection, Row, Transaction

__all__ = ["ConnectionTransaction", "ConnectionWriter", "DriverConnection"]


class DriverCursor(Protocol):
    """The part of a DB-API cursor (sqlite3, psycopg) the writer uses."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> object: ...

    def close(self) -> object: ...


class DriverConnection(Protocol):
    """The part of a DB-API connection (sqlite3, psycopg) the writer uses."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> DriverCursor: ...

    def cursor(self) -> DriverCursor: ...

    def close(self) -> object: ...


C = TypeVar("C", bound=DriverConnection)


class ConnectionTransaction:
    """The ``Transaction`` protocol over the writer's connection: our SQL (``?`` placeholders)
    goes to the driver through the dialect."""

    def __init__(self, connection: DriverConnection, dialect: Dialect) -> None:
        self._connection = connection
        self.dialect = dialect
        self._sql = dialect.driver_sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._connection.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        cursor = self._connection.cursor()
        try:
            cursor.executemany(self._sql(sql), rows)
        finally:
            cursor.close()

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._connection.execute(self._sql(sql), params).fetchone()
        return row

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._connection.execute(self._sql(sql), params).fetchall()


class ConnectionWriter(ABC, Generic[C]):
    """The ``WriterBackend`` over one driver connection; every method runs on the writer
    thread."""

    dialect: Dialect
    label: str
    """The database's name in messages."""
    shared_lock: bool
    """See ``WriterBackend.shared_lock``."""

    def __init__(self, projections: Sequence[Projection], *, replace_stale_tables: bool) -> None:
        self._projections = projections
        self._replace_stale_tables = replace_stale_tables
        self._connection: C | None = None
        self.stale_projections: list[str] = []
        self.chain_v2_from = 1

    # -- backend hooks -------------------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> C:
        """A new connection, set up for writing, outside any transaction."""

    @abstractmethod
    def _create_schema(self, connection: C) -> None:
        """Apply the migrations and ``_prepare_projection_tables``, in one transaction."""

    @abstractmethod
    def _begin(self, connection: C) -> Head:
        """Start a transaction holding the log's write lock; the head, read under it."""

    @abstractmethod
    def _in_transaction(self, connection: C) -> bool: ...

    @abstractmethod
    def translate(self, exc: BaseException) -> StoreError | None:
        """Map a driver error to a StoreError, or None when it is not a database error."""

    def _is_closed(self, connection: C) -> bool:
        """Whether the driver has closed the connection under us."""
        return False

    # -- shared --------------------------------------------------------------------------------

    def connect(self) -> None:
        self._connection = self._connect()
        self._create_schema(self._connection)
        self.chain_v2_from = read_chain_v2_from(self._transaction(self._connection))

    def _transaction(self, connection: C) -> ConnectionTransaction:
        return ConnectionTransaction(connection, self.dialect)

    def _prepare_projection_tables(self, tx: Transaction) -> None:
        self.stale_projections = prepare_projection_tables(
            tx, self._projections, replace_stale=self._replace_stale_tables
        )

    def begin(self) -> tuple[Transaction, Head]:
        connection = self._open()
        head = self._begin(connection)
        return self._transaction(connection), head

    def savepoint(self) -> None:
        self._open().execute("SAVEPOINT unit")

    def release_savepoint(self) -> None:
        self._open().execute("RELEASE SAVEPOINT unit")

    def rollback_to_savepoint(self) -> None:
        connection = self._open()
        connection.execute("ROLLBACK TO SAVEPOINT unit")
        connection.execute("RELEASE SAVEPOINT unit")

    def commit(self, head: Head) -> None:
        self._open().execute("COMMIT")

    def rollback(self) -> None:
        connection = self._open()
        if self._in_transaction(connection):
            connection.execute("ROLLBACK")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _open(self) -> C:
        if self._connection is None or self._is_closed(self._connection):
            raise StoreUnavailable(f"the {self.label} writer is closed")
        return self._connection
