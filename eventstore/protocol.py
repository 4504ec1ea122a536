"""The interfaces every backend implements and every projection plugs into.

Writes happen on one writer thread per store, inside group transactions, through the synchronous
``Transaction`` below; this lets a projection write its rows in the same transaction as the events
it folds, with one code path for SQLite and PostgreSQL. Reads are asynchronous.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .dialect import Dialect
from .records import AgentEvent, EventFilter, EventPage, NewEvent

if TYPE_CHECKING:
    from .appending import WriteContext

__all__ = [
    "Dialect",
    "EventStore",
    "Projection",
    "Row",
    "Transaction",
    "VerifyReport",
]

T = TypeVar("T")
Row = tuple[Any, ...]


class Transaction(Protocol):
    """SQL inside the writer's current transaction. Placeholders are ``?`` on every backend."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Projection(Protocol):
    """A read model kept in the same transaction as the events it is built from.

    ``apply`` runs on the writer thread, inside the append's transaction, before the events are
    inserted: raising a ``StoreError`` refuses that append alone (nothing of it is written).
    A projection that sets ``refuses_before_writing = True`` promises to raise only before its
    first write; the writer then skips the per-append savepoint (a measurable cost).
    """

    name: str

    def schema(self, dialect: Dialect) -> Sequence[str]: ...

    def apply(self, tx: Transaction, events: Sequence[AgentEvent]) -> None: ...


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events: int
    head_id: int
    head_hash: str
    first_bad_event_id: int | None = None
    reason: str | None = None


class EventStore(Protocol):
    """The append-only log of AgentEvents. Every backend passes the same contract suite."""

    dialect: Dialect

    async def append(
        self,
        organization_id: str,
        run_id: str,
        events: Sequence[NewEvent],
        *,
        expected_sequence: int | None = None,
        idempotency_key: str | None = None,
        conversation_id: str | None = None,
    ) -> list[AgentEvent]: ...

    async def transact(self, unit: Callable[[WriteContext], T]) -> T: ...

    async def read(self, filter: EventFilter, *, after: int = 0, limit: int = 500) -> EventPage: ...

    async def read_run(
        self,
        organization_id: str | None,
        run_id: str,
        *,
        after_sequence: int = 0,
        limit: int = 500,
        filter: EventFilter | None = None,
    ) -> list[AgentEvent]: ...

    async def head(self) -> int: ...

    def subscribe(
        self, filter: EventFilter, *, after: int = 0, idle_timeout: float | None = None
    ) -> AsyncGenerator[EventPage, None]: ...

    async def verify(
        self, *, run_id: str | None = None, organization_id: str | None = None
    ) -> VerifyReport: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def aclose(self) -> None: ...
