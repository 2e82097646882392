"""``cryomigrate new``: the next-numbered migration file, numbered the way the folder is,
or (``--repeatable``) a repeatable migration ``R_<name>``.

It needs no database and no secret: only the migrations folder, which it creates if
missing. A scaffold's rollback never silently does nothing: the Python one raises until
it is written, and ``validate`` warns about it and about an empty SQL rollback section.
The name may be a sentence, as Alembic's ``revision -m`` habit has people type it: it is
made into a name (``slug``), and what cannot become one is refused saying what was tried.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

from cryomigrate.config import load_config
from cryomigrate.discovery import MAX_VERSION, scan_project
from cryomigrate.errors import InputError, MigrationFileError
from cryomigrate.results import NewResult
from cryomigrate.session import PathLike

_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_SEPARATORS = re.compile(r"[^a-z0-9]+")
# Letters that Unicode does not decompose into an ASCII letter plus accents, but that
# have a spelling every reader agrees on.
_ASCII_LETTERS = str.maketrans({
    "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "þ": "th", "Þ": "TH",
})
_TIMESTAMP_WIDTH = 14
_MAX_FILE_NAME_BYTES = 255  # the limit of common file systems (ext4, APFS, NTFS)

_PYTHON = '''"""{title}."""


def apply(conn, environment):
    conn.sql("""
        -- your change here
    """).execute()


def rollback(conn, environment):
    # Write the undo of apply() here, or delete this function to make the migration
    # irreversible (rolling it back is then refused).
    raise NotImplementedError("not written yet: write it, or delete rollback() to make "
                              "this migration irreversible")
'''

_SQL = """-- {title}
-- cryomigrate:apply


-- cryomigrate:rollback

"""

# A repeatable is never rolled back, so its scaffolds have no rollback to forget; they
# are re-run whenever they change, so they say to write them to be re-run.
_REPEATABLE_PYTHON = '''"""{title}.

A repeatable migration: run again, after the versioned ones, whenever this file changes.
Write it so that running it again is harmless (CREATE OR REPLACE, DROP ... IF EXISTS).
"""


def apply(conn, environment):
    conn.sql("""
        -- e.g. CREATE OR REPLACE VIEW ...
    """).execute()
'''

_REPEATABLE_SQL = """-- {title}
-- A repeatable migration: run again, after the versioned ones, whenever this file
-- changes. Write it so that running it again is harmless (CREATE OR REPLACE VIEW,
-- DROP POLICY IF EXISTS ... then CREATE POLICY).

"""


def new_migration(name: str, *, sql: bool = False, config: PathLike = None,
                  environment: str | None = None, repeatable: bool = False) -> NewResult:
    name = slug(name)
    loaded = load_config(config)
    if environment is not None:  # named: it must exist, though only the folder is needed
        loaded.environment(environment, strict_vars=False)
    folder, tool = loaded.migrations_dir, loaded.format
    if tool != "cryomigrate":  # another tool's folder is named as that tool names it
        raise InputError(f"the migrations folder is in {tool}'s format (format: in "
                         f"environments.yaml); create the file as {tool} names them")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MigrationFileError(f"cannot create the migrations folder {folder}: {exc}") \
            from None
    found = scan_project(folder)
    if repeatable:
        _refuse_existing_repeatable(name, [f.name for f in found.repeatables])
        version = None
        filename = f"R_{name}.{'sql' if sql else 'py'}"
        template = _REPEATABLE_SQL if sql else _REPEATABLE_PYTHON
    else:
        version = _next_version([f.version_text for f in found.files])
        filename = f"{version}_{name}.{'sql' if sql else 'py'}"
        template = _SQL if sql else _PYTHON
    _check_length(name, filename, "R" if version is None else version)
    title = name.replace("_", " ").capitalize()
    path = _create(folder / filename, template.format(title=title))
    return NewResult(path, version, name, repeatable)


def slug(text: str) -> str:
    """A migration name from what was typed: a valid name as written, a sentence made into
    one (``"Add user preferences!"`` -> ``add_user_preferences``).

    Accented letters lose their accents; a letter with no ASCII spelling (``日``) is
    refused, since dropping it could leave a name that says something else.
    """
    if _NAME.fullmatch(text) and text.strip("_"):
        return re.sub("__+", "_", text).strip("_")  # already a name: its case is kept
    ascii_text = unicodedata.normalize("NFKD", text.translate(_ASCII_LETTERS))
    ascii_text = "".join(c for c in ascii_text if not unicodedata.combining(c))
    foreign = sorted({c for c in ascii_text if c.isalnum() and not c.isascii()})
    if foreign:
        raise InputError(
            f"'{text}' cannot become a migration name: {', '.join(foreign)} "
            f"{'has' if len(foreign) == 1 else 'have'} no ASCII spelling, and names are "
            "ASCII letters, digits and _; write it in ASCII (e.g. add_user_preferences)"
        )
    name = _SEPARATORS.sub("_", ascii_text.lower()).strip("_")
    if not name:
        raise InputError(
            f"'{text}' cannot become a migration name: turning everything but letters and "
            "digits into _ left nothing; give a name with letters or digits "
            "(e.g. add_user_preferences)"
        )
    return name


def _refuse_existing_repeatable(name: str, existing: list[str]) -> None:
    """Never overwrite, and never make a second file for one name: the history knows a
    repeatable by its name, whatever its case or extension."""
    for other in existing:
        if other.lower() == name.lower():
            raise InputError(
                f"a repeatable migration named '{other}' already exists; edit its file "
                "(that is how a repeatable is changed), or choose another name"
            )


def _check_length(name: str, filename: str, prefix: str) -> None:
    if len(filename.encode()) > _MAX_FILE_NAME_BYTES:
        raise InputError(
            f"'{name[:40]}...' is too long: the file name {prefix}_<name> would be "
            f"{len(filename.encode())} bytes, over the {_MAX_FILE_NAME_BYTES} a file name "
            "may have; choose a shorter name"
        )


def _create(path: Path, text: str) -> str:
    try:
        with open(path, "x", encoding="utf-8") as out:  # never overwrite
            out.write(text)
    except OSError as exc:
        raise MigrationFileError(f"cannot create {path}: {exc}") from None
    return str(path)


def _next_version(existing: list[str]) -> str:
    if not existing:
        return "001"
    latest = max(existing, key=int)
    if len(latest) >= _TIMESTAMP_WIDTH:
        # Timestamp-numbered folders (Supabase, dbmate) keep using timestamps.
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        version = stamp if int(stamp) > int(latest) else str(int(latest) + 1)
    else:
        version = str(int(latest) + 1).zfill(len(latest))
    if int(version) > MAX_VERSION:
        raise InputError(f"the version after {latest} would be {version}, larger than the "
                         f"largest version a database can record ({MAX_VERSION}); nothing "
                         "was created. Renumber the migrations, or give the file a version "
                         "of your own")
    return version
