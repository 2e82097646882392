"""SQL literals for PostgreSQL's simple-query protocol, shared by both PostgreSQL paths."""

from __future__ import annotations

from typing import Any

from cryomigrate.backends.base import ELAPSED_MS, Elapsed

# Milliseconds since the transaction began (now() is its start), rounded by the cast.
_ELAPSED_SQL = "(extract(epoch FROM clock_timestamp() - now()) * 1000)::int"


def literal(value: int | str | Elapsed | None) -> str:
    """An SQL literal; E'' keeps backslashes right whatever standard_conforming_strings says."""
    if value is None:
        return "NULL"
    if isinstance(value, Elapsed):
        return _ELAPSED_SQL
    if isinstance(value, int):
        return str(int(value))
    if "\x00" in value:
        raise ValueError("PostgreSQL text cannot contain NUL characters")
    quoted = value.replace("\\", "\\\\").replace("'", "''")
    return f"E'{quoted}'" if "\\" in value else f"'{quoted}'"


def bindable(params: Any) -> bool:
    """True for the plain values cryomigrate's own queries bind: ints, strings, NULL."""
    return isinstance(params, (list, tuple)) and all(
        value is None or type(value) in (int, str) or value is ELAPSED_MS for value in params)


def bind(sql: str, params: Any) -> str:
    """``sql`` with its ``%s`` placeholders replaced by literals of ``params``."""
    if not bindable(params):
        raise TypeError("only int, str and None values can be bound here")
    return sql % tuple(literal(value) for value in params)


def one_line(text: str) -> str:
    """libpq's multi-line messages (an error, then a tab-indented hint) as one line."""
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip()) \
        or "unknown error"


def quote_table(table: str) -> str:
    """A (validated) table name, schema-qualified or not, as quoted identifiers."""
    return ".".join('"' + part + '"' for part in table.split("."))


def table_exists(table: str) -> tuple[str, tuple[str]]:
    """The query (and its parameter) that tells whether ``table`` exists, as ``found``."""
    return "SELECT to_regclass(%s) IS NOT NULL AS found", (quote_table(table),)
