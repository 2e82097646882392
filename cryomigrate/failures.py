"""What a migration's failure says: its file named first, and what to do next.

Anything a migration raises, ``SystemExit`` included, becomes ``MigrationFailed`` naming
its file (``execute``); a failing statement of a script whose own BEGIN/COMMIT was not
sent says so (``explained``); a Ctrl-C says whether the migration's work was rolled back
or left part-done (``interrupted``), or that it never started (``waiting_for_lock``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryomigrate.errors import CryomigrateError, InputError, MigrationFailed
from cryomigrate.planner import settle_dirty
from cryomigrate.sqlscript import dropped_control_advice

if TYPE_CHECKING:
    from cryomigrate.loader import Direction, Migration
    from cryomigrate.migration_conn import MigrationConnection


def execute(direction: Direction, migration: Migration, conn: MigrationConnection) -> None:
    """Run the migration; anything it raises becomes MigrationFailed naming the file.

    ``SystemExit`` included: a ``sys.exit()`` in a migration is that migration failing,
    never cryomigrate ending quietly with its work half done.
    """
    try:
        migration.run(direction, conn)
    except CryomigrateError as exc:
        # Bad input met only while the migration runs (a template its code renders, a
        # ROLLBACK it sends) is that migration failing, once others may have committed:
        # exit 1, not the "nothing ran" of exit 2 (DESIGN 5).
        if isinstance(exc, MigrationFailed) or \
                (exc.exit_code != 1 and not isinstance(exc, InputError)):
            raise
        raise MigrationFailed(prefixed(migration, explained(exc))) from exc
    except (Exception, SystemExit) as exc:
        raise MigrationFailed(
            prefixed(migration, f"{direction}() raised {type(exc).__name__}: {exc}")
        ) from exc


def interrupted(migration: Migration) -> str:
    """A Ctrl-C inside ``migration``: rolled back, or marked dirty and part-done."""
    file = migration.file
    if migration.transactional:
        return f"interrupted while running {file.label}; its transaction was rolled back"
    return (f"interrupted inside {file.label}, which runs outside a transaction: it is now "
            "marked dirty, and the database may hold part of it; check what it holds, then "
            f"run {settle_dirty(file.version_text)}")


def plan_outdated(migration: Migration, direction: Direction) -> str:
    """Another run applied or rolled back a migration while this one waited for the lock."""
    verb, what = (("roll back", "it is no longer the newest applied migration")
                  if direction == "rollback" else
                  ("apply", "the newest version recorded is no longer the one this run "
                            "planned from"))
    return (f"did not {verb} {migration.file.label}: another run applied or rolled back "
            f"migrations since this one made its plan (while it waited for the lock, or for a "
            f"confirmation), and {what}. Nothing of it ran; "
            "what this run did before it stays. Check `cryomigrate status`, then run the "
            "command again")


def waiting_for_lock(migration: Migration) -> str:
    """A Ctrl-C before ``migration`` got the run lock, which another run held."""
    return (f"interrupted while waiting for the run lock (another run holds it), before "
            f"{migration.file.label} started; nothing of it ran")


def explained(exc: CryomigrateError) -> str:
    """A failing statement's message, plus why, when the script's own BEGIN/COMMIT was not
    sent and may have scoped what failed."""
    script = getattr(exc, "script", None)
    if script is not None and script.dropped_control:
        return f"{exc}; {dropped_control_advice(script)}"
    return str(exc)


def prefixed(migration: Migration, message: str) -> str:
    """``message`` starting with the migration's file name, once."""
    label = migration.file.label
    return message if message.startswith(label) else f"{label}: {message}"
