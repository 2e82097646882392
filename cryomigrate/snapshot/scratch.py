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
from urllib.parse import parse_qsl, urlsplit, urlunsplit

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
    url = _scratch_url(env, name := PREFIX + secrets.token_hex(6))
    try:
        _admin(env, f'CREATE DATABASE "{name}"')
    except KeyboardInterrupt:
        _drop(env, name)  # the server may have created it before the cancel reached it
        raise
    try:
        scratch = replace(env, database=url)
        _check_is_scratch(scratch, name)
        _setup(scratch)
        yield scratch
    finally:
        _drop(env, name)


def _drop(env: Environment, name: str) -> None:
    """Drop the scratch database; a Ctrl-C landing meanwhile is raised once it is gone."""
    statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    try:
        _admin(env, statement)
    except KeyboardInterrupt:
        _admin(env, statement)
        raise


def _scratch_url(env: Environment, name: str) -> str:
    """The environment's URL with the scratch database in its path. A query naming the
    database (``?dbname=``, ``?service=``) would win over the path in libpq, and the
    replay would then run against the environment's own database: refused."""
    parts = urlsplit(env.database)
    keys = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if keys & {"dbname", "service"}:
        raise InputError(
            f"environment '{env.name}': its database URL names the database in the query "
            "(dbname= or service=); verify and drift need it in the path "
            "(postgresql://host/dbname) to point a copy elsewhere")
    return urlunsplit(parts._replace(path="/" + name))


def _check_is_scratch(env: Environment, name: str) -> None:
    """Belt and braces before anything is applied or rolled back there."""
    backend = open_backend(env.database, ConnectOptions(base_dir=env.root))
    try:
        found = backend.query("SELECT pg_catalog.current_database() AS name").data[0]["name"]
    finally:
        backend.close()
    if found != name:
        raise InputError(f"environment '{env.name}': the scratch connection reached "
                         f"database {found!r}, not {name!r}; nothing was run")


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
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"{env.where('scratch_setup')}: cannot read {env.scratch_setup}: "
                         f"{reason}") from None
    backend = open_backend(env.database, ConnectOptions(base_dir=env.root))
    try:
        backend.run_script(prepare(text, origin=env.scratch_setup.name, transactional=False))
    finally:
        backend.close()
