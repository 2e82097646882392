"""Shared helpers for the core-engine behaviour tests (fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from cryomigrate.cli import main
from tests.conftest import Project


def table_sql(name: str) -> str:
    """A reversible SQL migration creating table ``name``."""
    return (f"-- cryomigrate:apply\nCREATE TABLE {name} (id BIGINT PRIMARY KEY);\n"
            f"-- cryomigrate:rollback\nDROP TABLE {name};\n")


def add_tables(project: Project, *specs: str) -> None:
    """``add_tables(p, "001_t1", "002_t2")`` adds reversible migrations creating t1, t2."""
    for spec in specs:
        project.add(f"{spec}.sql", table_sql(spec.split("_", 1)[1]))


def python_table_py(name: str) -> str:
    """A Python migration creating table ``name`` through ``conn.sql``."""
    return ("def apply(conn, environment):\n"
            f"    conn.sql('CREATE TABLE {name} (id int)').execute()\n")


def add_python_tables(project: Project, *specs: str) -> None:
    """``add_python_tables(p, "001_a", "002_b")`` adds Python migrations creating a, b."""
    for spec in specs:
        project.add(f"{spec}.py", python_table_py(spec.split("_", 1)[1]))


def assert_clean_exit(result: Result, code: int) -> None:
    """The exit code is ``code`` and, unless it is 1, no traceback reached the user."""
    assert result.exit_code == code, (
        f"exit {result.exit_code} != {code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}\nexception: {result.exception!r}"
    )
    if code != 1:
        assert "Traceback" not in result.stdout + result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            repr(result.exception)


def json_doc(result: Result) -> dict[str, Any]:
    """stdout holds exactly one JSON document (json.loads rejects trailing text)."""
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def assert_json_error(result: Result, code: int) -> dict[str, Any]:
    assert_clean_exit(result, code)
    document = json_doc(result)
    assert document["error"]["code"] == code
    assert document["error"]["message"]
    return document


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            input: str | None = None) -> Result:
    """The CLI without the fixture's --config, to test how the config is found."""
    import os

    runner = CliRunner()
    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=True)
    finally:
        os.chdir(previous)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def config_with(project: Project, body: str = "", *, history_table: str | None = None
                ) -> None:
    """Write a config whose development database is the project's, plus ``body`` lines
    (indented as keys of the development environment) and, if given, ``history_table``."""
    extra = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    top = f"history_table: {history_table}\n" if history_table else ""
    project.config.write_text(
        f"{top}environments:\n  development:\n"
        f"    database: {project.url}\n{extra}\n", encoding="utf-8")


def sqlite_project_at(root: Path) -> Project:
    """A SQLite project in ``root``, for tests that need two projects at once."""
    project = Project(root, "sqlite:///app.db", "sqlite")
    project.migrations.mkdir(parents=True)
    project.write_config()
    return project


def execute(project: Project, sql: str) -> None:
    """Run a statement that returns no rows, as a person at a database console would."""
    if project.dialect == "sqlite":
        with sqlite3.connect(project.root / "app.db") as db:
            db.execute(sql)
        return
    import psycopg

    with psycopg.connect(project.url, autocommit=True) as conn:
        conn.execute(sql.encode())


def assert_untouched(project: Project) -> None:
    """Nothing was written: no SQLite file was created, no PostgreSQL table exists."""
    if project.dialect == "sqlite":
        assert not (project.root / "app.db").exists()
    else:
        assert project.tables() == set()


def history_versions(project: Project) -> list[str]:
    if "cryomigrate_history" not in project.tables():
        return []
    return [row[0] for row in project.history()]


@contextmanager
def hold_run_lock(project: Project) -> Iterator[None]:
    """Hold the lock a run takes, the way another run would."""
    if project.dialect == "sqlite":
        holder = sqlite3.connect(project.root / "app.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg

    digest = hashlib.sha256(b"cryomigrate:cryomigrate_history").digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    with psycopg.connect(project.url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.rollback()
