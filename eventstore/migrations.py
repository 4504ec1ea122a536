"""Versioned schema migrations, applied at open under the database's write lock.

Each backend lists its migrations (its own DDL); the runner records applied versions in
``schema_migrations`` and applies the missing ones in order, inside the caller's transaction,
so two servers starting together apply each migration once. Projection tables are not migrated:
they follow their projection's schema and are refilled from the log when it changes (see
``projection_schemas``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import StoreUnavailable
from .protocol import Transaction

__all__ = ["Migration", "apply_migrations"]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def apply_migrations(tx: Transaction, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations not yet recorded; returns the versions applied now."""
    tx.execute(_TABLE)
    done = {int(row[0]) for row in tx.fetchall("SELECT version FROM schema_migrations")}
    unknown = sorted(done - {m.version for m in migrations})
    if unknown:
        raise StoreUnavailable(
            f"this database has schema migrations {unknown} that this version of runtrack does "
            "not know: a newer version opened it; upgrade this server (every server on one "
            "database runs the same version)"
        )
    applied = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in migration.statements:
            tx.execute(statement)
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, datetime.now(UTC).isoformat()),
        )
        applied.append(migration.version)
    return applied
