"""Fixtures: a throw-away project folder on a real database, SQLite or PostgreSQL.

The same test body runs on both through the ``db`` fixture. Each PostgreSQL test gets its
own fresh database. In CI (CI=true) a missing PostgreSQL fails the tests; elsewhere they
are skipped, so a laptop without a server still runs the SQLite half.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cryomigrate.cli import main

# A suite started in the background (`nohup make test &`, `cmd &` in a script) inherits
# SIGINT ignored, and so would every cryomigrate it starts, which then never sees the
# Ctrl-C the interrupt tests send. A handler here is reset to the default in a child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _private_config_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests (and the processes they start) cache configs in a folder of their own, never
    in the user's ~/.cache."""
    previous = os.environ.get("CRYOMIGRATE_CACHE_DIR")
    os.environ["CRYOMIGRATE_CACHE_DIR"] = str(tmp_path_factory.mktemp("config-cache"))
    yield
    if previous is None:
        os.environ.pop("CRYOMIGRATE_CACHE_DIR", None)
    else:
        os.environ["CRYOMIGRATE_CACHE_DIR"] = previous


PG_ADMIN_URL = os.environ.get("CRYOMIGRATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means: no server to test against
        return str(exc)


_PG_PROBLEM: str | bool | None = False


def require_postgres() -> None:
    global _PG_PROBLEM
    if _PG_PROBLEM is False:
        _PG_PROBLEM = _pg_available()
    if _PG_PROBLEM:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {_PG_PROBLEM}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


# Tests that change state outside their own database (roles; settings of other databases and
# of roles: a Supabase stub, ``ALTER DATABASE postgres SET``) carry this mark, or use a
# fixture named in _CLUSTER_WIDE_FIXTURES. Each holds an advisory lock in the admin
# database for its whole run, fixtures included, so that under pytest-xdist (and beside
# other test runs on the same server) none sees another's changes half done and each
# finds the cluster as the previous one left it. A lock rather than an xdist_group:
# pytest 9.2 silently broke ``--dist loadgroup`` (pytest-xdist 3.8).
CLUSTER_WIDE = pytest.mark.cluster_wide
_CLUSTER_WIDE_FIXTURES = {"supabase"}  # test_supabase.py: the Supabase stub's roles
_CLUSTER_LOCK_KEY = 0x63727930_636C7573  # any constant; advisory locks are per database
_CLUSTER_LOCK_WAIT = "300s"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _CLUSTER_WIDE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(CLUSTER_WIDE)


@pytest.fixture(autouse=True)
def _cluster_wide_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """Autouse, so set up before (and torn down after) the test's other fixtures."""
    if request.node.get_closest_marker("cluster_wide") is None:
        yield
        return
    require_postgres()
    import psycopg

    # Recorded in helpers_pg, which checks it: this file is loaded twice, as conftest and
    # as tests.conftest, so a variable here would be two variables.
    from tests import helpers_pg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as lock:
        lock.execute(f"SET lock_timeout = '{_CLUSTER_LOCK_WAIT}'")
        lock.execute("SELECT pg_advisory_lock(%s)", (_CLUSTER_LOCK_KEY,))
        helpers_pg.cluster_lock_held.append(request.node.nodeid)
        try:
            yield
        finally:
            helpers_pg.cluster_lock_held.clear()


@dataclass
class PgDatabase:
    name: str
    url: str


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    require_postgres()
    import psycopg

    name = f"cm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield PgDatabase(name, f"{base}/{name}")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Project:
    """A migrations project in a temporary folder, with helpers to drive and inspect it."""

    root: Path
    url: str
    dialect: str
    env_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.root / "environments.yaml"

    @property
    def migrations(self) -> Path:
        return self.root / "migrations"

    def write_config(self, text: str | None = None) -> None:
        if text is None:
            text = f"""
                environments:
                  development:
                    database: {self.url}
                    vars: {{app_schema: public}}
            """
        self.config.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")

    def add(self, filename: str, content: str | bytes) -> Path:
        path = self.migrations / filename
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
        return path

    def cli(self, *args: str, input: str | None = None, env: dict[str, str] | None = None
            ) -> Result:
        runner = CliRunner()
        return runner.invoke(main, ["--config", str(self.config), *args], input=input,
                             env=env, catch_exceptions=True)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.dialect == "sqlite":
            path = self.url.removeprefix("sqlite:///")
            with sqlite3.connect(path if path.startswith("/") else self.root / path) as db:
                return db.execute(sql).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]

    def tables(self) -> set[str]:
        if self.dialect == "sqlite":
            rows = self.query("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")
        else:
            rows = self.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        return {r[0] for r in rows}

    def history(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT version_text, name, state FROM cryomigrate_history "
                          "ORDER BY version")

    def journal(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT version, action, outcome FROM cryomigrate_history_journal "
                          "ORDER BY id")


def _make_project(tmp_path: Path, url: str, dialect: str) -> Project:
    project = Project(tmp_path, url, dialect)
    project.migrations.mkdir()
    project.write_config()
    return project


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """A project on each backend in turn: the same test body runs on both."""
    if request.param == "sqlite":
        return _make_project(tmp_path, "sqlite:///app.db", "sqlite")
    database: PgDatabase = request.getfixturevalue("pg_database")
    return _make_project(tmp_path, database.url, "postgresql")


@pytest.fixture
def sqlite_project(tmp_path: Path) -> Project:
    return _make_project(tmp_path, "sqlite:///app.db", "sqlite")


@pytest.fixture
def pg_project(tmp_path: Path, pg_database: PgDatabase) -> Project:
    return _make_project(tmp_path, pg_database.url, "postgresql")


def corpus_dir() -> Path | None:
    """../shared/corpus beside the project root: read in place, never copied."""
    path = Path(__file__).resolve().parents[2] / "shared" / "corpus"
    if path.is_dir():
        return path
    if IN_CI:
        pytest.fail(f"the shared corpus is missing at {path}")
    pytest.skip(f"the shared corpus is not at {path}")
    return None
