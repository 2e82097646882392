"""``verify``: does every rollback restore the schema its migration found?

On a scratch database, for each migration in order: snapshot, apply, roll back, snapshot
again (it must equal the first), apply again, so the next migration starts where a real
database would. The first migration whose rollback leaves a difference, or that fails,
stops the check; the scratch database is dropped whatever happens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cryomigrate.config import Environment
from cryomigrate.errors import CryomigrateError, MigrationFailed, StateBlocked
from cryomigrate.loader import Migration
from cryomigrate.session import connect
from cryomigrate.snapshot import SnapshotCheck, Step, compare
from cryomigrate.snapshot.catalog import take
from cryomigrate.snapshot.scratch import scratch_environment

Progress = Callable[[str, Any], None]


def verify(env: Environment, migrations: Sequence[Migration],
           progress: Progress | None = None) -> SnapshotCheck:
    from cryomigrate.runner import Runner

    steps: list[Step] = []
    notes: list[str] = []
    with scratch_environment(env) as scratch, connect(scratch) as (backend, tracker):
        with backend.transaction(lock=True) as tx:  # before the first snapshot
            tracker.ensure_tables(tx)
        runner = Runner(backend, tracker, scratch)
        own = tracker.own_tables()

        def run(direction: str, migration: Migration) -> None:
            try:
                runner.run("apply" if direction == "apply" else "rollback", [migration])
            except CryomigrateError as exc:
                if exc.exit_code != 1:  # Ctrl-C, a lock wait: what verify did so far
                    exc.result = SnapshotCheck(env.name, "verify", tuple(steps), (),
                                               tuple(notes), migration.file.label)
                    raise
                steps.append(Step(migration.file.label, "failed"))
                result = SnapshotCheck(env.name, "verify", tuple(steps), (), tuple(notes),
                                       migration.file.label)
                raise MigrationFailed(f"verify: {direction} of {migration.file.label} failed "
                                      f"on the scratch database: {exc}", result=result) \
                    from exc

        for migration in migrations:
            label = migration.file.label
            before = take(backend, own)
            run("apply", migration)
            if not migration.reversible:
                steps.append(Step(label, "irreversible"))
                notes.append(f"{label} is irreversible (no rollback): applied, not checked")
                _tell(progress, steps[-1])
                continue
            run("rollback", migration)
            differences = compare(before, take(backend, own),
                                  only_actual="left behind by the rollback",
                                  only_expected="missing after the rollback")
            if differences:
                steps.append(Step(label, "differs"))
                result = SnapshotCheck(env.name, "verify", tuple(steps), tuple(differences),
                                       tuple(notes), label)
                shown = "; ".join(f"{d.object}: {d.what}" for d in differences[:10])
                raise StateBlocked(
                    f"{label}: its rollback does not restore the schema it found ({shown}"
                    f"{'; ...' if len(differences) > 10 else ''}); make its "
                    "-- cryomigrate:rollback section undo exactly what it applies",
                    result=result)
            run("apply", migration)
            steps.append(Step(label, "ok"))
            _tell(progress, steps[-1])
    return SnapshotCheck(env.name, "verify", tuple(steps), (), tuple(notes))


def _tell(progress: Progress | None, step: Step) -> None:
    if progress is not None:
        progress("step", step)
