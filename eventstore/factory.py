"""Choose a backend from a database URL: a path or ``sqlite:///path`` (default), or ``postgresql://…``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .protocol import Projection
from .sqlite import SQLiteEventStore
from .store import EventStore

__all__ = ["open_store"]


def open_store(
    database: str, *, projections: Sequence[Projection] = (), **options: Any
) -> EventStore:
    """Build (not yet open) the store for ``database``; use it as ``async with open_store(...)``."""
    if database.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresEventStore

        options.pop("synchronous", None)  # a SQLite setting
        return PostgresEventStore(database, projections=projections, **options)
    path = database.removeprefix("sqlite:///").removeprefix("sqlite://")
    return SQLiteEventStore(path, projections=projections, **options)
