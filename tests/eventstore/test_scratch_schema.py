"""The throwaway PostgreSQL schema the tests and benchmarks open their stores in."""

from __future__ import annotations

import psycopg
import pytest

from eventstore.scratch_schema import ScratchSchema, scratch_schema
from tests.conftest import POSTGRES_URL, require_postgres


def schema_exists(name: str) -> bool:
    with psycopg.connect(POSTGRES_URL) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,)
        ).fetchone()
    return bool(row and row[0] == 1)


def test_the_url_puts_a_fresh_schema_first_and_the_block_drops_it() -> None:
    require_postgres()
    with scratch_schema(POSTGRES_URL, prefix="t_scratch_") as schema:
        assert schema.name.startswith("t_scratch_")
        with psycopg.connect(schema.url) as connection:
            row = connection.execute("SELECT current_schema()").fetchone()
            connection.execute("CREATE TABLE left_behind (n int)")
            connection.commit()
        assert row == (schema.name,)
    assert not schema_exists(schema.name)


def test_the_schema_is_dropped_when_the_block_fails() -> None:
    require_postgres()
    made: list[ScratchSchema] = []

    def fail_inside() -> None:
        with scratch_schema(POSTGRES_URL) as schema:
            made.append(schema)
            assert schema_exists(schema.name)
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        fail_inside()
    assert not schema_exists(made[0].name)


def test_options_already_in_the_url_are_kept() -> None:
    schema = ScratchSchema("postgresql://host/db?connect_timeout=3", "s_1")
    assert schema.url == "postgresql://host/db?connect_timeout=3&options=-csearch_path%3Ds_1"
