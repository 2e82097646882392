"""Open what every command starts from: the environment, its migration files, a backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from cryomigrate.backends import Backend, ConnectOptions, open_backend
from cryomigrate.config import Environment, load_config
from cryomigrate.discovery import MigrationFile, scan_project
from cryomigrate.errors import InputError
from cryomigrate.tracker import Tracker

PathLike = str | os.PathLike[str] | None


@dataclass(frozen=True)
class Project:
    """An environment and its migration files, as one command sees them."""
    env: Environment
    files: list[MigrationFile]  # versioned, by version
    repeatables: list[MigrationFile] = field(default_factory=list)  # R_<name>, by name


# An environment by name, or one already resolved: a fleet runs each of its databases
# as an Environment of its own (``dataclasses.replace(env, database=url)``).
EnvironmentRef = str | Environment | None


class Watcher(Protocol):
    """Told of every backend opened and closed in its context; a fleet watches its
    worker threads' backends so that Ctrl-C can cancel what they are running."""

    def opened(self, backend: Backend) -> None: ...

    def closed(self, backend: Backend) -> None: ...


watcher: ContextVar[Watcher | None] = ContextVar("cryomigrate_watcher", default=None)


def resolve_environment(config: PathLike, environment: EnvironmentRef, *,
                        strict_vars: bool = True) -> Environment:
    if isinstance(environment, Environment):
        return environment
    if environment is not None and not isinstance(environment, str):
        raise InputError(f"environment must be an environment's name (a str), not "
                         f"{type(environment).__name__} {environment!r}")
    return load_config(config).environment(environment, strict_vars=strict_vars)


def check_lock_wait(value: object) -> float:
    """``lock_wait`` as the library takes it: seconds, as ``--lock-wait`` allows them."""
    from cryomigrate.options import MAX_LOCK_WAIT_S

    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= MAX_LOCK_WAIT_S:  # NaN fails every comparison
        raise InputError(f"lock_wait must be a number of seconds from 0 to {MAX_LOCK_WAIT_S}, "
                         f"not {value!r}")
    return float(value)


def open_project(config: PathLike = None, environment: EnvironmentRef = None) -> Project:
    env = resolve_environment(config, environment)
    found = scan_project(env.migrations_dir, env.format)
    return Project(env, found.files, found.repeatables)


@contextmanager
def connect(env: Environment, *, read_only: bool = False,
            lock_wait: float = 60) -> Iterator[tuple[Backend, Tracker]]:
    """A backend and tracker for ``env``; ``read_only`` never creates a database or table."""
    options = ConnectOptions(
        base_dir=env.root, lock_wait_ms=round(check_lock_wait(lock_wait) * 1000),
        lock_timeout_ms=env.lock_timeout_ms, statement_timeout_ms=env.statement_timeout_ms,
        read_only=read_only, lock_name=env.history_table, pooler=env.pooler,
        service_key=env.service_key,
    )
    if env.is_fleet:
        raise InputError(
            f"environment '{env.name}' is a fleet of {len(env.databases or ())} databases; "
            "run it with the CLI, or with cryomigrate.fleet (apply_fleet, fleet_status, ...)")
    backend = open_backend(env.database, options)
    seen = watcher.get()
    if seen is not None:
        seen.opened(backend)
    try:
        yield backend, Tracker(backend, env.history_table, env.name)
    finally:
        if seen is not None:
            seen.closed(backend)
        backend.close()
