"""A scratch database on the environment's server (SQLite: a temporary file), dropped in
every case, Ctrl-C included.

PostgreSQL: created from a connection to the environment's own database (so the role
needs CREATEDB, and nothing is written in that database) and dropped from a new
connection, ``WITH (FORCE)``, so that a session the run left behind (a Ctrl-C in the
middle of a statement) cannot keep it alive. Behind a transaction pooler a new database is
not reachable: verify and drift need a direct connection.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cryomigrate.backends import ConnectOptions, open_backend
from cryomigrate.config import Environment
from cryomigrate.errors import InputError
from cryomigrate.sqlscript import prepare

PREFIX = "cryomigrate_scratch_"


@contextlib.contextmanager
def scratch_environment(env: Environment) -> Iterator[Environment]:
    """``env`` pointed at a new, empty database for the length of the block."""
    if env.database.split(":", 1)[0].lower() == "sqlite":
        folder = tempfile.mkdtemp(prefix="cryomigrate-scratch-")
        try:
            scratch = replace(env, database=f"sqlite:///{Path(folder).resolve()}/scratch.db")
            _setup(scratch)
            yield scratch
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if env.database.split(":", 1)[0].lower() not in ("postgresql", "postgres"):
        raise InputError(f"environment '{env.name}': a scratch database needs a direct "
                         "connection (postgresql://... or sqlite:///...)")
    name = PREFIX + secrets.token_hex(6)
    _admin(env, f'CREATE DATABASE "{name}"')
    try:
        parts = urlsplit(env.database)
        scratch = replace(env, database=urlunsplit(parts._replace(path="/" + name)))
        _setup(scratch)
        yield scratch
    finally:
        _admin(env, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(env: Environment, statement: str) -> None:
    backend = open_backend(env.database, ConnectOptions(base_dir=env.root))
    try:
        backend.query(statement)
    finally:
        backend.close()


def _setup(env: Environment) -> None:
    """The environment's ``scratch_setup`` SQL (e.g. a Supabase stub), statement by
    statement outside a transaction, on a connection of its own: what it sets for the
    database (``ALTER DATABASE ... SET search_path``) holds only for later connections."""
    if env.scratch_setup is None:
        return
    try:
        text = env.scratch_setup.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"scratch_setup: cannot read {env.scratch_setup}: {exc}") from None
    backend = open_backend(env.database, ConnectOptions(base_dir=env.root))
    try:
        backend.run_script(prepare(text, origin=env.scratch_setup.name, transactional=False))
    finally:
        backend.close()
