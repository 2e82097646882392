"""Migration folders written for other tools, read as those tools read them (DESIGN §9.1).

One module per format, each with three functions: ``scan(folder) -> Scan`` (which files
are migrations, with their versions, pairs and problems), ``sections(file, text, down) ->
Sections`` (the SQL each direction runs, byte for byte, and whether in a transaction) and
``missing_rollback(file) -> (what, fix)`` (what an irreversible file lacks, in that tool's
words, for the error that refuses to roll it back).
A format's name is its module's name with ``-`` for ``_``: adding a format is adding one
module here. Modules are imported only when their format is used, so the default format
pays nothing for the others.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from cryomigrate.discovery import decode_text
from cryomigrate.errors import ConfigError, MigrationFileError
from cryomigrate.formats.base import ForeignFile, Part, Sections, split_pair

if TYPE_CHECKING:
    from cryomigrate.discovery import Scan
    from cryomigrate.loader import SqlMigration

DEFAULT = "cryomigrate"
_NOT_FORMATS = {"base"}
# A section marker of any tool, in any case: left in a section once the format's reader
# has taken its own, it is a plain comment there, and the SQL after it (a down section)
# would run with the rest.
# Spelled as each tool reads its own (dbmate: no space after the colon), in any case; a
# lint waiver is no section marker, and prose ("-- migrate: up to v2") is left alone.
_SECTION_MARKER = re.compile(r"(?im)^[ \t]*--[ \t]*(cryomigrate[ \t]*:[ \t]*(?:apply|"
                             r"rollback|no-transaction)\b|migrate:(?:up|down)\b|"
                             r"\+[ \t]*goose[ \t]+(?:up|down)\b)")


def names() -> tuple[str, ...]:
    """Every format there is: one per module of this package."""
    import pkgutil

    found = [info.name for info in pkgutil.iter_modules(__path__)
             if info.name not in _NOT_FORMATS]
    return tuple(sorted(name.replace("_", "-") for name in found))


def reader(name: str) -> ModuleType:
    if name not in names():
        raise ConfigError(f"unknown migrations format '{name}'; formats: {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name.replace('-', '_')}")


def scan(name: str, folder: Path) -> Scan:
    found: Scan = reader(name).scan(folder)
    return found


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    """What an irreversible file lacks and how to add it, in its own tool's terms, as
    (``has no down file``, ``add 1_x.down.sql``)."""
    found: tuple[str, str] = reader(file.format).missing_rollback(file)
    return found


def _refuse_section_markers(part: Part, format: str) -> None:
    """Refuse a marker left in a section (a ``-- cryomigrate:rollback`` in a Supabase
    file, ``-- +Goose Down`` in a goose one): only comments count, not text in strings."""
    text = part.text
    lowered = text.lower()
    if "cryomigrate" not in lowered and "migrate" not in lowered and "goose" not in lowered:
        return
    from cryomigrate.sqlsplit import line_of, regions

    comments = [r for r in regions(text) if r.kind == "comment"]
    for match in _SECTION_MARKER.finditer(text):
        if not any(r.start <= match.start(1) < r.end for r in comments):
            continue
        word = match[1].lower()
        tool = "cryomigrate" if word.startswith("cryomigrate") else \
            "dbmate" if word.startswith("migrate") else "goose"
        line = part.first_line + line_of(text, match.start(1)) - 1
        raise MigrationFileError(
            f"{part.origin} line {line}: '{match[1].strip()}' looks like a {tool} section "
            f"marker, but this folder is read in {format}'s format, where it is a plain "
            "comment and the SQL after it would run with this section; remove it, or split "
            "the file as " + format + " expects")


def load_foreign(file: ForeignFile, content: bytes | None = None) -> SqlMigration:
    """A file of another tool's folder as a SQL migration: its sections, prepared as
    cryomigrate's own are (a user's BEGIN/COMMIT in a transactional one is not sent)."""
    from cryomigrate import sqlscript
    from cryomigrate.discovery import checksum_of
    from cryomigrate.loader import SqlMigration

    if content is None:
        content = file.read_bytes()
    up, down = split_pair(file, content)
    text = decode_text(file.label, up)
    down_text = decode_text(file.companion_label, down) if down is not None else None
    sections: Sections = reader(file.format).sections(file, text, down_text)
    for part in (sections.apply, sections.rollback):
        if part is not None:
            _refuse_section_markers(part, file.format)
    notices: list[str] = []
    tx = sections.transactional
    apply = sqlscript.prepare(sections.apply.text, origin=sections.apply.origin,
                              first_line=sections.apply.first_line, transactional=tx,
                              notice=notices.append)
    rollback = None
    if sections.rollback is not None:
        rollback = sqlscript.prepare(sections.rollback.text, origin=sections.rollback.origin,
                                     first_line=sections.rollback.first_line,
                                     transactional=tx)
    return SqlMigration(file, checksum_of(content), file.name.replace("_", " "), tx, apply,
                        rollback, tuple(notices))


