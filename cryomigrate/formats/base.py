"""What every reader of another tool's folder shares: the file type, sections, the scan.

A reader classifies each file name of the folder (one of a pair, a single file, a
repeatable, not a migration, or a problem) and splits a file into the sections it runs.
Everything after that, from checksums to history, is cryomigrate's own, unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryomigrate.discovery import (
    MAX_VERSION,
    REPEATABLE_TEXT,
    REPEATABLE_VERSION,
    MigrationFile,
    Scan,
)
from cryomigrate.errors import MigrationFileError


@dataclass(frozen=True)
class ForeignFile(MigrationFile):
    """A migration in another tool's folder; ``companion`` is the down (undo) file of a pair.

    The bytes of a pair are the up file, one NUL byte, then the down file. A migration can
    never hold a NUL (the loader refuses one), so the join is unambiguous, and every place
    that checksums a file's bytes gets the checksum of both files without knowing pairs.
    """

    format: str = ""
    companion: str | None = None

    @property
    def companion_label(self) -> str:
        return os.path.basename(self.companion or "")

    def read_bytes(self) -> bytes:
        first = super().read_bytes()
        if self.companion is None:
            return first
        second = MigrationFile(self.version, self.version_text, self.name, self.kind,
                               self.companion, self.companion_label).read_bytes()
        for content, label in ((first, self.label), (second, self.companion_label)):
            if b"\x00" in content:
                line = content[: content.index(b"\x00")].count(b"\n") + 1
                raise MigrationFileError(
                    f"{label} line {line}: contains a NUL byte (\\x00), which a migration "
                    "cannot hold; nothing was sent to the database")
        return first + b"\x00" + second


@dataclass(frozen=True)
class Part:
    """One section's SQL, exactly as written, and where it starts (for error lines)."""

    text: str
    origin: str
    first_line: int = 1


@dataclass(frozen=True)
class Sections:
    """A foreign file's apply and rollback parts, and whether it runs in a transaction."""
    apply: Part
    rollback: Part | None  # None: irreversible
    transactional: bool = True


Role = Literal["up", "down", "single", "repeatable"]


@dataclass(frozen=True)
class Named:
    """What a file name says: its role, version (as written) and name."""

    role: Role
    version_text: str
    name: str


# A classifier answers for one file name: Named, None (not a migration: ignored), or a
# problem sentence (a file the format does not recognise, or a near miss of its names).
Classifier = Callable[[str], "Named | str | None"]


def scan_with(folder: Path, format: str, classify: Classifier) -> Scan:
    """Scan ``folder`` as ``format`` names its files; every problem is collected."""
    if not folder.is_dir():
        raise MigrationFileError(
            f"migrations folder {folder} does not exist; create it or set 'migrations:' "
            "in environments.yaml")
    problems: list[str] = []
    found: dict[Role, dict[int, list[tuple[str, Named]]]] = {
        "up": {}, "down": {}, "single": {}, "repeatable": {}}
    repeatables: list[MigrationFile] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith(("_", ".")) or not entry.is_file():
                continue
            if entry.name.lower().endswith(".sql") and not entry.name.endswith(".sql"):
                # .SQL, .up.SQL: skipped here as never a .sql file, yet a migration to
                # the eye (and to golang-migrate, which reads any extension)
                problems.append(f"{folder}: {entry.name}: the extension must be .sql in "
                                f"lower case for {format}'s format to read it as a "
                                "migration; rename it, or prefix it with _ to ignore it")
                continue
            named = classify(entry.name)
            if named is None:
                continue
            if isinstance(named, str):
                problems.append(f"{folder}: {named}")
            elif named.role == "repeatable":
                repeatables.append(ForeignFile(
                    REPEATABLE_VERSION, REPEATABLE_TEXT, named.name, "sql", entry.path,
                    entry.name, repeatable=True, format=format))
            elif int(named.version_text) > MAX_VERSION:
                problems.append(f"{folder}: {entry.name}: version {named.version_text} is "
                                f"larger than the largest a database can record "
                                f"({MAX_VERSION})")
            else:
                found[named.role].setdefault(int(named.version_text), []).append(
                    (entry.path, named))
    files = _pair_up(folder, format, found, problems)
    return Scan(sorted(files, key=lambda f: f.version),
                sorted(repeatables, key=lambda f: f.name), problems)


def _pair_up(folder: Path, format: str, found: dict[Role, dict[int, list[tuple[str, Named]]]],
             problems: list[str]) -> list[MigrationFile]:
    files: list[MigrationFile] = []
    ups, downs, singles = found["up"], found["down"], found["single"]
    for version in sorted(set(ups) | set(downs) | set(singles)):
        heads = ups.get(version, []) + singles.get(version, [])
        tails = downs.get(version, [])
        names = [os.path.basename(path) for path, _ in heads + tails]
        if len(heads) > 1 or len(tails) > 1:
            problems.append(f"{folder}: more than one migration has the version {version}: "
                            f"{' and '.join(names)}; give each migration its own version")
            continue
        if not heads:
            problems.append(f"{folder}: {names[0]} has no up file of its own version; a "
                            "down (undo) file undoes an up file, so add it or remove this one")
            continue
        (path, named), tail = heads[0], (tails[0][0] if tails else None)
        files.append(ForeignFile(version, named.version_text, named.name, "sql", path,
                                 os.path.basename(path), format=format, companion=tail))
    return files


def split_pair(file: ForeignFile, content: bytes) -> tuple[bytes, bytes | None]:
    """The up and down files' bytes out of a pair's joined bytes (see ForeignFile)."""
    if file.companion is None:
        return content, None
    up, _, down = content.partition(b"\x00")
    return up, down


def whole_file(file: ForeignFile, text: str, down: str | None) -> Sections:
    """An up file run whole, and its down file (if any) as the rollback."""
    rollback = Part(down, file.companion_label) if down is not None else None
    return Sections(Part(text, file.label), rollback)


def line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
