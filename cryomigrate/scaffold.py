"""``cryomigrate new``: the next-numbered migration file, numbered the way the folder is.

It needs no database and no secret: only the migrations folder, which it creates if
missing. A scaffold's rollback never silently does nothing: the Python one raises until
it is written, and ``validate`` warns about it and about an empty SQL rollback section.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from cryomigrate.config import load_config
from cryomigrate.discovery import scan
from cryomigrate.errors import InputError, MigrationFileError
from cryomigrate.models import NewResult
from cryomigrate.session import PathLike

_NAME = re.compile(r"^[A-Za-z0-9_]+$")
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


def new_migration(name: str, *, sql: bool = False, config: PathLike = None,
                  environment: str | None = None) -> NewResult:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"'{name}' is not a valid migration name: use letters, digits and _ only "
            "(e.g. add_user_preferences)"
        )
    # strict_vars=False: only the folder is needed, never the database URL's secrets.
    env = load_config(config).environment(environment, strict_vars=False)
    folder = env.migrations_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MigrationFileError(f"cannot create the migrations folder {folder}: {exc}") \
            from None
    version = _next_version([f.version_text for f in scan(folder)])
    filename = f"{version}_{name}.{'sql' if sql else 'py'}"
    if len(filename.encode()) > _MAX_FILE_NAME_BYTES:
        raise InputError(
            f"'{name[:40]}...' is too long: the file name {version}_<name> would be "
            f"{len(filename.encode())} bytes, over the {_MAX_FILE_NAME_BYTES} a file name "
            "may have; choose a shorter name"
        )
    title = name.replace("_", " ").capitalize()
    text = (_SQL if sql else _PYTHON).format(title=title)
    try:
        with open(folder / filename, "x", encoding="utf-8") as out:  # never overwrite
            out.write(text)
    except OSError as exc:
        raise MigrationFileError(f"cannot create {folder / filename}: {exc}") from None
    return NewResult(str(folder / filename), version, name)


def _next_version(existing: list[str]) -> str:
    if not existing:
        return "001"
    latest = max(existing, key=int)
    if len(latest) >= _TIMESTAMP_WIDTH:
        # Timestamp-numbered folders (Supabase, dbmate) keep using timestamps.
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        return stamp if int(stamp) > int(latest) else str(int(latest) + 1)
    return str(int(latest) + 1).zfill(len(latest))
