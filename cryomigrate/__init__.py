"""cryomigrate: versioned schema migrations for PostgreSQL, Supabase and SQLite.

The public API is imported lazily so that ``import cryomigrate`` (and the CLI's
``--help``) stays fast; ``from cryomigrate import apply_migrations`` works as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "apply_migrations",
    "baseline",
    "get_history",
    "get_migration_status",
    "new_migration",
    "repair",
    "rollback_migrations",
    "validate",
]

if TYPE_CHECKING:
    from cryomigrate.api import (
        apply_migrations,
        baseline,
        get_history,
        get_migration_status,
        new_migration,
        repair,
        rollback_migrations,
        validate,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cryomigrate import api

        return getattr(api, name)
    raise AttributeError(f"module 'cryomigrate' has no attribute {name!r}")
