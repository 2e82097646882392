"""Scan a migrations folder: names, integer versions and checksums, with no database.

Versions compare as integers so that ``5``, ``005`` and ``0005`` are one version and
``010`` sorts after ``009``; the spelling in the file name is kept for display.
Repeatable migrations (``R_<name>``, DESIGN §12) have no version: they are found in the
same pass, so a folder is listed once whatever it holds, and kept apart from the
versioned files, which every version-keyed rule reads.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryomigrate.errors import MigrationFileError
from cryomigrate.models import Kind

# [0-9], not \d: \d also matches other scripts' digits (Arabic-Indic, fullwidth), which no
# version is.
_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9_]+)\.(?P<ext>py|sql|sql\.j2)$")
# A repeatable's name starts with a letter or digit: ``R__x`` (Flyway's spelling) is a
# near miss with its own advice, never a repeatable named ``_x``.
_REPEATABLE = re.compile(r"^R_(?P<name>[A-Za-z0-9][A-Za-z0-9_]*)\.(?P<ext>py|sql|sql\.j2)$")
# Where a repeatable's file stands in for a version: in the journal's version column and in
# labels, ``R`` reads as the start of its file name. No version is ever negative.
REPEATABLE_VERSION = -1
REPEATABLE_TEXT = "R"
_KINDS: dict[str, Kind] = {"py": "python", "sql": "sql", "sql.j2": "template"}
_MIGRATION_SUFFIXES = (".py", ".sql", ".sql.j2")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class MigrationFile:
    """A migration file as its name describes it; its content is read only when needed."""
    version: int
    version_text: str
    name: str
    kind: Kind
    path: str  # a str, not a Path: status builds one per file, and Paths are costly
    label: str  # how messages name a migration: its file name, which the user can find
    repeatable: bool = False  # an R_<name> file: no version, re-run when it changes

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
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"'{text}' is not a migration version (digits 0-9, like 005)")
    version = int(text)
    if version > MAX_VERSION:
        raise ValueError(f"'{text}' is larger than the largest version, {MAX_VERSION}")
    return version


def scan(folder: Path) -> list[MigrationFile]:
    """The versioned migrations in ``folder`` sorted by version; misnamed or duplicate
    files are errors."""
    return scan_project(folder).files


def scan_all(folder: Path) -> tuple[list[MigrationFile], list[str]]:
    """Every well-named versioned migration in ``folder``, sorted, and every problem."""
    found = scan_folder(folder)
    return found.files, found.problems


def scan_project(folder: Path, format: str = "cryomigrate") -> Scan:
    """Versioned and repeatable migrations; any problem in the folder is an error."""
    found = scan_folder(folder, format)
    if found.problems:
        raise MigrationFileError("; ".join(found.problems))
    return found


@dataclass(frozen=True)
class Scan:
    """What a migrations folder holds, and what is wrong with it."""
    files: list[MigrationFile]  # versioned, sorted by version
    repeatables: list[MigrationFile]  # R_<name>, sorted by name: the order they run in
    problems: list[str]


@dataclass
class _Listing:
    """The files of a folder sorted out while it is scanned."""
    found: list[MigrationFile] = field(default_factory=list)
    repeatables: list[MigrationFile] = field(default_factory=list)
    misnamed: list[str] = field(default_factory=list)
    near_misses: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    too_large: list[str] = field(default_factory=list)


def scan_folder(folder: Path, format: str = "cryomigrate") -> Scan:
    """Every well-named migration in ``folder``, sorted, and every problem found there.

    ``validate`` reports all the problems at once; a run stops on them (``scan``). Only a
    missing folder raises here, since then there is nothing else to look at. A folder
    written for another tool (``format:``, DESIGN §9.1) is read by that format's reader.
    """
    if format != "cryomigrate":
        from cryomigrate.formats import scan as scan_format

        return scan_format(format, folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise MigrationFileError(
            f"migrations folder {folder} {what}; create it or set 'migrations:' "
            "in environments.yaml"
        )
    listing = _Listing()
    prefix = os.path.join(folder, "")
    with os.scandir(folder) as entries:  # scandir: no stat call per file
        for entry in entries:
            name = entry.name
            if name.startswith(("_", ".")):
                continue
            if not entry.is_file():  # follows symlinks: a link to a file is that file
                if (entry.is_symlink() and not os.path.exists(entry.path)
                        and (_NAME.match(name) or name.lower().endswith(_MIGRATION_SUFFIXES))):
                    listing.broken.append(name)  # a link to a folder is a folder: ignored
                continue
            # .SQL or .Py is a near miss, reported as misnamed rather than skipped.
            if name.lower().endswith(_MIGRATION_SUFFIXES):
                _sort_out(listing, name, prefix + name)
    listing.found.sort(key=lambda m: (m.version, m.label))
    listing.repeatables.sort(key=lambda m: (m.name, m.label))
    problems = _describe(folder, sorted(listing.misnamed), sorted(listing.broken),
                         sorted(listing.too_large))
    problems += [f"{folder}: {problem}" for problem in sorted(listing.near_misses)]
    problems += _duplicates(folder, listing.found)
    problems += _repeatable_clashes(folder, listing.repeatables)
    return Scan(listing.found, listing.repeatables, problems)


def _sort_out(listing: _Listing, name: str, path: str) -> None:
    match = _NAME.match(name)
    if match is None:
        repeatable = _REPEATABLE.match(name)
        if repeatable is not None:
            listing.repeatables.append(MigrationFile(
                version=REPEATABLE_VERSION, version_text=REPEATABLE_TEXT,
                name=repeatable["name"], kind=_KINDS[repeatable["ext"]], path=path,
                label=name, repeatable=True,
            ))
            return
        near_miss = repeatable_near_miss(name)
        if near_miss is not None:
            listing.near_misses.append(near_miss)
        else:
            listing.misnamed.append(name)
    elif int(match["version"]) > MAX_VERSION:
        listing.too_large.append(name)
    else:
        listing.found.append(MigrationFile(
            version=int(match["version"]), version_text=match["version"],
            name=match["name"], kind=_KINDS[match["ext"]], path=path, label=name,
        ))


def repeatable_near_miss(filename: str) -> str | None:
    """What is wrong with a file name that was meant as a repeatable migration, if it was.

    Each spelling gets its own advice, and none is read as something else: Flyway's
    ``R__x`` would otherwise make a second identity (``_x``) for the view ``x``, and a
    lower-case ``r_x`` one that runs on Linux but not where file names ignore case.
    """
    stem, ext = filename, ""
    for suffix in (".sql.j2", ".sql", ".py"):
        if filename.lower().endswith(suffix):
            stem, ext = filename[: -len(suffix)], suffix
            break
    if not filename.endswith(ext) and stem[:2] in ("R_", "r_"):
        return (f"{filename} has its extension in upper case; rename it to "
                f"R_{stem[2:].lstrip('_') or '<name>'}{ext}")
    if stem.startswith("R__"):
        rest = stem[3:].lstrip("_")
        return (f"{filename} uses Flyway's R__ prefix; cryomigrate's repeatable migrations "
                f"are R_<name> with one underscore: rename it to R_{rest or '<name>'}{ext}")
    if stem == "R_":
        return (f"{filename} is a repeatable migration without a name; rename it to "
                f"R_<name>{ext} (name: letters, digits, _)")
    if stem.startswith("r_"):
        return (f"{filename} starts with a lower-case r; repeatable migrations start with "
                f"an upper-case R_: rename it to R_{stem[2:]}{ext}")
    if stem.startswith("R_"):
        return (f"{filename} is not named R_<name>{ext} (name: letters, digits and _, "
                "starting with a letter or digit); rename it")
    return None


def _describe(folder: Path, misnamed: list[str], broken: list[str], too_large: list[str]
              ) -> list[str]:
    problems = []
    if misnamed:
        problems.append(
            f"{folder}: these files look like migrations but are not named "
            f"<version>_<name>.py|.sql|.sql.j2 (version: digits 0-9, name: letters, digits, _; "
            f"the extension in lower case) "
            f"or R_<name>.py|.sql|.sql.j2 (repeatable): "
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


def _repeatable_clashes(folder: Path, repeatables: list[MigrationFile]) -> list[str]:
    """Two repeatables whose names differ only in case (or extension) are one identity:
    the history knows a repeatable by name, and a checkout on macOS or Windows, where
    file names ignore case, could not even hold both files."""
    by_name: dict[str, list[str]] = {}
    for migration in repeatables:
        by_name.setdefault(migration.name.lower(), []).append(migration.label)
    clashes = [names for names in by_name.values() if len(names) > 1]
    if not clashes:
        return []
    described = "; ".join(" and ".join(sorted(names)) for names in clashes)
    return [f"{folder}: more than one repeatable migration has the same name (ignoring "
            f"case and extension): {described}; keep one file per name"]


def decode_text(label: str, content: bytes) -> str:
    """A migration file's text: UTF-8 (a BOM allowed), never holding a NUL byte, which no
    SQL or Python source may hold and which a driver would cut the text at."""
    if b"\x00" in content:
        line = content[: content.index(b"\x00")].count(b"\n") + 1
        raise MigrationFileError(
            f"{label} line {line}: contains a NUL byte (\\x00), which a migration cannot "
            "hold; nothing was sent to the database. Remove it (is the file binary, or "
            "saved as UTF-16?)")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise MigrationFileError(
            f"{label} line {line}: not valid UTF-8 (byte 0x{content[exc.start]:02x}); save "
            "the file as UTF-8") from None
