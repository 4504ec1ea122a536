"""Every piece of SQL that SQLite and PostgreSQL write differently, one object per backend.

The rest of the code writes one SQL text for both databases (standard syntax, ``?``
placeholders) and asks its backend's dialect (``store.dialect``, ``tx.dialect``) for the few
parts that differ, so that no module outside the backends branches on the database. A
backend's own DDL (its migrations) and the statements only one backend runs stay in its module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Final, Literal

__all__ = ["POSTGRESQL", "SQLITE", "Dialect", "DialectName"]

DialectName = Literal["sqlite", "postgresql"]


class Dialect(ABC):
    """The SQL differences of one database; ``name`` is what is shown and logged."""

    name: DialectName
    integer_slot: str
    """The slot for an integer in ``format_call``'s template (``%s`` for text)."""

    def __repr__(self) -> str:
        return f"<Dialect {self.name}>"

    @abstractmethod
    def driver_sql(self, sql: str) -> str:
        """Our SQL (``?`` placeholders, ``%`` literal) as the driver takes it."""

    @abstractmethod
    def json_text(self, column: str, key: str) -> str:
        """The text value at ``key`` of the JSON object stored as text in ``column``."""

    @abstractmethod
    def json_quote(self, expression: str) -> str:
        """``expression`` (text) as a JSON string literal, quotes and escapes included."""

    @abstractmethod
    def zero_padded(self, expression: str, width: int) -> str:
        """The integer ``expression`` in ``width`` digits, zeros in front (sorts as numbers)."""

    @abstractmethod
    def format_call(self, template: str, arguments: list[str]) -> str:
        """A printf-style call filling ``template``'s slots with ``arguments`` in order (the
        template's quotes are escaped here)."""

    @abstractmethod
    def concat_bytes(self, expression: str, order_by: str) -> str:
        """The aggregate joining ``expression`` over a group in ``order_by`` order, as bytes
        (UTF-8) rather than text, so that the driver hands over the bytes without decoding."""

    @abstractmethod
    def refuse_deletes(self, table: str, message: str) -> list[str]:
        """The statements (idempotent) that make the database refuse to delete any row of
        ``table``, with ``message``: for rows whose removal would weaken a guarantee."""


def _template_literal(template: str) -> str:
    return "'" + template.replace("'", "''") + "'"


class _SQLite(Dialect):
    name: DialectName = "sqlite"
    integer_slot = "%d"

    def driver_sql(self, sql: str) -> str:
        return sql

    def json_text(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def json_quote(self, expression: str) -> str:
        return f"json_quote({expression})"

    def zero_padded(self, expression: str, width: int) -> str:
        return f"printf('%0{width}d', {expression})"

    def format_call(self, template: str, arguments: list[str]) -> str:
        return f"printf({_template_literal(template)}, {', '.join(arguments)})"

    def concat_bytes(self, expression: str, order_by: str) -> str:
        """``group_concat`` follows the order of the subquery it reads (it cannot take an
        ORDER BY before 3.44): the caller's subquery must be ordered by ``order_by``."""
        return f"CAST(group_concat({expression}, '') AS BLOB)"

    def refuse_deletes(self, table: str, message: str) -> list[str]:
        return [
            f"""CREATE TRIGGER IF NOT EXISTS {table}_never_deleted BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, {_template_literal(message)}); END"""
        ]


class _PostgreSQL(Dialect):
    name: DialectName = "postgresql"
    integer_slot = "%s"  # format() has no %d

    def driver_sql(self, sql: str) -> str:
        """psycopg wants ``%s`` placeholders, and ``%%`` for a literal ``%``."""
        return sql.replace("%", "%%").replace("?", "%s")

    def json_text(self, column: str, key: str) -> str:
        return f"{column}::json ->> '{key}'"

    def json_quote(self, expression: str) -> str:
        return f"to_json({expression}::text)"

    def zero_padded(self, expression: str, width: int) -> str:
        return f"lpad({expression}::text, {width}, '0')"

    def format_call(self, template: str, arguments: list[str]) -> str:
        return f"format({_template_literal(template)}, {', '.join(arguments)})"

    def concat_bytes(self, expression: str, order_by: str) -> str:
        return f"convert_to(string_agg({expression}, '' ORDER BY {order_by}), 'UTF8')"

    def refuse_deletes(self, table: str, message: str) -> list[str]:
        """DELETE row by row, and TRUNCATE, which skips row triggers."""
        function = f"{table}_never_deleted"
        return [
            f"""CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION {_template_literal(message)}; END $$""",
            f"""CREATE OR REPLACE TRIGGER {function} BEFORE DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {function}()""",
            f"""CREATE OR REPLACE TRIGGER {table}_never_truncated BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {function}()""",
        ]


SQLITE: Final[Dialect] = _SQLite()
POSTGRESQL: Final[Dialect] = _PostgreSQL()
