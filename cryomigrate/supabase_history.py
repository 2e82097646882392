"""The Supabase CLI's history, kept in step with cryomigrate's (DESIGN 8.2).

``supabase migration list`` and ``supabase migration up`` read
``supabase_migrations.schema_migrations (version text primary key, statements text[],
name text)``, the table the CLI itself creates (checked against the real CLI: it stores a
file ``20240101000000_create_x.sql`` as version ``20240101000000``, name ``create_x``, and
the file's statements without their final semicolons). With ``supabase_history: true`` its
row is queued in the same transaction as cryomigrate's own history row, so both commit or
neither does, and deleted on rollback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryomigrate.backends import Transaction

if TYPE_CHECKING:
    from cryomigrate.loader import Direction, Migration

TABLE = "supabase_migrations.schema_migrations"
# As the CLI creates it; columns it added over time are added the same way.
_ENSURE = (
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    f"CREATE TABLE IF NOT EXISTS {TABLE} (version text NOT NULL PRIMARY KEY)",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS statements text[]",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS name text",
)


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
