"""The Supabase CLI's ``supabase/migrations``: ``<timestamp>_<name>.sql``, irreversible.

The CLI matches ``^([0-9]+)_(.*)\\.sql$`` (pkg/migration/file.go) and runs each file
whole, in a transaction; it has no down files. It skips other ``.sql`` files with a
warning; here they are an input error, since a migration that silently never runs is
what a switch must not hide.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryomigrate.discovery import Scan
from cryomigrate.formats.base import ForeignFile, Named, Sections, scan_with, whole_file

_FILE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.*)\.sql$", re.DOTALL)


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
    return whole_file(file, text, None)
