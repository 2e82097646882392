"""Open what every command starts from: the environment, its migration files, a backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryomigrate.backends import Backend, ConnectOptions, open_backend
from cryomigrate.config import Environment, load_config
from cryomigrate.discovery import MigrationFile, scan
from cryomigrate.tracker import Tracker

PathLike = str | os.PathLike[str] | None


@dataclass(frozen=True)
class Project:
    env: Environment
    files: list[MigrationFile]


def open_project(config: PathLike = None, environment: str | None = None) -> Project:
    env = load_config(config).environment(environment)
    return Project(env, scan(env.migrations_dir))


@contextmanager
def connect(env: Environment, *, read_only: bool = False,
            lock_wait: float = 60) -> Iterator[tuple[Backend, Tracker]]:
    """A backend and tracker for ``env``; ``read_only`` never creates a database or table."""
    options = ConnectOptions(
        base_dir=env.root, lock_wait_ms=round(lock_wait * 1000),
        lock_timeout_ms=env.lock_timeout_ms, statement_timeout_ms=env.statement_timeout_ms,
        read_only=read_only, lock_name=env.history_table, pooler=env.pooler,
    )
    backend = open_backend(env.database, options)
    try:
        yield backend, Tracker(backend, env.history_table, env.name)
    finally:
        backend.close()
