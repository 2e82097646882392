"""Runs: check everything first, targets and steps, dry runs, read-only status, locking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    assert_untouched,
    history_versions,
    hold_run_lock,
    json_doc,
)


@pytest.mark.parametrize("bad", [
    ("003_bad.py", "def rollback(conn, environment):\n    pass\n"),
    ("003_bad.py", "def apply(conn, environment)\n    pass\n"),
    ("003_bad.py", "import cryomigrate_no_such_module\n"),
    ("003_bad.sql.j2", "SELECT {{ vars.nope }};"),
    ("003_bad.sql", "CREATE TABLE x (id INTEGER);\nROLLBACK;"),
    ("003_bad.sql", b"SELECT '\xff';"),
])
def test_bad_migration_three_means_nothing_applied(project: Project,
                                                   bad: tuple[str, str | bytes]) -> None:
    add_tables(project, "001_t1", "002_t2")
    project.add(*bad)
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert bad[0] in result.stderr
    assert not {"t1", "t2"} & project.tables()
    assert history_versions(project) == []


def test_bad_migration_beyond_target_is_not_loaded(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_bad.py", "this is not python\n")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    assert history_versions(project) == ["001"]


def test_first_failure_stops_the_run_and_keeps_earlier(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    project.add("003_fails.sql", "CREATE TABLE t3 (id INTEGER);\nSELECT * FROM nowhere;")
    add_tables(project, "004_t4")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "003_fails.sql line 2" in result.stderr
    assert history_versions(project) == ["001", "002"]
    assert {"t1", "t2"} <= project.tables()
    assert not {"t3", "t4"} & project.tables()
    # Text output still says what was applied before the failure.
    assert "001_t1" in result.stdout and "002_t2" in result.stdout


def test_apply_target_includes_target(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2", "003_t3")
    assert_clean_exit(project.cli("apply", "--target", "002"), 0)
    assert history_versions(project) == ["001", "002"]
    assert_clean_exit(project.cli("apply"), 0)
    assert history_versions(project) == ["001", "002", "003"]


def test_apply_when_up_to_date_is_exit_0(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert "Nothing to do" in result.stdout
    assert len(project.journal()) == 1


def test_apply_with_no_migrations_is_exit_0(project: Project) -> None:
    result = project.cli("apply")
    assert_clean_exit(result, 0)


def test_rollback_steps(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2", "003_t3")
    assert_clean_exit(project.cli("apply"), 0)
    assert_clean_exit(project.cli("rollback", "--steps", "2"), 0)
    assert history_versions(project) == ["001"]
    assert "t1" in project.tables() and not {"t2", "t3"} & project.tables()


def test_rollback_target_keeps_target(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2", "003_t3")
    assert_clean_exit(project.cli("apply"), 0)
    assert_clean_exit(project.cli("rollback", "--target", "2"), 0)
    assert history_versions(project) == ["001", "002"]
    assert {"t1", "t2"} <= project.tables() and "t3" not in project.tables()


def test_rollback_rolls_back_newest_first(project: Project) -> None:
    project.add("001_parent.sql", "-- cryomigrate:apply\nCREATE TABLE parent (id INTEGER "
                "PRIMARY KEY);\n-- cryomigrate:rollback\nDROP TABLE parent;\n")
    project.add("002_child.sql", "-- cryomigrate:apply\nCREATE TABLE child (p INTEGER "
                "REFERENCES parent (id));\n-- cryomigrate:rollback\nDROP TABLE child;\n")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback", "--format", "json")
    assert_clean_exit(result, 0)
    assert [m["version"] for m in json_doc(result)["rolled_back"]] == ["002", "001"]


def test_full_rollback(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply"), 0)
    assert_clean_exit(project.cli("rollback"), 0)
    assert history_versions(project) == []
    assert not {"t1", "t2"} & project.tables()


def test_rollback_target_and_steps_together_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback", "--target", "1", "--steps", "1")
    assert_clean_exit(result, 2)
    assert history_versions(project) == ["001", "002"]


def test_more_steps_than_applied_migrations_is_exit_2_and_rolls_back_nothing(
        project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback", "--steps", "10")
    assert_clean_exit(result, 2)
    assert "--steps 10: only 2 migration(s) are applied" in result.stderr
    assert history_versions(project) == ["001", "002"]


def test_repair_marking_one_version_applied_and_another_pending_is_exit_2(
        project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    result = project.cli("repair", "--mark-applied", "2", "--mark-pending", "1")
    assert_clean_exit(result, 2)
    assert "not both" in result.stderr
    assert history_versions(project) == ["001"]


def test_nothing_up_to_the_target_does_not_say_the_database_is_up_to_date(
        project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    result = project.cli("apply", "--target", "1")
    assert_clean_exit(result, 0)
    assert "no migration is pending up to 001" in result.stdout, result.output
    assert "up to date" not in result.stdout
    assert_clean_exit(project.cli("apply"), 0)
    assert "up to date" in project.cli("apply").stdout


def test_rollback_nothing_applied_is_exit_0(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("rollback"), 0)


# --- dry runs and read-only commands --------------------------------------------------

DRY_SQL = """
    -- cryomigrate:apply
    CREATE TABLE dry (id INTEGER);
    -- cryomigrate:rollback
    DROP TABLE dry;
"""


def test_dry_run_apply_prints_plan_and_sql_and_writes_nothing(project: Project) -> None:
    project.add("001_dry.sql", DRY_SQL)
    project.add("002_py.py", "def apply(conn, environment):\n    raise SystemExit(9)\n")
    result = project.cli("apply", "--dry-run")
    assert_clean_exit(result, 0)
    assert "001_dry" in result.stdout and "002_py" in result.stdout
    assert "CREATE TABLE dry (id INTEGER);" in result.stdout
    assert "DROP TABLE" not in result.stdout
    assert_untouched(project)


def test_dry_run_json(project: Project) -> None:
    project.add("001_dry.sql", DRY_SQL)
    result = project.cli("apply", "--dry-run", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["dry_run"] is True
    assert document["applied"][0]["version"] == "001"
    assert "CREATE TABLE dry" in document["applied"][0]["sql"]
    assert_untouched(project)


def test_dry_run_with_existing_history_changes_nothing(project: Project) -> None:
    project.add("001_dry.sql", DRY_SQL)
    assert_clean_exit(project.cli("apply"), 0)
    add_tables(project, "002_t2")
    before = (project.history(), project.journal())
    assert_clean_exit(project.cli("apply", "--dry-run"), 0)
    rolled = project.cli("rollback", "--dry-run")
    assert_clean_exit(rolled, 0)
    assert "DROP TABLE dry;" in rolled.stdout
    assert (project.history(), project.journal()) == before
    assert "dry" in project.tables() and "t2" not in project.tables()


def test_status_never_creates_anything(project: Project) -> None:
    add_tables(project, "001_t1")
    result = project.cli("status")
    assert_clean_exit(result, 0)
    assert "pending" in result.stdout
    assert_untouched(project)


def test_history_and_validate_never_create_anything(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("history"), 0)
    assert_clean_exit(project.cli("validate"), 0)
    assert_untouched(project)


# --- timeouts fired inside a migration are that migration failing ---------------------

def test_statement_timeout_inside_migration_is_exit_1(pg_project: Project) -> None:
    pg_project.write_config(f"""
        environments:
          development:
            database: {pg_project.url}
            statement_timeout: 200ms
    """)
    pg_project.add("001_slow.sql", "CREATE TABLE s (id INTEGER);\nSELECT pg_sleep(5);")
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert "001_slow.sql" in result.stderr and "statement timeout" in result.stderr
    assert "s" not in pg_project.tables()
    assert pg_project.journal() == [("001", "apply", "failed")]


def test_lock_timeout_inside_migration_is_exit_1(pg_project: Project) -> None:
    import psycopg

    pg_project.write_config(f"""
        environments:
          development:
            database: {pg_project.url}
            lock_timeout: 200ms
    """)
    pg_project.add("001_busy.sql", "CREATE TABLE busy (id INTEGER);")
    assert_clean_exit(pg_project.cli("apply"), 0)
    pg_project.add("002_alter.sql", "ALTER TABLE busy ADD COLUMN note TEXT;")
    with psycopg.connect(pg_project.url) as holder:
        holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        result = pg_project.cli("apply", "--lock-wait", "30")
        holder.rollback()
    assert_clean_exit(result, 1)
    assert "002_alter.sql" in result.stderr and "lock timeout" in result.stderr
    assert history_versions(pg_project) == ["001"]


# --- the run lock ---------------------------------------------------------------------

def test_lock_wait_expiry_is_exit_5(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    add_tables(project, "002_t2")
    with hold_run_lock(project):
        result = project.cli("apply", "--lock-wait", "0.3")
        rolled = project.cli("rollback", "--lock-wait", "0.3", "--format", "json")
    assert_clean_exit(result, 5)
    assert "--lock-wait" in result.stderr
    assert json_doc(rolled)["error"]["code"] == 5
    assert history_versions(project) == ["001"]
    assert "t2" not in project.tables()
    assert_clean_exit(project.cli("apply"), 0)  # once released, the run goes through


COUNTED = '''
    import time


    def apply(conn, environment):
        time.sleep(0.02)
        conn.sql("INSERT INTO counter (v) VALUES ({v})").execute()
'''


def test_concurrent_applies_never_apply_twice(sqlite_project: Project) -> None:
    sqlite_project.add("001_counter.sql", "CREATE TABLE counter (v INTEGER);")
    for v in range(2, 16):
        sqlite_project.add(f"{v:03d}_count.py", COUNTED.replace("{v}", str(v)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "cryomigrate", "--config", str(sqlite_project.config),
               "apply", "--lock-wait", "60"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, (stdout, stderr)
        assert "Traceback" not in stderr
    values = [row[0] for row in sqlite_project.query("SELECT v FROM counter ORDER BY v")]
    assert values == list(range(2, 16))
    assert len(history_versions(sqlite_project)) == 15
    applied = [row for row in sqlite_project.journal() if row[1:] == ("apply", "ok")]
    assert len(applied) == 15
