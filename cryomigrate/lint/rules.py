"""cryomigrate's own lint rules, and what counts as destructive (DESIGN 10.1).

Both read statements through cryomigrate's own SQL lexer, so they work the same on
PostgreSQL and SQLite, with or without squawk: strings, comments and dollar-quoted
bodies are blanked before any pattern looks at a statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryomigrate.sqlscript import Script

CONCURRENT_INDEX = "concurrent-index-in-transaction"
DESTRUCTIVE = "destructive"
OWN = frozenset({CONCURRENT_INDEX, DESTRUCTIVE})
# squawk's rules that report a destructive statement: such a finding is marked
# destructive, and cryomigrate's own ``destructive`` finding is not added beside it.
SQUAWK_DESTRUCTIVE = frozenset({
    "ban-drop-column", "ban-drop-table", "ban-drop-database", "ban-drop-schema",
    "changing-column-type", "renaming-column", "renaming-table", "ban-truncate-cascade",
})

_CONCURRENTLY = re.compile(r"(?is)^\s*(CREATE\s+(UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\b.*?)"
                           r"\s+CONCURRENTLY\b")
_DESTRUCTIVE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?is)^\s*DROP\s+SCHEMA\b"), "drops a schema"),
    (re.compile(r"(?is)^\s*DROP\s+(FOREIGN\s+)?TABLE\b"), "drops a table"),
    (re.compile(r"(?is)^\s*TRUNCATE\b"), "truncates a table"),
    (re.compile(r"(?is)^\s*ALTER\s+TABLE\b.*\bDROP\s+(COLUMN\b|(?!CONSTRAINT\b|DEFAULT\b"
                r"|NOT\b|EXPRESSION\b|IDENTITY\b)\w+)"), "drops a column"),
    (re.compile(r"(?is)^\s*ALTER\s+TABLE\b.*\bALTER\s+(COLUMN\s+)?\S+\s+(SET\s+DATA\s+)?"
                r"TYPE\b"), "changes a column's type"),
    (re.compile(r"(?is)^\s*ALTER\s+(TABLE|SCHEMA|VIEW|MATERIALIZED\s+VIEW|SEQUENCE|INDEX"
                r"|FUNCTION|TYPE)\b.*\bRENAME\b"), "renames"),
)


@dataclass(frozen=True)
class Statement:
    """A statement of a migration's script, placed in the migration file."""

    index: int
    first_line: int  # in the file
    last_line: int
    code: str  # the statement with strings and comments blanked


def statements(script: Script) -> list[Statement]:
    from cryomigrate.sqlsplit import code_only, regions

    found = []
    for index, part in enumerate(script._parts()):
        text = part.text
        first = script.first_line + part.line - 1
        found.append(Statement(index, first, first + text.rstrip().count("\n"),
                               code_only(text, regions(text))))
    return found


def destructive_kind(statement: Statement) -> str | None:
    """What a destructive statement does, in a few words; None for any other statement."""
    return next((what for pattern, what in _DESTRUCTIVE if pattern.search(statement.code)),
                None)


def concurrent_in_transaction(statement: Statement, transactional: bool) -> str | None:
    """The message of cryomigrate's own rule, when it applies to ``statement``."""
    if not transactional or not _CONCURRENTLY.search(statement.code):
        return None
    return ("CONCURRENTLY cannot run inside a transaction, and this migration runs in one; "
            "put it in a migration of its own marked `-- cryomigrate:no-transaction`")
