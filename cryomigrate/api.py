"""The library API: one function per CLI command. Never prints, prompts or exits.

Each function loads the configuration, picks the environment, joins files on disk
(discovery, loader) with state in the database (tracker) through the pure planner and
policies, and hands execution to the runner. Errors are raised from
``cryomigrate.errors``; results are typed and JSON-serialisable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from cryomigrate import planner, policies, repeatables, supabase_history
from cryomigrate.backends import Backend, Transaction
from cryomigrate.config import Environment
from cryomigrate.dirty_wait import DirtyWait
from cryomigrate.discovery import MigrationFile, checksums, parse_version
from cryomigrate.errors import DirtyMigration, InputError, MigrationFileError, StateBlocked
from cryomigrate.models import HistoryRow, MigrationRun, RunResult, StatusResult
from cryomigrate.policies import Confirm
from cryomigrate.session import (
    EnvironmentRef,
    PathLike,
    Project,
    connect,
    open_project,
    resolve_environment,
)
from cryomigrate.tracker import Tracker, now

if TYPE_CHECKING:  # loading and running are imported only when there is work to do
    from cryomigrate.adopt import AdoptResult
    from cryomigrate.lint import LintResult
    from cryomigrate.loader import Direction, Migration
    from cryomigrate.results import (
        BaselineResult,
        HistoryResult,
        NewResult,
        RepairResult,
        ValidateResult,
    )
    from cryomigrate.runner import Progress
    from cryomigrate.snapshot import SnapshotCheck

Version = str | int | None
_T = TypeVar("_T")
_EDIT_ATTEMPTS = 5  # fresh reads a history edit makes while concurrent runs change it


def get_migration_status(environment: EnvironmentRef = None, *, config: PathLike = None
                         ) -> StatusResult:
    project = open_project(config, environment)
    with connect(project.env, read_only=True) as (backend, tracker):
        found = _entries(project, tracker)
        return StatusResult(project.env.name, backend.display_url,
                            tuple(planner.to_status(e) for e in found)
                            + repeatables.statuses(project.repeatables, tracker, project.env))


def apply_migrations(target_version: Version = None, environment: EnvironmentRef = None, *,
                     config: PathLike = None, dry_run: bool = False, confirm: Confirm = False,
                     lock_wait: float = 60, progress: Progress | None = None) -> RunResult:
    """Apply pending migrations up to and including ``target_version`` (all when None)."""
    target = _version(target_version, "target_version")
    project = open_project(config, environment)
    env = project.env

    def plan(found: list[planner.Entry]) -> tuple[list[MigrationFile], list[str]]:
        return planner.plan_apply(found, planner.resolve_target(target, found), env.policies)

    result = _run("apply", project, plan, dry_run=dry_run, confirm=confirm,
                  lock_wait=lock_wait, progress=progress)
    if target is None:
        return result
    return replace(result, target=planner.pad(target, [f.version_text for f in project.files]))


def rollback_migrations(target_version: Version = None,
                        environment: EnvironmentRef = None, *,
                        steps: int | None = None, config: PathLike = None,
                        dry_run: bool = False, confirm: Confirm = False, lock_wait: float = 60,
                        progress: Progress | None = None) -> RunResult:
    """Roll back every applied migration above ``target_version``, or the newest ``steps``,
    or everything when neither is given."""
    target = _version(target_version, "target_version")
    steps = _steps(steps)
    if target is not None and steps is not None:
        raise InputError("give a target version or a number of steps, not both")
    project = open_project(config, environment)
    env = project.env
    policies.check_rollback_allowed(env)

    def plan(found: list[planner.Entry]) -> tuple[list[MigrationFile], list[str]]:
        chosen, warnings = planner.plan_rollback(
            found, planner.resolve_target(target, found), steps, env.policies)
        return [e.file for e in chosen if e.file is not None], warnings

    return _run("rollback", project, plan, dry_run=dry_run, confirm=confirm,
                lock_wait=lock_wait, progress=progress)


Planner = Callable[[list[planner.Entry]], tuple[list[MigrationFile], list[str]]]


def _run(direction: Direction, project: Project, plan: Planner, *, dry_run: bool,
         confirm: Confirm, lock_wait: float, progress: Progress | None) -> RunResult:
    """Plan on a read-only connection, check and confirm, then execute on a writable one.

    Planning never writes: a refused, unconfirmed, dry or no-op run leaves no trace, not
    even a new SQLite file.
    """
    _flag(dry_run, "dry_run")
    env = project.env
    with connect(env, read_only=True, lock_wait=lock_wait) as (backend, tracker):
        files, warnings, newest = _plan_past_dirty(project, tracker, plan, lock_wait, progress)
        if direction == "apply":  # after the versioned ones; rollback never runs them
            files = files + repeatables.to_apply(project.repeatables, project.files, tracker,
                                                 env, files)
        _warn(progress, warnings)
        migrations = [_load(f, env, reversible=direction == "rollback") for f in files]
        if direction == "apply":  # lint, destructive and promotion policies (DESIGN 10)
            from cryomigrate.preflight import before_apply

            found, confirm = before_apply(env, backend.dialect, migrations, dry_run=dry_run,
                                          confirm=confirm, progress=progress)
            warnings = warnings + found
        if dry_run:
            return _preview(env, direction, migrations, warnings)
        verb = "apply" if direction == "apply" else "roll back"
        policies.check_confirmed(env, verb, [m.file.label for m in migrations], confirm)
        if not migrations:
            return RunResult(env.name, direction, False, (), tuple(warnings))
        from cryomigrate import after_run
        from cryomigrate.runner import Runner

        hook = after_run.prepare(env)
        if backend.writable:  # one session per run, where the connection can write
            runner = Runner(backend, tracker, env, progress, lock_wait)
            return after_run.around(backend, hook, lambda: _with_notices(
                runner.run(direction, migrations, newest=newest), warnings))
        tables_exist, repeatables_exist = tracker.ready, tracker.repeatable_ready
    with connect(env, lock_wait=lock_wait) as (backend, tracker):
        tracker.ready, tracker.repeatable_ready = tables_exist, repeatables_exist
        runner = Runner(backend, tracker, env, progress, lock_wait)
        return after_run.around(backend, hook, lambda: _with_notices(
            runner.run(direction, migrations, newest=newest), warnings))


def _plan_past_dirty(project: Project, tracker: Tracker, plan: Planner, lock_wait: float,
                     progress: Progress | None
                     ) -> tuple[list[MigrationFile], list[str], int | None]:
    """Plan; while a dirty migration blocks, wait for it as for the lock (``DirtyWait``),
    then stop with its advice. With the plan, the newest version it was made from."""
    sums: dict[int, str] = {}
    warn = None if progress is None else (lambda text: progress("warning", text))
    wait = DirtyWait(lock_wait, warn)
    while True:
        history = tracker.read_all()
        # Only applied files are compared with their rows; pending ones are read once,
        # when they are loaded to run.
        sums |= checksums([f for f in project.files if f.version in history
                           and f.version not in sums])
        found = planner.entries(project.files, history, sums)
        try:
            files, warnings = plan(found)
            return files, warnings, max(history, default=None)
        except DirtyMigration as exc:
            if not wait.pause(exc.label):
                raise


def get_history(environment: EnvironmentRef = None, *, config: PathLike = None,
                limit: int | None = None) -> HistoryResult:
    from cryomigrate.results import HistoryResult

    env = resolve_environment(config, environment)
    with connect(env, read_only=True) as (_, tracker):
        return HistoryResult(env.name, tuple(tracker.read_journal(limit)))


def baseline(version: Version, environment: str | None = None, *, config: PathLike = None,
             lock_wait: float = 60) -> BaselineResult:
    """Record every migration up to ``version`` as applied without running it."""
    from cryomigrate.results import BaselineResult

    upto = _version(version, "version")
    if upto is None:
        raise InputError("baseline needs a version, e.g. `cryomigrate baseline 005`")
    project = open_project(config, environment)
    if not any(f.version == upto for f in project.files):
        spellings = [f.version_text for f in project.files]
        below = [f.label for f in project.files if f.version < upto][-1:]
        raise InputError(f"no migration file has version {planner.pad(upto, spellings)}; "
                         "baseline records every migration up to one that exists"
                         + (f" (the nearest below is {below[0]})" if below else ""))
    env = project.env

    def record(tx: Transaction, history: dict[int, HistoryRow], tracker: Tracker) -> list[str]:
        files = [f for f in project.files if f.version <= upto and f.version not in history]
        for file in files:  # recorded, each must load (as adopt and repair check)
            _load(file, env, reversible=False)
        supabase_rows = bool(files) and supabase_history.enabled(env, tracker.backend.dialect)
        if supabase_rows:  # the Supabase CLI's table kept in step (DESIGN 8.2)
            supabase_history.ensure_table(tx)
        for file in files:
            tracker.insert(version=file.version, version_text=file.version_text,
                           name=file.name, kind=file.kind, checksum=file.checksum(),
                           state="applied", duration_ms=0, tx=tx)
            tracker.journal(version_text=file.version_text, name=file.name, action="baseline",
                            outcome="ok", started_at=now(), duration_ms=0, tx=tx)
            if supabase_rows:
                supabase_history.defer_recorded(tx, file, env)
        return [f.label for f in files]

    with connect(env, lock_wait=lock_wait) as (backend, tracker):
        recorded = _edit_history(backend, tracker, record)
    return BaselineResult(env.name, tuple(recorded))


def _edit_history(backend: Backend, tracker: Tracker,
                  edit: Callable[[Transaction, dict[int, HistoryRow], Tracker], _T]) -> _T:
    """Read the history, then make the edits decided from it in one locked transaction
    whose guard checks that the history is still what was read: one call over the
    Supabase HTTP API, where a read cannot share a transaction with the writes, and
    everything or nothing either way. A concurrent run that changed the history in between
    makes the edit start again from a fresh read. With no history table yet there is
    nothing to compare: the tables are created in the same transaction, and an INSERT of a
    version recorded meanwhile fails on the key."""
    for _ in range(_EDIT_ATTEMPTS):
        history = tracker.read_all()
        guard = tracker.unchanged(history) if tracker.ready else None
        with backend.transaction(lock=True, expect=guard) as tx:
            tracker.ensure_tables(tx)
            outcome = edit(tx, history, tracker)
            if tx.commit():
                return outcome
    raise StateBlocked("the history kept changing while this command waited for it (other "
                       "runs are active); nothing was written, run it again")


def adopt(tool: str, environment: str | None = None, *, table: str | None = None,
          config: PathLike = None, dry_run: bool = False, lock_wait: float = 60
          ) -> AdoptResult:
    """Record as applied what another tool applied to this database (DESIGN 9.2); its own
    table is only read. All or nothing, in one locked transaction."""
    from cryomigrate.adopt import TABLES, AdoptResult, read_applied, to_adopt

    if tool not in TABLES:
        raise InputError(f"--from: unknown tool '{tool}'; one of {', '.join(TABLES)}")
    _flag(dry_run, "dry_run")
    table = table or TABLES[tool]
    project = open_project(config, environment)
    with connect(project.env, read_only=dry_run, lock_wait=lock_wait) as (backend, tracker):
        if dry_run:
            files = to_adopt(tool, table, read_applied(backend, tool, table), project.files,
                             set(tracker.read_all()))
            for file in files:  # as the real run checks them
                _load(file, project.env, reversible=False)
            return AdoptResult(project.env.name, tool, table, True,
                               tuple(f.label for f in files))
        applied = read_applied(backend, tool, table)

        def record(tx: Transaction, history: dict[int, HistoryRow], tracker: Tracker
                   ) -> list[MigrationFile]:
            chosen = to_adopt(tool, table, applied, project.files, set(history))
            for file in chosen:  # recorded, each must load (as repair checks): else the
                _load(file, project.env, reversible=False)  # next rollback fails on it
            for file in chosen:
                tracker.insert(version=file.version, version_text=file.version_text,
                               name=file.name, kind=file.kind, checksum=file.checksum(),
                               state="applied", duration_ms=0, tx=tx)
                tracker.journal(version_text=file.version_text, name=file.name,
                                action="adopt", outcome="ok", started_at=now(),
                                duration_ms=0, tx=tx)
            return chosen

        # Read first, then everything in one locked transaction guarded against a
        # concurrent change of the history: one call over the Supabase HTTP API.
        files = _edit_history(backend, tracker, record)
    return AdoptResult(project.env.name, tool, table, False, tuple(f.label for f in files))


def repair(environment: str | None = None, *, config: PathLike = None,
           mark_applied: Version = None, mark_pending: Version = None,
           lock_wait: float = 60) -> RepairResult:
    """Accept changed checksums, and settle a dirty migration the way the user says.

    A dirty migration is never settled by guessing: only the person who looked at the
    database can say whether it holds the migration's changes.
    """
    applied_v = _version(mark_applied, "mark_applied")
    pending_v = _version(mark_pending, "mark_pending")
    if applied_v is not None and pending_v is not None:
        raise InputError("mark one version applied or pending, not both in one repair "
                         "(--mark-applied or --mark-pending)")
    project = open_project(config, environment)
    from cryomigrate.history_repair import Repair
    from cryomigrate.results import RepairResult

    env = project.env

    def edit(tx: Transaction, history: dict[int, HistoryRow], tracker: Tracker) -> Repair:
        fix = Repair(tracker, project.files, history, tx)
        supabase_rows = supabase_history.enabled(env, tracker.backend.dialect)
        if supabase_rows and (applied_v is not None or pending_v is not None):
            supabase_history.ensure_table(tx)  # kept in step (DESIGN 8.2)
        if applied_v is not None:
            fix.mark_applied(applied_v)
            if supabase_rows:
                supabase_history.defer_recorded(tx, fix.files[applied_v], env)
        if pending_v is not None:
            fix.mark_pending(pending_v)
            if supabase_rows:
                supabase_history.defer_forgotten(tx, history[pending_v].version_text)
        if applied_v is None and pending_v is None:
            fix.accept_checksums()
        # A file whose checksum is now the history's must load: accepted broken, it
        # would fail the next rollback instead (an error here rolls all of this back).
        for file in project.files:
            if file.label in fix.checksums_updated or file.label in fix.marked_applied:
                _load(file, env, reversible=False)
        return fix

    if applied_v is None:  # without a history nothing can be repaired: nothing is created
        with connect(env, read_only=True, lock_wait=lock_wait) as (_, tracker):
            if not tracker.exists():
                if pending_v is not None:
                    spelled = planner.pad(pending_v, [f.version_text for f in project.files])
                    raise InputError(f"version {spelled} is not in the history (there is "
                                     "none yet); it is already pending")
                return RepairResult(env.name, (), (), (), ())
    with connect(env, lock_wait=lock_wait) as (backend, tracker):
        fix = _edit_history(backend, tracker, edit)
        result = RepairResult(project.env.name, tuple(fix.checksums_updated),
                              tuple(fix.marked_applied), tuple(fix.marked_pending),
                              tuple(fix.dirty_left()))
    if result.dirty and applied_v is None and pending_v is None:
        raise StateBlocked(
            "still dirty: " + "; ".join(result.dirty) + ". A run stopped inside these "
            "non-transactional migrations; check what the database holds, then run "
            "`cryomigrate repair --mark-applied V` if their changes are there or "
            "`cryomigrate repair --mark-pending V` if they are not",
            result=result,
        )
    return result


def _entries(project: Project, tracker: Tracker) -> list[planner.Entry]:
    return planner.entries(project.files, tracker.read_all(), checksums(project.files))


def _flag(value: object, what: str) -> None:
    """A flag as the library takes it: ``dry_run="false"`` is a near miss that would mean
    a dry run (a non-empty string is true), so only a bool is taken."""
    if not isinstance(value, bool):
        raise InputError(f"{what} must be True or False, not {value!r}")


def _steps(value: object) -> int | None:
    """``steps`` as the library takes it: a whole number from 1, as ``--steps`` allows."""
    from cryomigrate.options import MAX_INT

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT:
        raise InputError(f"steps must be a whole number from 1 (an int), not {value!r}")
    return value


def _version(value: Version, what: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_version(str(value))
    except ValueError as exc:
        raise InputError(f"{what}: {exc}") from None


def _load(file: MigrationFile, env: Environment, *, reversible: bool) -> Migration:
    from cryomigrate.loader import load

    migration = load(file, environment=env.name, vars=env.vars)
    if reversible and not migration.reversible:
        from cryomigrate.formats import missing_rollback
        from cryomigrate.formats.base import ForeignFile

        how, fix = ("has no rollback(conn, environment) function" if file.kind == "python"
                    else "has no -- cryomigrate:rollback section"), "add a rollback"
        if isinstance(file, ForeignFile):  # say what is missing in that tool's terms
            how, fix = missing_rollback(file)
        raise MigrationFileError(
            f"{file.label} is irreversible: it {how}, so it cannot be rolled back; roll back "
            f"to {file.version_text} or later, or {fix}"
        )
    return migration


def _preview(env: Environment, direction: Direction, migrations: Sequence[Migration],
             warnings: list[str]) -> RunResult:
    runs = tuple(
        MigrationRun(None if m.file.repeatable else m.file.version_text, m.file.name,
                     m.file.kind, 0, m.preview(direction), m.description, m.file.repeatable)
        for m in migrations
    )
    return RunResult(env.name, direction, True, runs, tuple(warnings))


def _with_notices(result: RunResult, warnings: list[str]) -> RunResult:
    if not warnings:
        return result
    return RunResult(result.environment, result.action, result.dry_run, result.migrations,
                     (*warnings, *result.notices), result.skipped)


def _warn(progress: Progress | None, warnings: list[str]) -> None:
    if progress is not None:
        for warning in warnings:
            progress("warning", warning)


def validate(environment: EnvironmentRef = None, *, config: PathLike = None) -> ValidateResult:
    """Check files, names, every environment's templates, the config and the database."""
    from cryomigrate.validation import validate as run_validation

    return run_validation(config, environment)


def new_migration(name: str, *, sql: bool = False, config: PathLike = None,
                  environment: str | None = None, repeatable: bool = False) -> NewResult:
    """Create the next-numbered migration file, numbered like the folder's latest; with
    ``repeatable``, the repeatable migration ``R_<name>``."""
    from cryomigrate.scaffold import new_migration as scaffold

    return scaffold(name, sql=sql, config=config, environment=environment,
                    repeatable=repeatable)


# -- production safety (DESIGN 10) -------------------------------------------------------

def lint(environment: EnvironmentRef = None, *, config: PathLike = None,
         all_migrations: bool = False) -> LintResult:
    """Lint the pending migrations' SQL (every migration with ``all_migrations``) as
    rendered for the environment; PolicyRefused (with the result) when the environment's
    policies refuse what was found."""
    from cryomigrate.lint import LintResult, lint_migrations

    project = open_project(config, environment)
    env = project.env
    with connect(env, read_only=True) as (backend, tracker):
        files = list(project.files)
        if all_migrations:
            files += project.repeatables
        else:
            history = tracker.read_all()
            files = [f for f in files if f.version not in history]
            files += repeatables.to_apply(project.repeatables, project.files, tracker, env,
                                          files)
        dialect = backend.dialect
    migrations = [_load(f, env, reversible=False) for f in files]
    found = lint_migrations(env, dialect, migrations, use_squawk=True, require_squawk=True)
    refused = policies.lint_refusals(env, len(found.findings), found.destructive)
    result = LintResult(found.environment, found.findings, found.destructive, found.notes,
                        tuple(refused))
    if refused:
        from cryomigrate.errors import PolicyRefused

        raise PolicyRefused("; ".join(refused), result=result)
    return result


def verify(environment: EnvironmentRef = None, *, config: PathLike = None,
           progress: Progress | None = None) -> SnapshotCheck:
    """Apply, roll back, compare and re-apply every migration on a scratch database."""
    from cryomigrate.snapshot.verify import verify as run_verify

    project = open_project(config, environment)
    migrations = [_load(f, project.env, reversible=False) for f in project.files]
    return run_verify(project.env, migrations, progress)


def drift(environment: EnvironmentRef = None, *, config: PathLike = None) -> SnapshotCheck:
    """Replay the applied migrations on a scratch database and compare its schema with the
    environment's; writes nothing to the environment."""
    from cryomigrate.snapshot.drift import drift as run_drift

    project = open_project(config, environment)
    return run_drift(project.env, project.files, project.repeatables,
                     lambda f: _load(f, project.env, reversible=False))
