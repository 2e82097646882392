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
    path: str  # a str, not a Path: status builds one per file, and Paths are costly
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


# History tables store versions as BIGINT (SQLite INTEGER holds the same range).
MAX_VERSION = 2**63 - 1


def parse_version(text: str) -> int:
    """A user-typed version such as ``--target 005``; raises ValueError if not digits or
    beyond what a database can record."""
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"'{text}' is not a migration version (digits, like 005)")
    version = int(text)
    if version > MAX_VERSION:
        raise ValueError(f"'{text}' is larger than the largest version, {MAX_VERSION}")
    return version


def scan(folder: Path) -> list[MigrationFile]:
    """The migrations in ``folder`` sorted by version; misnamed or duplicate files are errors."""
    found, problems = scan_all(folder)
    if problems:
        raise MigrationFileError("; ".join(problems))
    return found


def scan_all(folder: Path) -> tuple[list[MigrationFile], list[str]]:
    """Every well-named migration in ``folder``, sorted, and every problem found there.

    ``validate`` reports all the problems at once; a run stops on them (``scan``). Only a
    missing folder raises here, since then there is nothing else to look at.
    """
    if not folder.is_dir():
        raise MigrationFileError(
            f"migrations folder {folder} does not exist; create it or set 'migrations:' "
            "in environments.yaml"
        )
    found: list[MigrationFile] = []
    misnamed: list[str] = []
    broken: list[str] = []
    too_large: list[str] = []
    prefix = os.path.join(folder, "")
    with os.scandir(folder) as entries:  # scandir: no stat call per file
        for entry in entries:
            name = entry.name
            if name.startswith(("_", ".")):
                continue
            if not entry.is_file():  # follows symlinks: a link to a file is that file
                if (entry.is_symlink() and not os.path.exists(entry.path)
                        and (_NAME.match(name) or name.endswith(_MIGRATION_SUFFIXES))):
                    broken.append(name)  # a link to a folder is a folder: ignored
                continue
            if not name.endswith(_MIGRATION_SUFFIXES):
                continue
            match = _NAME.match(name)
            if match is None:
                misnamed.append(name)
            elif int(match["version"]) > MAX_VERSION:
                too_large.append(name)
            else:
                found.append(MigrationFile(
                    version=int(match["version"]), version_text=match["version"],
                    name=match["name"], kind=_KINDS[match["ext"]], path=prefix + name,
                    label=name,
                ))
    found.sort(key=lambda m: (m.version, m.label))
    problems = _describe(folder, sorted(misnamed), sorted(broken), sorted(too_large))
    problems += _duplicates(folder, found)
    return found, problems


def _describe(folder: Path, misnamed: list[str], broken: list[str], too_large: list[str]
              ) -> list[str]:
    problems = []
    if misnamed:
        problems.append(
            f"{folder}: these files look like migrations but are not named "
            f"<version>_<name>.py|.sql|.sql.j2 (version: digits, name: letters, digits, _): "
            f"{', '.join(misnamed)}; rename them, or prefix them with _ to ignore them"
        )
    if broken:
        problems.append(
            f"{folder}: these symbolic links point to nothing: {', '.join(broken)}; fix or "
            "remove them (a migration that cannot be read must not be skipped silently)"
        )
    if too_large:
        problems.append(
            f"{folder}: these versions are larger than the largest version a database can "
            f"record ({MAX_VERSION}): {', '.join(too_large)}; renumber them"
        )
    return problems


def _duplicates(folder: Path, found: list[MigrationFile]) -> list[str]:
    by_version: dict[int, list[str]] = {}
    for migration in found:
        by_version.setdefault(migration.version, []).append(migration.label)
    clashes = [names for names in by_version.values() if len(names) > 1]
    if not clashes:
        return []
    described = "; ".join(" and ".join(names) for names in clashes)
    return [f"{folder}: more than one migration has the same version: {described}; "
            "give each migration its own version number"]
