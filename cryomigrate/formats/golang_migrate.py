"""golang-migrate: ``{version}_{title}.up.sql`` and ``{version}_{title}.down.sql``.

Its source matches ``^([0-9]+)_(.*)\\.(down|up)\\.(.*)$`` (source/parse.go); the PostgreSQL
driver sends each file whole, with no transaction of its own and no annotation to ask
for one, so a file here runs in cryomigrate's transaction like any other. Only ``.sql``
files are read (other extensions belong to other databases' drivers); a ``.sql`` file
that is not an up or a down file is an input error, and so is a down file without its up.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryomigrate.discovery import Scan
from cryomigrate.formats.base import ForeignFile, Named, Sections, scan_with, whole_file

_FILE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.*)\.(?P<role>down|up)\.sql$", re.DOTALL)


def classify(filename: str) -> Named | str | None:
    if not filename.endswith(".sql"):
        return None
    match = _FILE.match(filename)
    if match is None:
        return (f"{filename} is not named <version>_<title>.up.sql or "
                "<version>_<title>.down.sql, so golang-migrate would not read it; rename "
                "it, or prefix it with _ to ignore it")
    return Named(match["role"], match["version"], match["name"])  # type: ignore[arg-type]


def scan(folder: Path) -> Scan:
    return scan_with(folder, "golang-migrate", classify)


def sections(file: ForeignFile, text: str, down: str | None) -> Sections:
    return whole_file(file, text, down)


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    return "has no down file", f"add {file.label.removesuffix('.up.sql')}.down.sql"
