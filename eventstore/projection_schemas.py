"""Read-model tables that follow their projection's code, refilled from the log when it changes.

The log is the truth and a read model is a fold of it, so a read model whose table layout no
longer matches the code (a column added by a new version) is not migrated: its tables are
dropped, created anew and refilled from the log. Each projection's schema statements are
fingerprinted; ``projection_schemas`` records the fingerprint the tables were last filled
under. At open, a projection whose recorded fingerprint differs is reported stale; an opener
that will refill it (``replace_stale``: the server, ``projections rebuild``) has its
``derived_tables`` dropped and recreated first. It stays stale until someone refills it and calls
``record_fingerprint`` in the same transaction (``projections.rebuild`` does). Tables a
projection keeps that are not derived from the log (``run_liveness``: heartbeats) are never
dropped; changing those needs a migration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from .dialect import Dialect
from .protocol import Projection, Transaction

__all__ = ["prepare_projection_tables", "record_fingerprint", "schema_fingerprint"]

_TABLE = (
    "CREATE TABLE IF NOT EXISTS projection_schemas "
    "(name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)"
)
_RECORD = (
    "INSERT INTO projection_schemas (name, fingerprint) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint"
)


def schema_fingerprint(projection: Projection, dialect: Dialect) -> str:
    """The schema's statements and the projection's ``version`` (bumped when the fold changes
    what the tables hold without changing their shape)."""
    statements = "\n".join([f"version {projection.version}", *projection.schema(dialect)])
    return hashlib.sha256(statements.encode("utf-8")).hexdigest()[:32]


def prepare_projection_tables(
    tx: Transaction, projections: Sequence[Projection], *, replace_stale: bool
) -> list[str]:
    """Create every projection's tables; return the names of those that must be refilled.

    Without ``replace_stale`` a stale projection's tables are left as they are (a CLI that only
    reads, or manages keys, must not empty a read model it will not refill).
    """
    tx.execute(_TABLE)
    log_is_empty = tx.fetchone("SELECT 1 FROM events LIMIT 1") is None
    stale = []
    for projection in projections:
        fingerprint = schema_fingerprint(projection, tx.dialect)
        recorded = tx.fetchone(
            "SELECT fingerprint FROM projection_schemas WHERE name = ?", (projection.name,)
        )
        if recorded is not None and recorded[0] == fingerprint:
            _create(tx, projection)
            continue
        if not replace_stale and not log_is_empty:
            stale.append(projection.name)
            continue
        for table in projection.derived_tables:
            tx.execute(f"DROP TABLE IF EXISTS {table}")
        _create(tx, projection)
        if log_is_empty:
            tx.execute(_RECORD, (projection.name, fingerprint))
        else:
            stale.append(projection.name)
    return stale


def record_fingerprint(tx: Transaction, projection: Projection) -> None:
    """Say the projection's tables now hold the fold of the log under its current schema."""
    fingerprint = schema_fingerprint(projection, tx.dialect)
    tx.execute(_RECORD, (projection.name, fingerprint))


def _create(tx: Transaction, projection: Projection) -> None:
    for statement in projection.schema(tx.dialect):
        tx.execute(statement)
