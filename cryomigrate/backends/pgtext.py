"""SQL text for PostgreSQL's simple-query protocol: literals, bound placeholders, quoting."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryomigrate.backends.base import Elapsed, QueryError

# Milliseconds since the transaction began (now() is its start), rounded by the cast.
# Qualified: the script that ran just before, in the same transaction, may set search_path.
_ELAPSED_SQL = ("(extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.now()) * 1000)"
                "::pg_catalog.int4")


def literal(value: int | str | Elapsed | None) -> str:
    """An SQL literal; E'' keeps backslashes right whatever standard_conforming_strings says."""
    if value is None:
        return "NULL"
    if isinstance(value, Elapsed):
        return _ELAPSED_SQL
    if isinstance(value, int):
        # A leading space keeps "balance-%s" with -5 from becoming the comment "--5".
        return str(int(value)) if value >= 0 else f" {int(value)}"
    if "\x00" in value:
        raise QueryError("PostgreSQL text cannot hold a NUL character (\\x00)")
    quoted = value.replace("\\", "\\\\").replace("'", "''")
    return f"E'{quoted}'" if "\\" in value else f"'{quoted}'"


_PLACEHOLDER = re.compile(r"%(?:\(([^)]*)\))?(.?)", re.DOTALL)


def bind(sql: str, params: Sequence[Any] | Mapping[str, Any],
         render: Callable[[Any], str]) -> str:
    """``sql`` with its placeholders replaced by ``render``ed literals of ``params``.

    The placeholders are psycopg's: ``%s`` with a sequence, ``%(name)s`` with a mapping,
    and ``%%`` for a literal ``%``; anything else is an error, never a silent rewrite.
    """
    if not isinstance(params, (list, tuple)) and (
            isinstance(params, (str, bytes)) or not isinstance(params, (Sequence, Mapping))):
        raise QueryError(f"{one_line(sql)!r}: parameters must be a sequence (for %s) or a "
                         f"mapping (for %(name)s), not {type(params).__name__}")
    # (list, tuple) first: the isinstance check against the Mapping ABC is slow.
    mapping = None if isinstance(params, (list, tuple)) or not isinstance(params, Mapping) \
        else params
    sequence: Sequence[Any] = () if mapping is not None else params  # type: ignore[assignment]
    parts: list[str] = []
    position = used = 0
    for match in _PLACEHOLDER.finditer(sql):
        parts.append(sql[position:match.start()])
        position = match.end()
        name, kind = match.group(1), match.group(2)
        if kind == "%" and name is None:
            parts.append("%")
            continue
        if kind != "s":
            raise QueryError(f"unsupported placeholder {match.group(0)!r} in {one_line(sql)!r}: "
                             "use %s or %(name)s, and %% for a literal %")
        if (name is not None) != (mapping is not None):
            raise QueryError(f"{one_line(sql)!r}: %s placeholders take a sequence of values, "
                             "%(name)s placeholders a mapping; do not mix them")
        if mapping is not None:
            if name not in mapping:
                raise QueryError(f"{one_line(sql)!r}: no value for placeholder %({name})s")
            parts.append(render(mapping[name]))
        else:
            if used >= len(sequence):
                raise QueryError(f"{one_line(sql)!r}: more placeholders than the "
                                 f"{len(sequence)} values given")
            parts.append(render(sequence[used]))
            used += 1
    if mapping is None and used != len(sequence):
        raise QueryError(f"{one_line(sql)!r}: {len(sequence)} values for {used} placeholders")
    parts.append(sql[position:])
    return "".join(parts)


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
