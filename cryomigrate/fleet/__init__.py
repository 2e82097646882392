"""Fleets (DESIGN 11): one command on every database of a fleet environment.

The library API of fleets, one function per command, mirroring ``cryomigrate.api``::

    from cryomigrate.fleet import FleetOptions, apply_fleet
    result = apply_fleet(environment="tenants", options=FleetOptions(parallel=8))

Each returns a :class:`FleetResult` when every database succeeded, and raises
``FleetFailed`` (exit code: the first failed database's, in configuration order) or
``Interrupted`` otherwise, with the FleetResult as the exception's ``result``. Each
database runs the single-database api function, as if alone. A single-database api
function given a fleet environment refuses it (exit 2) rather than pick one database.

A command that gains fleet support later (lint, verify, drift) is one more function
here: a ``Work`` that calls its api function with the member environment.
"""

from __future__ import annotations

from typing import Any

from cryomigrate import api
from cryomigrate.config import Environment
from cryomigrate.errors import CryomigrateError
from cryomigrate.fleet.pool import FleetOptions, run_fleet
from cryomigrate.fleet.result import DatabaseOutcome, FleetResult
from cryomigrate.models import RunResult, StatusResult
from cryomigrate.policies import Confirm, check_confirmed, check_rollback_allowed
from cryomigrate.session import EnvironmentRef, PathLike, open_project, resolve_environment

__all__ = [
    "DatabaseOutcome", "FleetOptions", "FleetResult", "apply_fleet", "drift_fleet",
    "fleet_history", "fleet_status", "is_fleet", "lint_fleet", "rollback_fleet",
    "validate_fleet", "verify_fleet",
]

Version = str | int | None
DEFAULT_OPTIONS = FleetOptions()  # frozen, so one shared default is safe
Progress = Any  # the api functions' progress callback


def is_fleet(environment: EnvironmentRef = None, *, config: PathLike = None) -> bool:
    """Whether the environment lists databases (``databases:`` / ``databases_file:``)."""
    return resolve_environment(config, environment, strict_vars=False).is_fleet


def fleet_status(environment: EnvironmentRef = None, *, config: PathLike = None,
                 options: FleetOptions = DEFAULT_OPTIONS) -> FleetResult:
    env = _fleet(config, environment)

    def work(member: Environment, progress: Progress) -> StatusResult:
        return api.get_migration_status(member, config=config)

    return run_fleet(env, "status", work, options,
                     lambda _, result: _newest(result) if result else (False, None))


def apply_fleet(target_version: Version = None, environment: EnvironmentRef = None, *,
                config: PathLike = None, dry_run: bool = False, confirm: Confirm = False,
                lock_wait: float = 60, options: FleetOptions = DEFAULT_OPTIONS) -> FleetResult:
    """Apply pending migrations on every database; confirmation, if the environment
    requires it, is asked once for the whole fleet, before any database is touched."""
    env = _fleet(config, environment)
    files = open_project(config, env).files
    target = api._version(target_version, "target_version")
    labels = [f.label for f in files if target is None or f.version <= target]
    confirmed = _confirm_once(env, "apply", labels, confirm, dry_run)

    def work(member: Environment, progress: Progress) -> RunResult:
        return api.apply_migrations(target_version, member, config=config, dry_run=dry_run,
                                    confirm=confirmed, lock_wait=lock_wait, progress=progress)

    def version_of(member: Environment, result: Any) -> tuple[bool, str | None]:
        # Applied up to the end, a database holds exactly the files (anything else, a
        # missing file or a dirty row, blocks apply): no need to ask it.
        if result is not None and target is None and not dry_run:
            return True, files[-1].version_text if files else None
        return _status_after(member, config)

    return run_fleet(env, "apply", work, options, version_of)


def rollback_fleet(target_version: Version = None, environment: EnvironmentRef = None, *,
                   steps: int | None = None, config: PathLike = None, dry_run: bool = False,
                   confirm: Confirm = False, lock_wait: float = 60,
                   options: FleetOptions = DEFAULT_OPTIONS) -> FleetResult:
    steps = api._steps(steps)
    env = _fleet(config, environment)
    check_rollback_allowed(env)
    files = open_project(config, env).files
    target = api._version(target_version, "target_version")
    above = [f.label for f in files if target is None or f.version > target]
    labels = above[-steps:] if steps is not None else above
    confirmed = _confirm_once(env, "roll back", labels[::-1], confirm, dry_run)

    def work(member: Environment, progress: Progress) -> RunResult:
        return api.rollback_migrations(target_version, member, steps=steps, config=config,
                                       dry_run=dry_run, confirm=confirmed,
                                       lock_wait=lock_wait, progress=progress)

    return run_fleet(env, "rollback", work, options,
                     lambda member, _: _status_after(member, config))


def validate_fleet(environment: EnvironmentRef = None, *, config: PathLike = None,
                   options: FleetOptions = DEFAULT_OPTIONS) -> FleetResult:
    env = _fleet(config, environment)
    return run_fleet(env, "validate", lambda member, _: api.validate(member, config=config),
                     options)


def fleet_history(environment: EnvironmentRef = None, *, config: PathLike = None,
                  limit: int | None = None, options: FleetOptions = DEFAULT_OPTIONS
                  ) -> FleetResult:
    env = _fleet(config, environment)
    return run_fleet(env, "history",
                     lambda member, _: api.get_history(member, config=config, limit=limit),
                     options)


def lint_fleet(environment: EnvironmentRef = None, *, config: PathLike = None,
               all_migrations: bool = False, options: FleetOptions = DEFAULT_OPTIONS
               ) -> FleetResult:
    """Each database's pending migrations linted, as ``cryomigrate lint`` would alone."""
    env = _fleet(config, environment)
    return run_fleet(env, "lint", lambda member, _: api.lint(
        member, config=config, all_migrations=all_migrations), options)


def verify_fleet(environment: EnvironmentRef = None, *, config: PathLike = None,
                 options: FleetOptions = DEFAULT_OPTIONS) -> FleetResult:
    """``verify`` on each database's server, each on a scratch database of its own."""
    env = _fleet(config, environment)
    return run_fleet(env, "verify", lambda member, progress: api.verify(
        member, config=config, progress=progress), options)


def drift_fleet(environment: EnvironmentRef = None, *, config: PathLike = None,
                options: FleetOptions = DEFAULT_OPTIONS) -> FleetResult:
    """``drift`` of each database against its own applied migrations."""
    env = _fleet(config, environment)
    return run_fleet(env, "drift", lambda member, _: api.drift(member, config=config),
                     options)


def _fleet(config: PathLike, environment: EnvironmentRef) -> Environment:
    from cryomigrate.errors import InputError

    env = resolve_environment(config, environment)
    if not env.is_fleet:
        raise InputError(f"environment '{env.name}' has one database, not a fleet "
                         "(databases: / databases_file:); use cryomigrate.api")
    return env


def _confirm_once(env: Environment, verb: str, labels: list[str], confirm: Confirm,
                  dry_run: bool) -> Confirm:
    """Ask once, for the whole fleet, before any database starts; never from a worker
    thread, where a prompt would be unanswerable after Ctrl-C. The list is what each
    database may run: every one runs only what it lacks."""
    if dry_run or confirm is True or not callable(confirm) \
            or not env.policies.require_confirmation or not labels:
        return confirm
    check_confirmed(env, verb, labels, confirm)  # raises PolicyRefused unless confirmed
    return True


def _newest(result: StatusResult) -> tuple[bool, str | None]:
    """The newest version with a history row (applied, modified or dirty)."""
    held = [m for m in result.migrations if m.state != "pending" and m.version]
    newest = max(held, key=lambda m: int(m.version or 0), default=None)
    return True, newest.version if newest else None


def _status_after(member: Environment, config: PathLike) -> tuple[bool, str | None]:
    """Read the version back where the run's own result cannot tell it (a target, a
    rollback, a dry run); unknown if that read fails."""
    try:
        return _newest(api.get_migration_status(member, config=config))
    except CryomigrateError:
        return False, None
