"""dbmate: ``<version>_<name>.sql`` with ``-- migrate:up`` and ``-- migrate:down`` sections.

Rules from dbmate's source (pkg/dbmate/migration.go) and dbmate 2.36 itself: a file is a
migration when its name matches ``^(\\d+).*\\.sql$``; the markers are found per line with
``^--\\s*migrate:up(\\s*$|\\s+\\S+)`` (so ``--migrate:up`` is a marker too); both sections
are required, up first, with nothing but comments before it; options follow the marker
as ``key:value`` words, and ``transaction:false`` runs that section outside a transaction.

dbmate ignores what it does not understand: ``-- migrate:up transaction: false`` (a space
after the colon) is silently transactional, and ``-- Migrate:down`` is a plain comment
that puts the down SQL into the up section. Here every comment line that starts like a
marker must be one exactly, with only ``transaction:true`` or ``transaction:false`` as an
option, or it is an input error naming file and line. A migration whose up or down says
``transaction:false`` runs outside a transaction in both directions: cryomigrate runs a
migration's two directions the same way, and outside is the way both can run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryomigrate.discovery import Scan
from cryomigrate.errors import MigrationFileError
from cryomigrate.formats.base import ForeignFile, Named, Part, Sections, scan_with

_FILE = re.compile(r"^(?P<version>[0-9]+)(?P<name>.*)\.sql$", re.DOTALL)
_MENTION = re.compile(r"(?i)^[ \t]*--[ \t]*migrate[ \t]*:")
_MARKER = re.compile(r"^--[ \t]*migrate:(?P<dir>up|down)(?:[ \t]+(?P<options>.*?))?[ \t]*\r?$")
_OPTION = re.compile(r"^transaction:(true|false)$")


def classify(filename: str) -> Named | str | None:
    if not filename.endswith(".sql"):
        return None
    match = _FILE.match(filename)
    if match is None:
        return (f"{filename} does not start with a version (digits), so dbmate would not "
                "read it; rename it <version>_<name>.sql, or prefix it with _ to ignore it")
    return Named("single", match["version"], match["name"].lstrip("_"))


def scan(folder: Path) -> Scan:
    return scan_with(folder, "dbmate", classify)


@dataclass(frozen=True)
class _Marker:
    """A dbmate section marker and where its section starts."""
    direction: str
    line: int
    start: int  # where the marker's line starts
    end: int  # just after its line: where its section starts
    transactional: bool


def sections(file: ForeignFile, text: str, down: str | None) -> Sections:
    markers = _markers(file.label, text)
    ups = [m for m in markers if m.direction == "up"]
    downs = [m for m in markers if m.direction == "down"]
    for found, name in ((ups, "up"), (downs, "down")):
        if not found:
            raise MigrationFileError(
                f"{file.label}: has no -- migrate:{name} line; dbmate needs both "
                "-- migrate:up and -- migrate:down (an empty down section is allowed)")
        if len(found) > 1:
            raise MigrationFileError(f"{file.label} line {found[1].line}: a second "
                                     f"-- migrate:{name}")
    up, dn = ups[0], downs[0]
    if dn.start < up.start:
        raise MigrationFileError(f"{file.label} line {dn.line}: -- migrate:down comes "
                                 "before -- migrate:up; dbmate needs up first")
    _only_comments_before(file.label, text[: up.start])
    return Sections(Part(text[up.end : dn.start], file.label, up.line + 1),
                    Part(text[dn.end :], file.label, dn.line + 1),
                    up.transactional and dn.transactional)


def _markers(label: str, text: str) -> list[_Marker]:
    markers, offset = [], 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        start, offset = offset, offset + len(line)
        if not _MENTION.match(line):
            continue
        exact = _MARKER.match(line.rstrip("\n"))
        options = (exact["options"] or "").split() if exact else []
        bad = [o for o in options if not _OPTION.match(o)]
        if exact is None or bad:
            why = f"unknown option {bad[0]!r}" if exact else "not a dbmate marker"
            raise MigrationFileError(
                f"{label} line {number}: {why}: {line.strip()[:60]!r}; the markers are "
                "exactly -- migrate:up and -- migrate:down at the start of a line, "
                "optionally followed by transaction:false (dbmate would silently read "
                "this line another way)")
        markers.append(_Marker(exact["dir"], number, start, offset,
                               "transaction:false" not in options))
    return markers


def _only_comments_before(label: str, preamble: str) -> None:
    for number, line in enumerate(preamble.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("--"):
            raise MigrationFileError(
                f"{label} line {number}: SQL before -- migrate:up, which dbmate refuses; "
                "move it into the up section")


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    return "has no -- migrate:down section", "add one after its -- migrate:up section"
