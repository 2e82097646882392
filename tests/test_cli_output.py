"""The CLI contract (DESIGN §6): text and JSON for every command, stdout vs stderr, every
exit code, no tracebacks, `python -m cryomigrate`, and `new`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    assert_json_error,
    config_with,
    history_versions,
    hold_run_lock,
    json_doc,
    table_sql,
)

ROOT = Path(__file__).resolve().parents[1]


def _applied(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply"), 0)


# --- JSON: exactly one document with the documented keys ------------------------------

def test_status_json(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    result = project.cli("status", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["environment"] == "development"
    first, second = document["migrations"]
    assert first["version"] == "001" and first["name"] == "t1" and first["kind"] == "sql"
    assert first["state"] == "applied" and first["applied_at"]
    assert first["checksum"].startswith("sha256:") and len(first["checksum"]) == 71
    assert second["state"] == "pending" and second["applied_at"] is None
    assert result.stderr == ""


def test_status_text(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    result = project.cli("status")
    assert_clean_exit(result, 0)
    assert "development" in result.stdout
    assert "001" in result.stdout and "t1" in result.stdout and "applied" in result.stdout
    assert "002" in result.stdout and "pending" in result.stdout
    assert result.stderr == ""


def test_status_of_empty_folder(project: Project) -> None:
    result = project.cli("status")
    assert_clean_exit(result, 0)
    assert "cryomigrate new" in result.stdout
    assert json_doc(project.cli("status", "--format", "json"))["migrations"] == []


def test_apply_json(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    result = project.cli("apply", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["environment"] == "development"
    assert document["dry_run"] is False
    assert [(m["version"], m["name"]) for m in document["applied"]] == [("001", "t1"),
                                                                      ("002", "t2")]
    assert all(isinstance(m["duration_ms"], int) for m in document["applied"])
    assert "error" not in document


def test_apply_text(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert "001_t1" in result.stdout and "002_t2" in result.stdout
    assert "Applied 2 migrations" in result.stdout
    assert result.stderr == ""


def test_rollback_json(project: Project) -> None:
    _applied(project)
    result = project.cli("rollback", "--steps", "1", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["environment"] == "development" and document["dry_run"] is False
    assert [m["version"] for m in document["rolled_back"]] == ["002"]
    assert "applied" not in document


def test_rollback_text(project: Project) -> None:
    _applied(project)
    result = project.cli("rollback")
    assert_clean_exit(result, 0)
    assert "002_t2" in result.stdout and "Rolled back 2 migrations" in result.stdout


def test_validate_json_and_text(project: Project) -> None:
    add_tables(project, "001_t1")
    result = project.cli("validate", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["environment"] == "development"
    assert document["migrations"] == 1 and document["environments"] == ["development"]
    assert document["findings"] == []
    text = project.cli("validate")
    assert_clean_exit(text, 0)
    assert "ok: 1 migration" in text.stdout


def test_validate_reports_every_problem_at_once(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_a.sql.j2", "SELECT {{ vars.nope }};")
    project.add("003_b.py", "def rollback(conn, environment):\n    pass\n")
    result = project.cli("validate", "--format", "json")
    document = assert_json_error(result, 2)
    messages = " ".join(f["message"] for f in document["findings"])
    assert "002_a.sql.j2" in messages and "003_b.py" in messages
    text = project.cli("validate")
    assert_clean_exit(text, 2)
    assert "002_a.sql.j2" in text.stderr and "003_b.py" in text.stderr


def test_validate_renders_templates_for_every_environment(project: Project) -> None:
    project.write_config(f"""
        environments:
          development:
            database: {project.url}
            vars: {{role: dev_role}}
          production:
            database: ${{CM_TEST_PROD_URL}}
    """)
    project.add("001_grant.sql.j2", "SELECT {{ vars.role | literal }};")
    result = project.cli("validate", env={"CM_TEST_PROD_URL": None})
    assert_clean_exit(result, 2)
    assert "001_grant.sql.j2" in result.stderr and "production" in result.stderr


def test_validate_needs_no_environment_called_development(sqlite_project: Project) -> None:
    """A project with only staging and production is validated without --env: files and
    every environment's templates; the database is checked only for a named one."""
    sqlite_project.write_config("""
        environments:
          staging:
            database: ${CM_TEST_UNSET_STAGING_URL}
          production:
            database: ${CM_TEST_UNSET_PRODUCTION_URL}
            vars: {who: ops}
    """)
    add_tables(sqlite_project, "001_t1")
    sqlite_project.add("002_grant.sql.j2", "SELECT '{{ vars.who }}';\n")
    unnamed = {"CRYOMIGRATE_ENV": None}
    result = sqlite_project.cli("validate", "--format", "json", env=unnamed)
    assert_clean_exit(result, 2)  # staging has no vars.who
    assert "002_grant.sql.j2" in json_doc(result)["error"]["message"]
    sqlite_project.write_config("""
        environments:
          staging:
            database: ${CM_TEST_UNSET_STAGING_URL}
            vars: {who: dev}
          production:
            database: ${CM_TEST_UNSET_PRODUCTION_URL}
            vars: {who: ops}
    """)
    result = sqlite_project.cli("validate", "--format", "json", env=unnamed)
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["environment"] is None and document["migrations"] == 2
    assert any("no environment was named" in f["message"] for f in document["findings"])
    named = sqlite_project.cli("validate", "--env", "production", env=unnamed)
    assert_clean_exit(named, 0)
    assert "${CM_TEST_UNSET_PRODUCTION_URL}" in named.stdout
    assert_clean_exit(sqlite_project.cli("validate", "--env", "nope", env=unnamed), 2)


def test_validate_reports_database_state(project: Project) -> None:
    _applied(project)
    project.add("001_t1.sql", table_sql("t1") + "-- edited\n")
    result = project.cli("validate", "--format", "json")
    document = assert_json_error(result, 4)
    assert "001_t1.sql" in document["error"]["message"]


def test_validate_reports_a_pending_migration_older_than_the_applied_ones(
        project: Project) -> None:
    _applied(project)
    project.add("000_early.sql", table_sql("t0"))
    document = assert_json_error(project.cli("validate", "--format", "json"), 4)
    assert "000_early.sql is pending but older than" in document["error"]["message"]
    assert_clean_exit(project.cli("apply"), 4)  # what validate foretold
    # A modified migration the environment allows is only a warning: still checked.
    project.write_config(f"""
        environments:
          development:
            database: {project.url}
            policies: {{allow_modified: true}}
    """)
    project.add("001_t1.sql", table_sql("t1") + "-- edited\n")
    document = assert_json_error(project.cli("validate", "--format", "json"), 4)
    assert "000_early.sql is pending but older than" in document["error"]["message"]


def test_history_json_and_text(project: Project) -> None:
    _applied(project)
    assert_clean_exit(project.cli("rollback", "--steps", "1"), 0)
    result = project.cli("history", "--format", "json")
    assert_clean_exit(result, 0)
    entries = json_doc(result)["entries"]
    assert [(e["version"], e["action"], e["outcome"]) for e in entries] == [
        ("002", "rollback", "ok"), ("002", "apply", "ok"), ("001", "apply", "ok")]
    assert {"name", "environment", "started_at", "duration_ms", "error"} <= set(entries[0])
    text = project.cli("history", "--limit", "1")
    assert_clean_exit(text, 0)
    assert "rollback" in text.stdout and "apply" not in text.stdout


def test_history_when_empty(project: Project) -> None:
    result = project.cli("history")
    assert_clean_exit(result, 0)
    assert "No history" in result.stdout
    assert json_doc(project.cli("history", "--format", "json"))["entries"] == []


def test_history_shows_failures(project: Project) -> None:
    project.add("001_bad.sql", "SELECT * FROM nowhere;")
    assert_clean_exit(project.cli("apply"), 1)
    entries = json_doc(project.cli("history", "--format", "json"))["entries"]
    assert entries[0]["outcome"] == "failed" and "nowhere" in entries[0]["error"]


def test_baseline_text(project: Project) -> None:
    add_tables(project, "001_t1")
    result = project.cli("baseline", "1")
    assert_clean_exit(result, 0)
    assert "recorded 1 migration" in result.stdout


def test_new_json(project: Project) -> None:
    result = project.cli("new", "add_x", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["version"] == "001" and document["name"] == "add_x"
    assert Path(document["path"]).name == "001_add_x.py"


# --- failures in JSON -----------------------------------------------------------------

def test_failed_apply_json_has_error_and_partial_result(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_bad.sql", "SELECT * FROM nowhere;")
    result = project.cli("apply", "--format", "json")
    document = assert_json_error(result, 1)
    assert [m["version"] for m in document["applied"]] == ["001"]
    assert "002_bad.sql" in document["error"]["message"]
    assert document["environment"] == "development"
    assert "002_bad.sql" in result.stderr


def test_failed_rollback_json_has_error_and_partial_result(project: Project) -> None:
    # DESIGN §6: a failed run's JSON still lists what it did ("rolled_back"), plus "error".
    project.add("001_t1.sql", "-- cryomigrate:apply\nCREATE TABLE t1 (id INTEGER);\n"
                "-- cryomigrate:rollback\nSELECT * FROM nowhere;\n")
    project.add("002_t2.sql", "-- cryomigrate:apply\nCREATE TABLE t2 (id INTEGER);\n"
                "-- cryomigrate:rollback\nDROP TABLE t2;\n")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback", "--format", "json", "--yes")
    document = assert_json_error(result, 1)
    assert [m["version"] for m in document["rolled_back"]] == ["002"]
    assert "001_t1.sql" in document["error"]["message"]
    assert [row[0] for row in project.history()] == ["001"]


def test_descriptions_come_from_docstrings_and_first_comments(project: Project) -> None:
    # DESIGN §2.1: a Python module's docstring line is the migration's description; a SQL
    # file's first comment line serves the same purpose. Dry runs and JSON show them.
    project.add("001_people.py", '''
        """Create the people table.

        More words that are not the description.
        """


        def apply(conn, environment):
            conn.sql("CREATE TABLE people (id INTEGER)").execute()
    ''')
    project.add("002_pets.sql", "-- Pets belong to people\nCREATE TABLE pets (id INTEGER);\n")
    project.add("003_plain.sql", "CREATE TABLE plain (id INTEGER);\n")
    preview = project.cli("apply", "--dry-run")
    assert_clean_exit(preview, 0)
    assert "-- 001_people (python): Create the people table." in preview.stdout
    assert "-- 002_pets (sql): Pets belong to people" in preview.stdout
    assert "-- 003_plain (sql)\n" in preview.stdout
    document = json_doc(project.cli("apply", "--format", "json"))
    assert [m["description"] for m in document["applied"]] == [
        "Create the people table.", "Pets belong to people", ""]


@pytest.mark.parametrize("command", ["status", "apply", "rollback", "validate", "history",
                                     "repair"])
def test_config_error_in_json_is_one_document(sqlite_project: Project, command: str) -> None:
    sqlite_project.write_config("environments: {development: {databse: x}}\n")
    result = sqlite_project.cli(command, "--format", "json")
    document = assert_json_error(result, 2)
    assert "databse" in document["error"]["message"]
    assert document["environment"] == "development"


def test_error_goes_to_stderr_in_text_mode(project: Project) -> None:
    project.add("001_bad.sql", "SELECT * FROM nowhere;")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "error:" in result.stderr and "error:" not in result.stdout


# --- every exit code, no traceback except for 1 ---------------------------------------

def test_exit_0(project: Project) -> None:
    assert_clean_exit(project.cli("status"), 0)


def test_exit_1_migration_failed(project: Project) -> None:
    project.add("001_bad.py", "def apply(conn, environment):\n    1 / 0\n")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "ZeroDivisionError" in result.stderr and "001_bad.py" in result.stderr


@pytest.mark.parametrize("args", [
    ("apply", "--format", "xml"),
    ("rollback", "--steps", "0"),
    ("nosuchcommand",),
    ("apply", "--target", "abc"),
    ("apply", "--lock-wait", "-1"),
])
def test_exit_2_usage(project: Project, args: tuple[str, ...]) -> None:
    assert_clean_exit(project.cli(*args), 2)


def test_exit_3_policy(project: Project) -> None:
    config_with(project, "policies: {allow_rollback: false}")
    assert_json_error(project.cli("rollback", "--format", "json"), 3)


def test_exit_4_state(project: Project) -> None:
    _applied(project)
    (project.migrations / "001_t1.sql").unlink()
    assert_json_error(project.cli("apply", "--format", "json"), 4)
    assert_clean_exit(project.cli("status"), 0)  # status reports the state, it is not blocked


def test_exit_5_lock(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("baseline", "1"), 0)
    add_tables(project, "002_t2")
    with hold_run_lock(project):
        result = project.cli("apply", "--lock-wait", "0.2", "--format", "json")
    assert_json_error(result, 5)


UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


@pytest.mark.parametrize("command", ["status", "apply", "rollback", "history", "baseline",
                                     "repair"])
def test_exit_6_unreachable_postgres(sqlite_project: Project, command: str) -> None:
    sqlite_project.write_config(f"environments:\n  development:\n    database: {UNREACHABLE}\n")
    add_tables(sqlite_project, "001_t1")
    args = (command, "1") if command == "baseline" else (command,)
    result = sqlite_project.cli(*args)
    assert_clean_exit(result, 6)
    assert "127.0.0.1" in result.stderr and "1" in result.stderr
    document = assert_json_error(sqlite_project.cli(*args, "--format", "json"), 6)
    assert document["environment"] == "development"


def test_validate_with_unreachable_database_checks_files(sqlite_project: Project) -> None:
    sqlite_project.write_config(f"environments:\n  development:\n    database: {UNREACHABLE}\n")
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("validate", "--format", "json")
    assert_clean_exit(result, 0)
    findings = json_doc(result)["findings"]
    assert any("not reachable" in f["message"] for f in findings)


def test_sqlite_folder_missing_is_exit_6(sqlite_project: Project) -> None:
    sqlite_project.write_config("environments:\n  development:\n"
                                "    database: sqlite:///no/such/folder/app.db\n")
    add_tables(sqlite_project, "001_t1")
    assert_clean_exit(sqlite_project.cli("apply"), 6)


# --- python -m cryomigrate ------------------------------------------------------------

def _python_m(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cryomigrate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_python_m_help(tmp_path: Path) -> None:
    result = _python_m("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("status", "apply", "rollback", "validate", "new", "history", "baseline",
                    "repair"):
        assert command in result.stdout


def test_python_m_runs_commands(sqlite_project: Project) -> None:
    add_tables(sqlite_project, "001_t1")
    result = _python_m("apply", cwd=sqlite_project.root)
    assert result.returncode == 0, result.stderr
    assert "t1" in sqlite_project.tables()
    bad = _python_m("apply", "--env", "nope", cwd=sqlite_project.root)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


_FROZEN_AT_EXIT = (
    "import atexit, gc, sys\n"
    "atexit.register(lambda: print(f'frozen: {gc.get_freeze_count() > 0}', file=sys.stderr))\n"
    "from cryomigrate.cli import run\n"
    "sys.argv = ['cryomigrate', 'apply']\n"
    "run()\n")


def test_program_freezes_the_heap_at_exit_when_no_python_migration_ran(
        sqlite_project: Project) -> None:
    """What the program skips at exit is the interpreter's last walk of the heap (cli.run),
    and nothing else: atexit handlers run, the output and exit code are the run's."""
    add_tables(sqlite_project, "001_t1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", _FROZEN_AT_EXIT], cwd=sqlite_project.root,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Applied 1 migration" in result.stdout
    assert result.stderr.rstrip().endswith("frozen: True"), result.stderr


def test_what_a_python_migration_built_is_finalized_at_exit(sqlite_project: Project) -> None:
    """A Python migration's objects caught in a cycle (a temporary file, a connection of
    its own) are finalized by the interpreter's last collection, which the program then
    keeps."""
    (sqlite_project.migrations / "001_t1.py").write_text(
        "import os\n\n"
        "class _Bye:\n"
        "    def __del__(self):\n"
        "        with open(os.path.join(os.path.dirname(__file__), '..', 'finalized'), 'w'):\n"
        "            pass\n\n"
        "_bye = _Bye()\n"
        "_bye.itself = _bye  # a cycle: only the collector frees it\n\n"
        "def apply(conn, environment):\n"
        "    conn.sql('CREATE TABLE t1 (id INTEGER)').execute()\n")
    result = _python_m("apply", cwd=sqlite_project.root)
    assert result.returncode == 0, result.stderr
    assert "Applied 1 migration" in result.stdout
    assert (sqlite_project.root / "finalized").exists()


# --- new ------------------------------------------------------------------------------

def test_new_in_empty_folder(project: Project) -> None:
    result = project.cli("new", "initial")
    assert_clean_exit(result, 0)
    assert (project.migrations / "001_initial.py").is_file()
    assert "001_initial.py" in result.stdout


def test_new_keeps_zero_padding(project: Project) -> None:
    add_tables(project, "001_t1", "007_t7")
    assert_clean_exit(project.cli("new", "add_x"), 0)
    assert (project.migrations / "008_add_x.py").is_file()


def test_new_refuses_a_version_past_the_largest(project: Project) -> None:
    largest = str(2**63 - 1)
    project.add(f"{largest}_big.sql", "SELECT 1;")
    result = project.cli("new", "after")
    assert_clean_exit(result, 2)
    assert "larger than the largest version" in result.stderr
    assert sorted(p.name for p in project.migrations.iterdir()) == [f"{largest}_big.sql"]


def test_new_needs_no_environment(sqlite_project: Project) -> None:
    sqlite_project.write_config("environments:\n  production:\n"
                                "    database: ${CM_TEST_UNSET_URL}\n")
    assert_clean_exit(sqlite_project.cli("new", "first", env={"CRYOMIGRATE_ENV": None}), 0)
    assert (sqlite_project.migrations / "001_first.py").is_file()
    assert_clean_exit(sqlite_project.cli("new", "second", "--env", "prod"), 2)


def test_new_keeps_wider_padding(project: Project) -> None:
    add_tables(project, "0099_t")
    assert_clean_exit(project.cli("new", "next"), 0)
    assert (project.migrations / "0100_next.py").is_file()


def test_new_sql(project: Project) -> None:
    add_tables(project, "007_t7")
    assert_clean_exit(project.cli("new", "add_y", "--sql"), 0)
    created = project.migrations / "008_add_y.sql"
    assert "-- cryomigrate:apply" in created.read_text()
    assert "-- cryomigrate:rollback" in created.read_text()


def test_new_files_are_valid_and_their_rollback_is_never_a_silent_no_op(project: Project
                                                                        ) -> None:
    assert_clean_exit(project.cli("new", "one"), 0)
    assert_clean_exit(project.cli("new", "two", "--sql"), 0)
    assert_clean_exit(project.cli("validate"), 0)
    assert_clean_exit(project.cli("apply"), 0)
    # A scaffold's rollback() stops until someone writes it (issue 8, item 16).
    result = project.cli("rollback")
    assert_clean_exit(result, 1)
    assert "001_one.py" in result.stderr and "not written yet" in result.stderr
    assert history_versions(project) == ["001"]


# A sentence is made into a name since issue 14 (tests/test_repeatable.py); what cannot
# become one is still refused.
@pytest.mark.parametrize("name", ["", "!!!", " - ", "___", "日本"])
def test_new_invalid_name_is_exit_2(project: Project, name: str) -> None:
    result = project.cli("new", name)
    assert_clean_exit(result, 2)
    assert list(project.migrations.iterdir()) == []


def test_new_timestamp_numbered_folder(project: Project) -> None:
    add_tables(project, "20240101120000_t")
    assert_clean_exit(project.cli("new", "later"), 0)
    created = [p.name for p in project.migrations.iterdir() if p.name.endswith("_later.py")]
    assert len(created) == 1 and len(created[0].split("_")[0]) == 14
    assert int(created[0].split("_")[0]) > 20240101120000


@pytest.mark.parametrize("args", [
    ("apply", "--target", "1", "--target", "2"),
    ("status", "--env", "development", "--env=development"),
    ("--config", "environments.yaml", "--config", "environments.yaml", "status"),
    ("apply", "--yes", "--yes"),
])
def test_an_option_given_twice_is_refused(sqlite_project: Project, args: tuple[str, ...]
                                          ) -> None:
    """click would keep the last; which one was meant nobody can tell."""
    add_tables(sqlite_project, "001_t1", "002_t2")
    result = sqlite_project.cli(*args)
    assert_clean_exit(result, 2)
    assert "is given twice; give it once" in result.stderr, result.stderr
    assert "t1" not in sqlite_project.tables()


def test_what_a_migration_writes_to_descriptor_1_stays_off_the_json_document(
        sqlite_project: Project) -> None:
    """print, os.write(1, ...) and a program it starts: all on stderr, at import and while
    it runs, and stdout is the one document."""
    (sqlite_project.migrations / "001_t1.py").write_text(
        "import os, subprocess, sys\n"
        "os.write(1, b'at-import\\n')\n\n"
        "def apply(conn, environment):\n"
        "    print('printed')\n"
        "    os.write(1, b'raw-fd\\n')\n"
        "    subprocess.run([sys.executable, '-c', 'print(\"child-out\")'], check=True)\n"
        "    conn.sql('CREATE TABLE t1 (id INTEGER)').execute()\n")
    result = _python_m("apply", "--format", "json", cwd=sqlite_project.root)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # exactly one document, nothing around it
    assert [run["name"] for run in document["applied"]] == ["t1"]
    for said in ("at-import", "printed", "raw-fd", "child-out"):
        assert said in result.stderr, (said, result.stderr)


@pytest.mark.parametrize(("command", "key"), [("apply", "applied"), ("rollback", "rolled_back")])
def test_a_refusal_before_anything_ran_still_has_the_commands_keys(
        sqlite_project: Project, command: str, key: str) -> None:
    """DESIGN 6: on failure the document *also* has "error"; a script reading
    doc["applied"] must not meet a KeyError on exits 3 and 4 alone."""
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            policies: {require_confirmation: true}
    """)
    add_tables(sqlite_project, "001_t1")
    if command == "rollback":
        assert_clean_exit(sqlite_project.cli("apply", "--yes"), 0)
    document = assert_json_error(sqlite_project.cli(command, "--format", "json"), 3)
    assert document["dry_run"] is False and document[key] == []
    assert document["environment"] == "development"
