"""The Supabase CLI's ``supabase/migrations``: ``<timestamp>_<name>.sql``, irreversible.

The CLI matches ``^([0-9]+)_(.*)\\.sql$`` (pkg/migration/file.go) and runs each file
whole, in a transaction; it has no down files. It skips other ``.sql`` files with a
warning; here they are an input error, since a migration that silently never runs is
what a switch must not hide.

The CLI sends a file's statements as one batch, which the server runs in an implicit
transaction that the file's own top-level ``BEGIN`` / ``COMMIT`` (or ``END``) really
begin and end: what a file scopes to its own transaction (``SET LOCAL``, ``set_config(...,
true)``, as dbdev's ``simulate_login`` does) ends at its ``COMMIT``. So a file with
top-level transaction control runs as ``-- cryomigrate:no-transaction`` would: its own
control is sent, as the CLI sends it, instead of being dropped inside cryomigrate's.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from cryomigrate.discovery import Scan
from cryomigrate.formats.base import ForeignFile, Named, Sections, scan_with, whole_file

_FILE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.*)\.sql$", re.DOTALL)
_CONTROL_WORD = re.compile(r"(?i)\b(?:begin|start|commit|end|rollback|abort|prepare)\b")


def classify(filename: str) -> Named | str | None:
    if not filename.endswith(".sql"):
        return None
    match = _FILE.match(filename)
    if match is None:
        return (f"{filename} is not named <timestamp>_<name>.sql, so the Supabase CLI "
                "skips it; rename it, or prefix it with _ to ignore it")
    return Named("single", match["version"], match["name"])


def scan(folder: Path) -> Scan:
    return scan_with(folder, "supabase", classify)


def sections(file: ForeignFile, text: str, down: str | None) -> Sections:
    return replace(whole_file(file, text, None), transactional=not _own_control(text))


def _own_control(text: str) -> bool:
    if not _CONTROL_WORD.search(text):
        return False
    from cryomigrate.sqlsplit import split

    return any(statement.control for statement in split(text))


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    return ("is a Supabase CLI migration, and the Supabase CLI has no down migrations",
            "undo it in a new migration")
