"""The Supabase CLI's history, kept in step with cryomigrate's (DESIGN 8.2).

``supabase migration list`` and ``supabase migration up`` read
``supabase_migrations.schema_migrations (version text primary key, statements text[],
name text)``, the table the CLI itself creates (checked against the real CLI: it stores a
file ``20240101000000_create_x.sql`` as version ``20240101000000``, name ``create_x``, and
the file's statements without their final semicolons). With ``supabase_history: true`` its
row is queued in the same transaction as cryomigrate's own history row, so both commit or
neither does, and deleted on rollback.

``baseline`` (and ``repair --mark-applied`` / ``--mark-pending``) keep it in step too:
what cryomigrate records as applied without running it, the CLI must not run either, or
``supabase migration up`` would apply again what the database already holds. A row the
CLI already has is left as the CLI wrote it (it applied that file itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryomigrate.backends import Transaction

if TYPE_CHECKING:
    from cryomigrate.config import Environment
    from cryomigrate.discovery import MigrationFile
    from cryomigrate.loader import Direction, Migration

TABLE = "supabase_migrations.schema_migrations"
# As the CLI creates it; columns it added over time are added the same way.
_ENSURE = (
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    f"CREATE TABLE IF NOT EXISTS {TABLE} (version text NOT NULL PRIMARY KEY)",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS statements text[]",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS name text",
)


def enabled(env: Environment, dialect: str) -> bool:
    return bool(getattr(env, "supabase_history", False)) and dialect == "postgresql"


def ensure_table(tx: Transaction) -> None:
    for sql in _ENSURE:
        tx.defer(sql, where=f"creating {TABLE} (supabase_history: true)")


def defer_row(tx: Transaction, direction: Direction, migration: Migration) -> None:
    """Queue the CLI's row for ``migration``: written on apply, deleted on rollback."""
    file = migration.file
    where = f"writing {TABLE} for {file.version_text} (supabase_history: true)"
    if direction == "rollback":
        tx.defer(f"DELETE FROM {TABLE} WHERE version = %s", (file.version_text,), where=where)
        return
    tx.defer(f"INSERT INTO {TABLE} (version, name, statements) VALUES (%s, %s, %s) "
             "ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, "
             "statements = EXCLUDED.statements",
             (file.version_text, file.name, list(statements(migration))), where=where)


def statements(migration: Migration) -> tuple[str, ...]:
    """The apply statements, as the CLI records them; none for a Python migration."""
    script = getattr(migration, "apply_script", None)
    if script is None:
        return ()
    return tuple(text.rstrip().rstrip(";").rstrip() for text in script.statements)


def defer_recorded(tx: Transaction, file: MigrationFile, env: Environment) -> None:
    """Queue the CLI's row for a migration recorded as applied without running it
    (baseline, repair --mark-applied); an existing row is the CLI's own and stays."""
    statements_of: tuple[str, ...] = ()
    if file.kind != "python":  # loading a Python migration would run its module's code
        from cryomigrate.loader import load

        statements_of = statements(load(file, environment=env.name, vars=env.vars))
    tx.defer(f"INSERT INTO {TABLE} (version, name, statements) VALUES (%s, %s, %s) "
             "ON CONFLICT (version) DO NOTHING",
             (file.version_text, file.name, list(statements_of)),
             where=f"writing {TABLE} for {file.version_text} (supabase_history: true)")


def defer_forgotten(tx: Transaction, version_text: str) -> None:
    """Queue the deletion of the CLI's row for a migration marked pending (repair)."""
    tx.defer(f"DELETE FROM {TABLE} WHERE version = %s", (version_text,),
             where=f"writing {TABLE} for {version_text} (supabase_history: true)")
