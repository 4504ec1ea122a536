"""Migration 6: where chain v2 starts in this database, recorded once.

The migration runs under the log's write lock, so the first id after the log's head is the first
event the writer will hash with chain v2: every event before it keeps its v1 hash, which is what
it was signed and exported with. A new database starts at 1. The row is never changed or removed
(the signed heads carry it too, so a changed row would not verify anyway).
"""

from __future__ import annotations

from .dialect import Dialect
from .errors import StoreUnavailable
from .migrations import Migration
from .protocol import Transaction

__all__ = ["chain_version_migration", "read_chain_v2_from"]

_TABLE = """CREATE TABLE IF NOT EXISTS chain_version (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1), v2_from BIGINT NOT NULL)"""
_NEVER_CHANGED = "chain_version is written once, by its migration"
_SQLITE_FIRST = (
    "INSERT INTO chain_version (singleton, v2_from) SELECT 1, 1 + MAX("
    "COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    "COALESCE((SELECT MAX(id) FROM events), 0), "
    "COALESCE((SELECT cut_id FROM log_anchor), 0))"
)
"""The highest id ever used: the counter, or the anchor when every event was archived."""
_POSTGRESQL_FIRST = (
    "INSERT INTO chain_version (singleton, v2_from) SELECT 1, last_id + 1 FROM log_head"
)
_SQLITE_NO_UPDATE = f"""CREATE TRIGGER IF NOT EXISTS chain_version_never_updated
    BEFORE UPDATE ON chain_version BEGIN SELECT RAISE(ABORT, '{_NEVER_CHANGED}'); END"""
_POSTGRESQL_NO_UPDATE = """CREATE OR REPLACE TRIGGER chain_version_never_updated
    BEFORE UPDATE ON chain_version FOR EACH ROW EXECUTE FUNCTION chain_version_never_deleted()"""


def chain_version_migration(dialect: Dialect) -> Migration:
    sqlite = dialect.name == "sqlite"
    statements = (
        _TABLE,
        _SQLITE_FIRST if sqlite else _POSTGRESQL_FIRST,
        *dialect.refuse_deletes("chain_version", _NEVER_CHANGED),
        _SQLITE_NO_UPDATE if sqlite else _POSTGRESQL_NO_UPDATE,
    )
    return Migration(6, "chain v2: the first id it hashes", statements)


def read_chain_v2_from(tx: Transaction) -> int:
    row = tx.fetchone("SELECT v2_from FROM chain_version")
    if row is None:
        raise StoreUnavailable("chain_version is empty: the schema was tampered with")
    return int(row[0])
