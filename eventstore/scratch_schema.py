"""A throwaway PostgreSQL schema: a URL whose ``search_path`` points at a fresh, empty schema.

The PostgreSQL backend keeps everything (tables, triggers, its notification channel) in the
connection's current schema, so a fresh schema is a fresh database without creating one. The
tests and the benchmarks both start stores this way; this module is the one place that knows
how, so neither imports the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["ScratchSchema", "create_scratch_schema", "drop_scratch_schema", "scratch_schema"]


@dataclass(frozen=True)
class ScratchSchema:
    """A schema made for one test or benchmark: ``url`` opens stores in it."""

    base_url: str
    name: str

    @property
    def url(self) -> str:
        """``base_url`` with ``search_path`` set to this schema (kept beside any options)."""
        separator = "&" if "?" in self.base_url else "?"
        return f"{self.base_url}{separator}options={quote(f'-csearch_path={self.name}')}"


def create_scratch_schema(base_url: str, prefix: str = "scratch_") -> ScratchSchema:
    """Create an empty schema named ``prefix`` plus a random suffix, in ``base_url``'s database."""
    schema = ScratchSchema(base_url, f"{prefix}{uuid.uuid4().hex[:12]}")
    _execute(base_url, "CREATE SCHEMA {}", schema.name)
    return schema


def drop_scratch_schema(schema: ScratchSchema) -> None:
    """Drop the schema and everything the stores made in it."""
    _execute(schema.base_url, "DROP SCHEMA {} CASCADE", schema.name)


@contextmanager
def scratch_schema(base_url: str, prefix: str = "scratch_") -> Iterator[ScratchSchema]:
    """A fresh schema for the ``with`` block, dropped afterwards even if the block fails."""
    schema = create_scratch_schema(base_url, prefix)
    try:
        yield schema
    finally:
        drop_scratch_schema(schema)


def _execute(url: str, statement: str, name: str) -> None:
    import psycopg  # here, so that importing eventstore does not load the PostgreSQL driver
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL(statement).format(sql.Identifier(name)))
