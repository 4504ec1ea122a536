"""The interfaces every backend implements and every projection plugs into.

Writes happen on one writer thread per store, inside group transactions, through the synchronous
``Transaction`` below; this lets a projection write its rows in the same transaction as the events
it folds, with one code path for SQLite and PostgreSQL. Reads are asynchronous.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .dialect import Dialect
from .records import AgentEvent

__all__ = [
    "Projection",
    "Row",
    "Transaction",
    "VerifyReport",
]

Row = tuple[Any, ...]


class Transaction(Protocol):
    """SQL inside the writer's current transaction. Placeholders are ``?`` on every backend."""

    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...


class Projection(abc.ABC):
    """A read model kept in the same transaction as the events it is built from.

    ``apply`` runs on the writer thread, inside the append's transaction, before the events are
    inserted: raising a ``StoreError`` refuses that append alone (nothing of it is written).
    A projection subclasses this class and overrides the attributes whose default does not fit.
    """

    name: str
    """Unique among a store's projections: keys the schema fingerprint it was filled under."""

    refuses_before_writing: bool = False
    """True promises that ``apply`` raises only before its first write; the writer then skips
    the per-append savepoint (a measurable cost)."""

    version: int = 0
    """Bumped when the fold changes what the tables hold without changing their shape: the
    tables are then refilled from the log (see ``projection_schemas``)."""

    derived_tables: Sequence[str] = ()
    """Tables filled from the log alone: dropped and refilled when the schema changes. Tables
    not listed (kept beside the log, such as heartbeats) are never dropped."""

    @abc.abstractmethod
    def schema(self, dialect: Dialect) -> Sequence[str]:
        """The statements that create the tables (idempotent: run at every open)."""

    @abc.abstractmethod
    def apply(self, tx: Transaction, events: Sequence[AgentEvent]) -> None:
        """Fold ``events`` (in id order, not yet inserted) into the tables through ``tx``."""

    def archiving(self, tx: Transaction, first_id: int, last_id: int) -> None:
        """Events ``first_id..last_id`` are leaving the live log in this transaction (an archive
        batch; they are still readable through ``tx``): a projection whose rebuild folds the
        log keeps here a snapshot of what it folded from them, so a rebuild can start there."""
        return

    def committed(self) -> None:
        """The transaction of every ``apply`` since the last call committed (writer thread).

        A projection that keeps state in memory beside its tables (a cache) makes what it
        remembered of those applies permanent here."""
        return

    def rolled_back(self) -> None:
        """Some of the applies since the last ``committed`` were undone (a unit's savepoint or
        the whole transaction): a projection that keeps state in memory forgets what they
        taught it, since it cannot tell which of them survived."""
        return


@dataclass(frozen=True)
class VerifyReport:
    """What ``EventStore.verify`` found: how many events it checked, up to which head, and the
    first break in the chain (``ok`` false) if there is one."""

    ok: bool
    events: int
    head_id: int
    head_hash: str
    first_bad_event_id: int | None = None
    reason: str | None = None
    signed_heads: int = 0
    """Signed heads whose signature verified with the walk's keys (none without keys)."""
    signed_through: int = 0
    """The highest event id one of those heads covers."""
    kept_heads: int = 0
    """Kept heads the walk reached with their hash."""
