"""Turn SQL text into a runnable Script, and split SQL files into their sections.

Shared by SQL migrations and by ``conn.sql`` in Python migrations, so both treat a
user's own ``BEGIN; ... COMMIT;`` the same way: inside a transactional migration it is
recognised, not sent, and reported as a notice, because a user's ``COMMIT`` would end
cryomigrate's transaction and break the migration's atomicity.

The splitter is imported only where a split is needed: its regexes take ~7 ms to compile,
and most scripts need none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cryomigrate.backends.base import Script
from cryomigrate.errors import MigrationFileError

_MARKER = re.compile(r"^[ \t]*--[ \t]*cryomigrate:([A-Za-z_-]+)[ \t]*\r?$", re.MULTILINE)
_KNOWN_MARKERS = ("apply", "rollback", "no-transaction")
# Every transaction-control statement starts with one of these words; a script without
# any of them needs no split before it is sent.
_CONTROL_WORD = re.compile(r"(?i)\b(?:begin|start|commit|end|rollback|abort|prepare)\b")


def prepare(sql: str, *, origin: str, first_line: int = 1, transactional: bool = True,
            notice: Callable[[str], None] | None = None) -> Script:
    if not transactional or not _CONTROL_WORD.search(sql):
        return Script(origin, sql, first_line)  # nothing to strip: split only if needed
    from cryomigrate.sqlsplit import blank_out, split

    statements = split(sql)
    text = sql
    controls = [s for s in statements if s.control]
    for statement in controls:
        line = first_line + statement.line - 1
        if statement.control == "prepare":
            raise MigrationFileError(
                f"{origin} line {line}: PREPARE TRANSACTION would hand the migration's "
                "transaction to two-phase commit and leave it uncommitted; remove it"
            )
        if statement.control == "rollback":
            raise MigrationFileError(
                f"{origin} line {line}: a top-level {statement.words[0]} would undo the "
                "migration's own transaction; remove it (a failing migration is rolled "
                "back for you) or mark the file -- cryomigrate:no-transaction"
            )
        if notice is not None:
            notice(f"{origin} line {line}: {' '.join(statement.words[:1])} not sent; "
                   "the migration already runs in one transaction")
    if controls:
        text = blank_out(sql, controls)
        statements = [s for s in statements if not s.control]
    return Script(origin, text, first_line, statements)


@dataclass(frozen=True)
class Sections:
    """The parts of a SQL migration file, each with the file line it starts on."""

    apply: str
    apply_line: int
    rollback: str | None
    rollback_line: int
    transactional: bool


def parse_sections(text: str, origin: str) -> Sections:
    markers = list(_MARKER.finditer(text))
    transactional = True
    apply_text, apply_line = text, 1
    rollback_text: str | None = None
    rollback_line = 0
    sections: dict[str, tuple[str, int]] = {}
    for index, marker in enumerate(markers):
        name = marker[1].lower()
        line = text.count("\n", 0, marker.start()) + 1
        if name not in _KNOWN_MARKERS:
            raise MigrationFileError(
                f"{origin} line {line}: unknown marker 'cryomigrate:{marker[1]}'; "
                f"known markers: {', '.join('cryomigrate:' + m for m in _KNOWN_MARKERS)}"
            )
        if name == "no-transaction":
            if sections:
                raise MigrationFileError(
                    f"{origin} line {line}: -- cryomigrate:no-transaction must come before "
                    "the first section marker"
                )
            transactional = False
            continue
        if name in sections:
            raise MigrationFileError(f"{origin} line {line}: a second -- cryomigrate:{name}")
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        body_start = marker.end() + 1 if marker.end() < len(text) else marker.end()
        sections[name] = (text[body_start:end], line + 1)
    if sections:
        first = min(m.start() for m in markers if m[1].lower() != "no-transaction")
        preamble = _MARKER.sub("", text[:first])
        if not _only_line_comments(preamble) and _has_statements(preamble):
            raise MigrationFileError(
                f"{origin}: SQL before the first -- cryomigrate:apply marker; move it into "
                "the apply section"
            )
        if "apply" not in sections:
            raise MigrationFileError(f"{origin}: has sections but no -- cryomigrate:apply")
        apply_text, apply_line = sections["apply"]
        if "rollback" in sections:
            rollback_text, rollback_line = sections["rollback"]
    return Sections(apply_text, apply_line, rollback_text, rollback_line, transactional)


def _only_line_comments(text: str) -> bool:
    """Blank lines and -- comments only: the usual header above the first marker."""
    return all(not line.strip() or line.lstrip().startswith("--") for line in text.splitlines())


def _has_statements(text: str) -> bool:
    from cryomigrate.sqlsplit import split

    return bool(split(text))
