"""Helpers for the concurrency, fault and pooler tests: real CLI subprocesses, bounded waits.

A test that kills or races runs needs real processes, not CliRunner: a SIGKILL must take
the whole run down with its connection, and six runs must really hold six connections.
Every wait here is bounded so that a bug shows up as a failure, never as a hung suite.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import PG_ADMIN_URL, PgDatabase, Project

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT = 120.0


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("CRYOMIGRATE_CONFIG", None)
    env.pop("CRYOMIGRATE_ENV", None)
    env.update(extra or {})
    return env


def cli_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cryomigrate", "--config", str(config), *args]


def spawn(config: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[str]:
    """Start ``cryomigrate --config CONFIG ARGS`` in its own process."""
    return subprocess.Popen(cli_command(config, *args), cwd=config.parent, env=cli_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout: float = CLI_TIMEOUT) -> Completed:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=10)
        raise AssertionError(
            f"cryomigrate did not finish within {timeout}s\n{stdout}\n{stderr}"
        ) from None
    return Completed(process.returncode, stdout, stderr)


def run(config: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = CLI_TIMEOUT) -> Completed:
    return finish(spawn(config, *args, env=env), timeout)


def finish_all_ok(processes: list[subprocess.Popen[str]]) -> None:
    """Wait for every process, then assert that each one exited 0."""
    results = [finish(p) for p in processes]
    for result in results:
        assert result.returncode == 0, result.output


def run_at_once(config: Path, runs: int, *args: str) -> None:
    """Start ``runs`` copies of ``cryomigrate ARGS`` together; every one must exit 0."""
    finish_all_ok([spawn(config, *args) for _ in range(runs)])


def status_states(config: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``status --format json`` as {version: state}, asserting it is one JSON document."""
    result = run(config, "status", "--format", "json", env=env)
    assert result.returncode == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return {m["version"]: m["state"] for m in document["migrations"]}


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               process: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition`` every 20 ms; fail (never hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            stdout, stderr = process.communicate(timeout=10)
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}\n"
                                 f"{stdout}\n{stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# A Python migration that creates its table, says so through a marker file, then waits
# for a release file (or a timeout) while its transaction is still open. Tests use it to
# kill, block or race a run at a known point inside a migration. ``{n}`` is the version.
GATED_PY = '''
"""Create table t{n}, then wait inside the transaction."""
import os
import pathlib
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def apply(conn, environment):
    conn.sql("CREATE TABLE t{n} (id INTEGER)").execute()
    conn.sql("INSERT INTO effects (version) VALUES ({n})").execute()
    (ROOT / "inside_{n}").touch()
    deadline = time.monotonic() + float(os.environ.get("CM_GATE_SECONDS", "0"))
    while time.monotonic() < deadline and not (ROOT / "release").exists():
        time.sleep(0.02)


def rollback(conn, environment):
    conn.sql("DROP TABLE t{n}").execute()
'''

EFFECTS_SQL = """
-- cryomigrate:apply
CREATE TABLE effects (version INTEGER NOT NULL);
-- cryomigrate:rollback
DROP TABLE effects;
"""


def assert_each_effect_once(project: Project, count: int) -> None:
    """Table effects has ``count`` rows and no version twice: no migration ran twice."""
    assert project.query("SELECT version, count(*) FROM effects GROUP BY version "
                         "HAVING count(*) <> 1") == []
    assert project.query("SELECT count(*) FROM effects") == [(count,)]


@contextlib.contextmanager
def run_held_inside_gate(config: Path) -> Iterator[None]:
    """For the whole block, an ``apply`` sits inside the gated migration 001 (GATED_PY with
    n=1), holding the run lock; then it is released and must finish with exit 0."""
    holder = spawn(config, "apply", env={"CM_GATE_SECONDS": "60"})
    try:
        wait_until((config.parent / "inside_1").exists, 60, "the first run to enter 001",
                   holder)
        yield
    finally:
        (config.parent / "release").touch()
        first = finish(holder)
    assert first.returncode == 0, first.output


def sigkill_inside_gate(config: Path) -> None:
    """Start ``apply`` and SIGKILL it while it is inside the gated migration 001."""
    process = spawn(config, "apply", env={"CM_GATE_SECONDS": "60"})
    wait_until((config.parent / "inside_1").exists, 60, "the run to enter 001", process)
    os.kill(process.pid, signal.SIGKILL)
    finish(process, timeout=30)


# ---------------------------------------------------------------------------------------
# Supabase-style prerequisites and the cluster-wide state real migrations change


def run_sql_file(url: str, path: Path) -> None:
    """Run a prerequisite file (a stub) as psql would: one script, autocommit.

    The Supabase stub creates cluster-wide roles where missing and grants them to each
    other; another test run on the same server (or a test that creates roles) may create
    the same role or grant or update one of those catalog rows at the same moment (a role
    that "already exists" after the stub found it missing, a duplicate key in pg_authid or
    pg_auth_members, "tuple concurrently updated"). The
    script is one implicit transaction and idempotent, so it is simply run again.
    """
    import psycopg

    for attempt in range(4):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(path.read_text(encoding="utf-8"))  # type: ignore[arg-type]
            return
        except (psycopg.errors.InternalError, psycopg.errors.UniqueViolation,
                psycopg.errors.DuplicateObject) as exc:
            raced = "concurrently" in str(exc) or "pg_auth" in str(exc) \
                or isinstance(exc, psycopg.errors.DuplicateObject)
            if not raced or attempt == 3:
                raise
            time.sleep(0.2 * (attempt + 1))


cluster_lock_held: list[str] = []  # the test holding the cluster lock (conftest.py)


def require_cluster_lock() -> None:
    """Fail a test that changes the cluster without the lock: a fixture reached only
    through ``request.getfixturevalue`` escapes conftest's marking by fixture name."""
    import pytest

    if not cluster_lock_held:
        pytest.fail("this test changes state outside its own database (roles, settings of "
                    "other databases): mark it CLUSTER_WIDE (tests/conftest.py)")


# Objects named cm_* belong to one test each (conftest's cm_test_* databases, roles such
# as cm_role_*): under pytest-xdist other tests make, configure and drop theirs meanwhile,
# so they are neither compared nor restored here.
_CLUSTER_SETTINGS = r"""
SELECT d.datname, r.rolname, s.setconfig
FROM pg_db_role_setting s
LEFT JOIN pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE (s.setdatabase = 0 OR d.datname NOT LIKE 'cm\_%')
  AND (s.setrole = 0 OR r.rolname NOT LIKE 'cm\_%')
"""

ClusterState = tuple[dict[tuple[str | None, str | None], dict[str, str]], set[str]]


def _cluster_state(admin: Any) -> ClusterState:
    settings = {(datname, rolname): dict(item.split("=", 1) for item in config or [])
                for datname, rolname, config in admin.execute(_CLUSTER_SETTINGS)}
    roles = {row[0] for row in admin.execute(
        r"SELECT rolname FROM pg_roles WHERE rolname NOT LIKE 'cm\_%'")}
    return settings, roles


def _alter_target(datname: str | None, rolname: str | None) -> Any:
    from psycopg import sql

    if rolname is None:
        return sql.SQL("ALTER DATABASE {}").format(sql.Identifier(datname or ""))
    if datname is None:
        return sql.SQL("ALTER ROLE {}").format(sql.Identifier(rolname))
    return sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(rolname),
                                                          sql.Identifier(datname))


def _restore(admin: Any, before: ClusterState, after: ClusterState) -> None:
    from psycopg import sql

    for datname, rolname in set(before[0]) | set(after[0]):
        old = before[0].get((datname, rolname), {})
        new = after[0].get((datname, rolname), {})
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                change = sql.SQL("RESET {}").format(sql.Identifier(key)) if key not in old \
                    else sql.SQL("SET {} = {}").format(sql.Identifier(key),
                                                       sql.Literal(old[key]))
                admin.execute(sql.SQL("{} {}").format(_alter_target(datname, rolname), change))


@contextlib.contextmanager
def cluster_restored(database: PgDatabase) -> Iterator[None]:
    """Undo what the block changed outside ``database`` (settings of other databases and
    of roles: ``ALTER DATABASE postgres SET``, ``ALTER ROLE authenticator SET``; roles it
    created: a Supabase stub's ``anon``, ``authenticated``, ...), then assert that the
    cluster holds exactly what it held before, whatever that was.

    Only a test holding the cluster lock may do this (CLUSTER_WIDE, conftest.py): run
    beside another, its objects in its own database would keep the other's new roles
    from being dropped, as CI once saw."""
    import psycopg
    from psycopg import sql

    require_cluster_lock()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        before = _cluster_state(admin)
    try:
        yield
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            after = _cluster_state(admin)
            _restore(admin, before, after)
        new_roles = sorted(after[1] - before[1])
        if new_roles:
            names = sql.SQL(", ").join(sql.Identifier(r) for r in new_roles)
            with psycopg.connect(database.url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(names))
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP ROLE {}").format(names))
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        assert _cluster_state(admin) == before


def execute(url: str, query: str) -> None:
    """Run a statement that returns no rows (Project.query fetches rows)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query)  # type: ignore[arg-type]


def alter_database(url: str, setting: str) -> None:
    """``ALTER DATABASE <the database of url> SET <setting>``: sessions opened after it
    start with it, as they would on a database configured that way."""
    execute(url, f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET {setting}')
