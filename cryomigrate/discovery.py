"""Scan a migrations folder: names, integer versions and checksums, with no database.

Versions compare as integers so that ``5``, ``005`` and ``0005`` are one version and
``010`` sorts after ``009``; the spelling in the file name is kept for display.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryomigrate.errors import MigrationFileError
from cryomigrate.models import Kind

_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9_]+)\.(?P<ext>py|sql|sql\.j2)$")
_KINDS: dict[str, Kind] = {"py": "python", "sql": "sql", "sql.j2": "template"}
_MIGRATION_SUFFIXES = (".py", ".sql", ".sql.j2")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class MigrationFile:
    version: int
    version_text: str
    name: str
    kind: Kind
    path: str  # a str: status builds one per file, and a thousand Paths cost ~3 ms
    label: str  # how messages name a migration: its file name, which the user can find

    def read_bytes(self) -> bytes:
        # os.open/os.read: no file object, no buffer; status reads every migration to
        # compare checksums, and this halves what that costs.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks = [os.read(fd, _CHUNK)]
                while len(chunks[-1]) == _CHUNK:
                    chunks.append(os.read(fd, _CHUNK))
            finally:
                os.close(fd)
        except OSError as exc:
            raise MigrationFileError(f"{self.path}: cannot be read: {exc}") from exc
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def checksum(self) -> str:
        return checksum_of(self.read_bytes())


def checksum_of(content: bytes) -> str:
    """sha256 of the content with CRLF normalised, so a Windows checkout is not 'modified'."""
    if b"\r" in content:
        content = content.replace(b"\r\n", b"\n")
    return "sha256:" + hashlib.sha256(content).hexdigest()


def checksums(files: list[MigrationFile]) -> dict[int, str]:
    """Every file's checksum by version: what history rows are compared against."""
    return {f.version: f.checksum() for f in files}


def parse_version(text: str) -> int:
    """A user-typed version such as ``--target 005``; raises ValueError if not digits."""
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"'{text}' is not a migration version (digits, like 005)")
    return int(text)


def scan(folder: Path) -> list[MigrationFile]:
    """The migrations in ``folder`` sorted by version; misnamed or duplicate files are errors."""
    if not folder.is_dir():
        raise MigrationFileError(
            f"migrations folder {folder} does not exist; create it or set 'migrations:' "
            "in environments.yaml"
        )
    found: list[MigrationFile] = []
    misnamed: list[str] = []
    prefix = os.path.join(folder, "")
    with os.scandir(folder) as entries:  # scandir: no stat call per file
        names = [e.name for e in entries if e.is_file()]
    for name in names:
        if name.startswith(("_", ".")) or not name.endswith(_MIGRATION_SUFFIXES):
            continue
        match = _NAME.match(name)
        if match is None:
            misnamed.append(name)
            continue
        found.append(
            MigrationFile(
                version=int(match["version"]),
                version_text=match["version"],
                name=match["name"],
                kind=_KINDS[match["ext"]],
                path=prefix + name,
                label=name,
            )
        )
    if misnamed:
        raise MigrationFileError(
            f"{folder}: these files look like migrations but are not named "
            f"<version>_<name>.py|.sql|.sql.j2 (version: digits, name: letters, digits, _): "
            f"{', '.join(sorted(misnamed))}; rename them, or prefix them with _ to ignore them"
        )
    found.sort(key=lambda m: (m.version, m.label))
    _reject_duplicates(folder, found)
    return found


def _reject_duplicates(folder: Path, found: list[MigrationFile]) -> None:
    by_version: dict[int, list[str]] = {}
    for migration in found:
        by_version.setdefault(migration.version, []).append(migration.label)
    clashes = [names for names in by_version.values() if len(names) > 1]
    if clashes:
        described = "; ".join(" and ".join(names) for names in clashes)
        raise MigrationFileError(
            f"{folder}: more than one migration has the same version: {described}; "
            "give each migration its own version number"
        )
