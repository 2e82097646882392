"""``cryomigrate new``: the next-numbered migration file, numbered the way the folder is."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from cryomigrate.config import load_config
from cryomigrate.discovery import scan
from cryomigrate.errors import InputError
from cryomigrate.models import NewResult
from cryomigrate.project import PathLike

_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_TIMESTAMP_WIDTH = 14

_PYTHON = '''"""{title}."""


def apply(conn, environment):
    conn.sql("""
        -- your change here
    """).execute()


def rollback(conn, environment):
    conn.sql("""
        -- undo it here
    """).execute()
'''

_SQL = """-- {title}
-- cryomigrate:apply


-- cryomigrate:rollback

"""


def new_migration(name: str, *, sql: bool = False, config: PathLike = None,
                  environment: str | None = None) -> NewResult:
    if not _NAME.match(name):
        raise InputError(
            f"'{name}' is not a valid migration name: use letters, digits and _ only "
            "(e.g. add_user_preferences)"
        )
    env = load_config(config).environment(environment)
    files = scan(env.migrations_dir)
    version = _next_version([f.version_text for f in files])
    suffix = "sql" if sql else "py"
    path = env.migrations_dir / f"{version}_{name}.{suffix}"
    title = name.replace("_", " ").capitalize()
    path.write_text((_SQL if sql else _PYTHON).format(title=title), encoding="utf-8")
    return NewResult(str(path), version, name)


def _next_version(existing: list[str]) -> str:
    if not existing:
        return "001"
    latest = max(existing, key=int)
    if len(latest) >= _TIMESTAMP_WIDTH:
        # Timestamp-numbered folders (Supabase, dbmate) keep using timestamps.
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        return stamp if int(stamp) > int(latest) else str(int(latest) + 1)
    return str(int(latest) + 1).zfill(len(latest))
