"""sqlx: ``<VERSION>_<DESCRIPTION>.sql`` (irreversible), or ``.up.sql`` + ``.down.sql``.

sqlx splits a file name at its first ``_``, needs the rest to end in ``.sql`` and the
first part to parse as an i64 (sqlx-core/src/migrate/source.rs): ``.up.sql`` and
``.down.sql`` make a reversible pair, anything else a simple migration. A file that
starts with ``-- no-transaction`` runs outside a transaction (``sql.starts_with``, so
only at the very first byte); a pair whose up and down files disagree on it is refused,
since cryomigrate runs both directions of a migration the same way.
"""

from __future__ import annotations

from pathlib import Path

from cryomigrate.discovery import Scan
from cryomigrate.errors import MigrationFileError
from cryomigrate.formats.base import ForeignFile, Named, Part, Sections, scan_with

_NO_TX = "-- no-transaction"


def classify(filename: str) -> Named | str | None:
    if not filename.endswith(".sql"):
        return None
    version, sep, rest = filename.partition("_")
    if not sep or not (version.isascii() and version.isdigit()):
        return (f"{filename} is not named <VERSION>_<DESCRIPTION>.sql (VERSION: digits), "
                "so sqlx would not read it; rename it, or prefix it with _ to ignore it")
    for suffix, role in ((".up.sql", "up"), (".down.sql", "down")):
        if rest.endswith(suffix):
            return Named(role, version, rest[: -len(suffix)])  # type: ignore[arg-type]
    return Named("single", version, rest[: -len(".sql")])


def scan(folder: Path) -> Scan:
    return scan_with(folder, "sqlx", classify)


def sections(file: ForeignFile, text: str, down: str | None) -> Sections:
    transactional = not text.startswith(_NO_TX)
    if down is not None and down.startswith(_NO_TX) == transactional:
        raise MigrationFileError(
            f"{file.label} and {file.companion_label}: only one of them starts with "
            f"{_NO_TX}; cryomigrate runs both directions of a migration the same way, so "
            "mark both or neither")
    rollback = Part(down, file.companion_label) if down is not None else None
    return Sections(Part(text, file.label), rollback, transactional)


def missing_rollback(file: ForeignFile) -> tuple[str, str]:
    stem = f"{file.version_text}_{file.name}"
    if file.label.endswith(".up.sql"):
        return "has no down file", f"add {stem}.down.sql"
    return ("is a simple sqlx migration, which has no down file",
            f"rename it {stem}.up.sql and add {stem}.down.sql")
