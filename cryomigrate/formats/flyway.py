"""Flyway: ``V<version>__<description>.sql``, ``U<version>__...`` undo, ``R__...`` repeatable.

Flyway's default naming (prefixes V, U, R; separator ``__``; suffix ``.sql``). Versions
here are integers, as everywhere in cryomigrate (DESIGN §9.1): Flyway's ``V1.1__`` or
``V1_1__`` (1.1) is an input error that says so, never a version read another way. An
undo file is the rollback of the versioned file of its version; without one a migration
is irreversible. ``R__<name>.sql`` is a repeatable migration, which Flyway and cryomigrate
(DESIGN §12) run alike: after the versioned ones, again whenever its checksum changes.

Flyway replaces ``${placeholder}`` in every file by default; cryomigrate runs files as
written, so a file holding ``${`` is refused. A ``<file>.sql.conf`` beside a file may say
``executeInTransaction=false`` (Flyway's per-script setting) to run it outside a
transaction; Flyway also guesses that from statements such as ``CREATE INDEX
CONCURRENTLY``, which cryomigrate does not: say it in the ``.conf`` file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cryomigrate.discovery import Scan
from cryomigrate.errors import MigrationFileError
from cryomigrate.formats.base import ForeignFile, Named, Part, Sections, line_at, scan_with

_FILE = re.compile(r"^(?P<prefix>[VUR])(?P<version>[^_]*(?:_(?!_)[^_]*)*)__(?P<desc>.+)\.sql$",
                   re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def classify(filename: str) -> Named | str | None:
    if not filename.endswith(".sql"):
        return None
    match = _FILE.match(filename)
    if match is None:
        return (f"{filename} is not named V<version>__<description>.sql, "
                "U<version>__<description>.sql or R__<description>.sql; rename it, or "
                "prefix it with _ to ignore it")
    prefix, version, desc = match["prefix"], match["version"], match["desc"]
    if prefix == "R":
        if version:
            return f"{filename}: a repeatable migration has no version: name it R__{desc}.sql"
        if not _NAME.match(desc):
            return (f"{filename}: cryomigrate names a repeatable by letters, digits and _; "
                    "rename it")
        return Named("repeatable", "", desc)
    if not (version.isascii() and version.isdigit()):
        return (f"{filename}: Flyway version '{version.replace('_', '.')}' is not a whole "
                "number; cryomigrate's versions are integers, so renumber it "
                f"({prefix}<integer>__{desc}.sql)")
    return Named("up" if prefix == "V" else "down", version, desc)


def scan(folder: Path) -> Scan:
    return scan_with(folder, "flyway", classify)


def sections(file: ForeignFile, text: str, down: str | None) -> Sections:
    _no_placeholders(file.label, text)
    rollback = None
    if down is not None:
        _no_placeholders(file.companion_label, down)
        rollback = Part(down, file.companion_label)
    return Sections(Part(text, file.label), rollback, _transactional(file))


def _no_placeholders(label: str, text: str) -> None:
    at = text.find("${")
    if at >= 0:
        raise MigrationFileError(
            f"{label} line {line_at(text, at)}: holds a ${{...}} placeholder, which Flyway "
            "replaces before running the file; cryomigrate runs files as written, so write "
            "the value in")


def _transactional(file: ForeignFile) -> bool:
    settings = {}
    for path in (file.path, file.companion):
        conf = f"{path}.conf"
        if path is None or not os.path.isfile(conf):
            continue
        for number, line in enumerate(Path(conf).read_text("utf-8").splitlines(), 1):
            key, sep, value = line.partition("=")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not sep or key.strip() != "executeInTransaction" or \
                    value.strip() not in ("true", "false"):
                raise MigrationFileError(
                    f"{os.path.basename(conf)} line {number}: cryomigrate reads only "
                    "executeInTransaction=true|false from a script's .conf file")
            settings[path] = value.strip() == "true"
    values = set(settings.values())
    if len(values) > 1:
        raise MigrationFileError(f"{file.label}: its .conf files disagree on "
                                 "executeInTransaction; cryomigrate runs both directions "
                                 "the same way")
    return values != {False}


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    return "has no undo file", f"add U{file.label[1:]}"
