"""``drift``: has the environment's schema been changed by hand?

The environment's database is only read (one snapshot). Its applied migrations (and the
repeatable ones it has run) are replayed on a scratch database, whose snapshot is what
the database should hold; any difference was made some other way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cryomigrate.config import Environment
from cryomigrate.discovery import MigrationFile
from cryomigrate.errors import CryomigrateError, MigrationFailed, StateBlocked
from cryomigrate.loader import Migration
from cryomigrate.session import connect
from cryomigrate.snapshot import Snapshot, SnapshotCheck, compare
from cryomigrate.snapshot.catalog import take
from cryomigrate.snapshot.scratch import scratch_environment


def drift(env: Environment, files: Sequence[MigrationFile],
          repeatables: Sequence[MigrationFile],
          load: Callable[[MigrationFile], Migration]) -> SnapshotCheck:
    with connect(env, read_only=True) as (backend, tracker):
        history = tracker.read_all()
        ran = tracker.read_repeatables()
        actual = take(backend, tracker.own_tables())
    notes = [f"{row.version_text}_{row.name} is applied but its file is missing: not "
             "replayed" for version, row in sorted(history.items())
             if version not in {f.version for f in files}]
    applied = [load(f) for f in files if f.version in history]
    reruns = [load(f) for f in repeatables if f.name in ran]
    # Replayed as the files are now: one edited since it ran (status: modified, or a
    # repeatable changed, which the next apply runs again) explains a difference as well
    # as a change by hand would.
    edited = [m.file.label for m in applied if m.checksum != history[m.file.version].checksum]
    edited += [m.file.label for m in reruns if m.checksum != ran[m.file.name].checksum]
    if edited:
        notes.append(f"{', '.join(edited)} changed since the database ran them, and are "
                     "replayed as they are now: a difference in what they make may come from "
                     "that edit (a changed repeatable is run again by the next apply)")
    differences = compare(_replayed(env, applied + reruns), actual,
                          only_actual="in the database, not made by its migrations",
                          only_expected="made by its migrations, missing from the database")
    result = SnapshotCheck(env.name, "drift", (), tuple(differences), tuple(notes))
    if differences:
        cause = "changed by hand, or by the edits in notes?" if edited else "changed by hand?"
        raise StateBlocked(
            f"{env.name} has drifted from its migrations: {len(differences)} difference(s) "
            f"({cause}); make the change a migration, or undo it", result=result)
    return result


def _replayed(env: Environment, migrations: list[Migration]) -> Snapshot:
    from cryomigrate.runner import Runner

    with scratch_environment(env) as scratch, connect(scratch) as (backend, tracker):
        try:
            Runner(backend, tracker, scratch).run("apply", migrations)
        except CryomigrateError as exc:
            if exc.exit_code != 1:  # Ctrl-C, a lock wait: the replay's own result would
                exc.result = None  # read as migrations applied to the environment
                raise
            raise MigrationFailed(f"drift: replaying the applied migrations on a scratch "
                                  f"database failed: {exc}") from exc
        return take(backend, tracker.own_tables())
