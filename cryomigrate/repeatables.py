"""Repeatable migrations (DESIGN §12) joined to the database: their states and the ones an
apply runs. The command layer calls this beside the versioned planning it already does;
the rules themselves are pure, in the planner.

Reading the repeatable runs' table costs a query only when the folder has repeatables.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryomigrate import planner
from cryomigrate.config import Environment
from cryomigrate.discovery import MigrationFile
from cryomigrate.models import MigrationStatus
from cryomigrate.tracker import Tracker


def checksum(file: MigrationFile, env: Environment) -> str:
    """The checksum of what ``file`` runs in ``env``: a template's rendered SQL (so that a
    changed variable re-runs it), any other file's content."""
    if file.kind != "template":
        return file.checksum()
    from cryomigrate.loader import load

    return load(file, environment=env.name, vars=env.vars).checksum


def entries(files: Sequence[MigrationFile], tracker: Tracker, env: Environment
            ) -> list[planner.RepeatableEntry]:
    if not files:
        return []
    sums = {f.name: checksum(f, env) for f in files}
    return planner.repeatable_entries(files, tracker.read_repeatables(), sums)


def statuses(files: Sequence[MigrationFile], tracker: Tracker, env: Environment
             ) -> tuple[MigrationStatus, ...]:
    return tuple(planner.repeatable_status(e) for e in entries(files, tracker, env))


def to_apply(files: Sequence[MigrationFile], versioned: Sequence[MigrationFile],
             tracker: Tracker, env: Environment, planned: Sequence[MigrationFile]
             ) -> list[MigrationFile]:
    """The repeatables to run after ``planned`` (the versioned files this apply runs)."""
    found = entries(files, tracker, env)
    if not found:
        return []
    history = planner.entries(versioned, tracker.read_all(), {})
    return planner.plan_repeatables(found, history, planned)
