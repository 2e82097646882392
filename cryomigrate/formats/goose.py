"""goose: ``<version>_<name>.sql`` with ``-- +goose Up`` / ``-- +goose Down`` annotations.

Rules from goose's source (migration.go ``NumericComponent``, internal/sqlparser):
every ``.sql`` file is a migration, its version the digits before the first ``_``, at
least 1. A line whose text starts with ``--`` and contains ``+goose`` is an annotation,
and must be one exactly: no leading whitespace, one ``+goose``, then (in any case) ``Up``,
``Down``, ``StatementBegin``, ``StatementEnd``, ``NO TRANSACTION``, ``ENVSUB ON`` or
``ENVSUB OFF``; goose refuses anything else, and so does cryomigrate, naming the line.
``Up`` comes first (only blank lines and comments before it), ``Down`` after it,
``StatementBegin``/``StatementEnd`` pair up inside a section, and ``NO TRANSACTION``
anywhere runs the migration outside a transaction.

Each section is sent as written: goose's splitting into statements (at a ``;`` ending a
line, or at ``StatementEnd``) only serves its own driver, and the annotation lines are
comments to the server. ``ENVSUB ON`` is refused: goose would substitute ``${VAR}`` from
its process environment, and a file run byte for byte must not silently mean something
else. Go migrations (``.go``) cannot be run and are refused.
"""

from __future__ import annotations

from pathlib import Path

from cryomigrate.discovery import Scan
from cryomigrate.errors import MigrationFileError
from cryomigrate.formats.base import ForeignFile, Named, Part, Sections, scan_with

_ANNOTATIONS = {a.lower(): a for a in ("Up", "Down", "StatementBegin", "StatementEnd",
                                        "NO TRANSACTION", "ENVSUB ON", "ENVSUB OFF")}


def classify(filename: str) -> Named | str | None:
    if not filename.endswith((".sql", ".go")):
        return None
    stem = filename.rsplit(".", 1)[0]
    version, sep, name = stem.partition("_")
    if not sep or not (version.isascii() and version.isdigit()) or int(version) < 1:
        return (f"{filename} is not named <version>_<name>.sql (version: digits, 1 or "
                "more), which goose refuses; rename it, or prefix it with _ to ignore it")
    if filename.endswith(".go"):
        return (f"{filename} is a Go migration, which only a program built with goose can "
                "run; write it as a .sql migration")
    return Named("single", version, name)


def scan(folder: Path) -> Scan:
    return scan_with(folder, "goose", classify)


class _Parser:
    """goose's state machine over the annotation lines, remembering where sections are."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.state = "start"  # start, up, down; with in_block for StatementBegin/End
        self.in_block = False
        self.transactional = True
        self.up: tuple[int, int] | None = None  # (offset after its line, its line number)
        self.down: tuple[int, int, int] | None = None  # (line start, offset after, line)

    def fail(self, line: int, why: str) -> MigrationFileError:
        return MigrationFileError(f"{self.label} line {line}: {why}")

    def annotation(self, name: str, number: int, start: int, end: int) -> None:
        if name == "Up":
            if self.state != "start":
                raise self.fail(number, "a second -- +goose Up")
            self.state, self.up = "up", (end, number)
        elif name == "Down":
            if self.state != "up" or self.in_block:
                raise self.fail(number, "-- +goose Down must follow -- +goose Up, outside "
                                "a StatementBegin/StatementEnd block")
            self.state, self.down = "down", (start, end, number)
        elif name in ("StatementBegin", "StatementEnd"):
            if self.state == "start" or self.in_block == (name == "StatementBegin"):
                raise self.fail(number, f"-- +goose {name} out of place: StatementBegin "
                                "and StatementEnd pair up inside the Up or Down section")
            self.in_block = name == "StatementBegin"
        elif name == "NO TRANSACTION":
            self.transactional = False
        elif name == "ENVSUB ON":
            raise self.fail(number, "-- +goose ENVSUB ON asks goose to substitute ${VAR} "
                            "from its environment; cryomigrate runs the file as written, so "
                            "it refuses rather than run something else; write the values "
                            "into the SQL")


def sections(file: ForeignFile, text: str, down: str | None) -> Sections:
    parser, offset = _Parser(file.label), 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        start, offset = offset, offset + len(line)
        stripped = line.strip()
        if stripped.startswith("--") and "+goose" in line:
            parser.annotation(_annotation(file.label, number, line), number, start, offset)
        elif parser.state == "start" and stripped and not stripped.startswith("--"):
            raise parser.fail(number, "SQL before -- +goose Up, which goose refuses")
    if parser.up is None:
        raise MigrationFileError(f"{file.label}: has no -- +goose Up annotation, which goose "
                                 "requires")
    if parser.in_block:
        raise MigrationFileError(f"{file.label}: a -- +goose StatementBegin has no "
                                 "StatementEnd")
    up_end, up_line = parser.up
    if parser.down is None:
        return Sections(Part(text[up_end:], file.label, up_line + 1), None,
                        parser.transactional)
    down_start, down_end, down_line = parser.down
    return Sections(Part(text[up_end:down_start], file.label, up_line + 1),
                    Part(text[down_end:], file.label, down_line + 1), parser.transactional)


def _annotation(label: str, number: int, line: str) -> str:
    """goose's extractAnnotation: refuse, as goose does, all but the exact annotations."""
    body = line.rstrip("\r\n")
    command = body.replace("--", "").replace("+goose", "", 1)
    known = _ANNOTATIONS.get(command.strip().lower())
    why = None
    if body[:1] in (" ", "\t"):
        why = "an annotation must start at the beginning of its line"
    elif "+goose" in command:
        why = "more than one +goose on a line"
    elif known is None:
        why = "unknown annotation"
    if why is not None:
        raise MigrationFileError(
            f"{label} line {number}: {why}: {body.strip()[:60]!r}; goose's annotations are "
            "-- +goose Up, Down, StatementBegin, StatementEnd, NO TRANSACTION (any case), "
            "each alone on its line")
    return known or ""


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    return "has no -- +goose Down section", "add one after its Up section"
