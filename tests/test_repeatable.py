"""Repeatable migrations ``R_<name>`` (DESIGN §12, issue 14) on SQLite and PostgreSQL,
their near misses, and ``new`` taking a sentence or ``--repeatable``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from cryomigrate import apply_migrations
from cryomigrate.models import RunResult
from tests.conftest import Project
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    assert_untouched,
    config_with,
    history_versions,
    json_doc,
)


def view_sql(name: str, select: str) -> str:
    """A repeatable SQL file that (re)creates view ``name``; valid on both backends."""
    return f"DROP VIEW IF EXISTS {name};\nCREATE VIEW {name} AS {select};\n"


def statuses(project: Project) -> list[dict[str, Any]]:
    result = project.cli("status", "--format", "json")
    assert_clean_exit(result, 0)
    return list(json_doc(result)["migrations"])


def state_of(project: Project, name: str) -> str:
    return next(m["state"] for m in statuses(project) if m["name"] == name)


def repeatable_rows(project: Project) -> list[tuple[Any, ...]]:
    if "cryomigrate_history_repeatable" not in project.tables():
        return []
    return project.query("SELECT name, kind FROM cryomigrate_history_repeatable ORDER BY name")


def journal_of(project: Project, name: str) -> list[tuple[Any, ...]]:
    return project.query("SELECT version, action, outcome FROM cryomigrate_history_journal "
                         f"WHERE name = '{name}' ORDER BY id")


def applied(result_stdout: str) -> list[tuple[Any, str, bool]]:
    import json

    return [(m["version"], m["name"], m["repeatable"])
            for m in json.loads(result_stdout)["applied"]]


# --- apply order, re-runs, status ---------------------------------------------------

def test_versioned_first_then_repeatables_in_name_order(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    project.add("R_b_view.sql", view_sql("b_view", "SELECT id FROM t2"))
    project.add("R_a_view.sql", view_sql("a_view", "SELECT id FROM t1"))
    result = project.cli("apply", "--format", "json")
    assert_clean_exit(result, 0)
    assert applied(result.stdout) == [("001", "t1", False), ("002", "t2", False),
                                      (None, "a_view", True), (None, "b_view", True)]
    assert {"a_view", "b_view"} <= project.tables()
    assert history_versions(project) == ["001", "002"]  # the versioned history is untouched
    assert repeatable_rows(project) == [("a_view", "sql"), ("b_view", "sql")]
    assert journal_of(project, "a_view") == [("R", "apply", "ok")]


def test_text_apply_names_repeatables_by_file(project: Project) -> None:
    project.add("R_v.sql", view_sql("v", "SELECT 1 AS one"))
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert "applied  R_v " in result.stdout
    assert "None" not in result.stdout


def test_rerun_only_when_changed(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("R_v.sql", view_sql("v", "SELECT id FROM t1"))
    assert_clean_exit(project.cli("apply"), 0)
    again = project.cli("apply", "--format", "json")
    assert_clean_exit(again, 0)
    assert applied(again.stdout) == []
    project.add("R_v.sql", view_sql("v", "SELECT id, id + 1 AS next FROM t1"))
    assert state_of(project, "v") == "changed"
    changed = project.cli("apply", "--format", "json")
    assert_clean_exit(changed, 0)
    assert applied(changed.stdout) == [(None, "v", True)]
    assert state_of(project, "v") == "applied"
    assert journal_of(project, "v") == [("R", "apply", "ok"), ("R", "apply", "ok")]
    assert project.query("SELECT next FROM v") == []  # the new definition is in place


def test_status_lists_repeatables_after_versioned(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("R_v.sql", view_sql("v", "SELECT 1 AS one"))
    before = statuses(project)
    assert [(m["version"], m["name"], m["state"], m["repeatable"]) for m in before] == [
        ("001", "t1", "pending", False), (None, "v", "pending", True)]
    assert_clean_exit(project.cli("apply"), 0)
    assert state_of(project, "v") == "applied"
    project.add("R_v.sql", view_sql("v", "SELECT 2 AS two"))
    text = project.cli("status")
    assert_clean_exit(text, 0)
    row = next(line for line in text.stdout.splitlines() if " v " in line + " ")
    assert row.split()[:4] == ["R", "v", "sql", "changed"]
    assert "1 changed" in text.stdout and "1 applied" in text.stdout


def test_status_and_dry_run_never_create_the_repeatable_table(project: Project) -> None:
    """A database whose history predates repeatables: looking changes nothing."""
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    project.add("R_v.sql", view_sql("v", "SELECT 1 AS one"))
    tables = project.tables()
    assert_clean_exit(project.cli("status"), 0)
    dry = project.cli("apply", "--dry-run", "--format", "json")
    assert_clean_exit(dry, 0)
    assert project.tables() == tables
    assert_clean_exit(project.cli("apply"), 0)
    assert "cryomigrate_history_repeatable" in project.tables()
    assert state_of(project, "v") == "applied"


def test_repeatable_table_is_owner_only_on_postgres(pg_project: Project) -> None:
    add_tables(pg_project, "001_t1")
    assert_clean_exit(pg_project.cli("apply"), 0)
    pg_project.add("R_v.sql", view_sql("v", "SELECT 1 AS one"))
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT relrowsecurity FROM pg_class "
                            "WHERE relname = 'cryomigrate_history_repeatable'") == [(True,)]
    assert pg_project.query("SELECT count(*) FROM information_schema.role_table_grants "
                            "WHERE table_name = 'cryomigrate_history_repeatable' "
                            "AND grantee = 'PUBLIC'") == [(0,)]


# --- failure, rollback, target, dry run -------------------------------------------------

def test_failing_repeatable_is_atomic_and_journaled(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("R_v.sql", view_sql("v", "SELECT 1 AS one"))
    assert_clean_exit(project.cli("apply"), 0)
    project.add("R_v.sql", "CREATE TABLE leftover (id INTEGER);\nSELECT * FROM nowhere;\n")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "R_v.sql" in result.stderr
    assert "leftover" not in project.tables()
    assert journal_of(project, "v")[-1] == ("R", "apply", "failed")
    assert state_of(project, "v") == "changed"  # its last applied run is still the old one
    assert history_versions(project) == ["001"]
    assert project.query("SELECT one FROM v") == [(1,)]


def test_rollback_never_runs_repeatables(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("R_v.sql", view_sql("v", "SELECT 1 AS one"))
    assert_clean_exit(project.cli("apply"), 0)
    dry = project.cli("rollback", "--dry-run", "--format", "json")
    assert [m["name"] for m in json_doc(dry)["rolled_back"]] == ["t1"]
    result = project.cli("rollback", "--format", "json")
    assert_clean_exit(result, 0)
    assert [m["name"] for m in json_doc(result)["rolled_back"]] == ["t1"]
    assert "v" in project.tables()
    assert state_of(project, "v") == "applied"
    assert [row[1] for row in journal_of(project, "v")] == ["apply"]


def test_target_below_newest_leaves_repeatables_for_later(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    project.add("R_v.sql", view_sql("v", "SELECT id FROM t2"))
    first = project.cli("apply", "--target", "1", "--format", "json")
    assert_clean_exit(first, 0)
    assert applied(first.stdout) == [("001", "t1", False)]
    assert state_of(project, "v") == "pending"
    rest = project.cli("apply", "--target", "2", "--format", "json")
    assert_clean_exit(rest, 0)
    assert applied(rest.stdout) == [("002", "t2", False), (None, "v", True)]


def test_dry_run_shows_repeatables_and_writes_nothing(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("R_v.sql", "-- the view of t1\n" + view_sql("v", "SELECT id FROM t1"))
    result = project.cli("apply", "--dry-run", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["dry_run"] is True
    last = document["applied"][-1]
    assert (last["version"], last["name"], last["repeatable"]) == (None, "v", True)
    assert "CREATE VIEW v" in last["sql"]
    text = project.cli("apply", "--dry-run")
    assert "-- R_v (sql): the view of t1" in text.stdout
    assert_untouched(project)


def test_templated_repeatable_rendered_per_environment(project: Project) -> None:
    config_with(project, "vars: {greeting: hello}")
    project.add("R_v.sql.j2", "DROP VIEW IF EXISTS v;\n"
                "CREATE VIEW v AS SELECT {{ vars.greeting | literal }} AS said;\n")
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT said FROM v") == [("hello",)]
    assert_clean_exit(project.cli("apply"), 0)
    assert len(journal_of(project, "v")) == 1
    # A changed variable changes what the repeatable runs: it is due again.
    config_with(project, "vars: {greeting: bonjour}")
    assert state_of(project, "v") == "changed"
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT said FROM v") == [("bonjour",)]


def test_validate_renders_repeatables_for_every_environment(sqlite_project: Project) -> None:
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            vars: {greeting: hello}
          staging:
            database: sqlite:///staging.db
    """)
    sqlite_project.add("R_v.sql.j2", "CREATE VIEW v AS SELECT {{ vars.greeting | literal }};\n")
    result = sqlite_project.cli("validate")
    assert_clean_exit(result, 2)
    assert "R_v.sql.j2" in result.stderr and "greeting" in result.stderr


# --- two runs at once -------------------------------------------------------------------

_COUNTING = '''"""Counts its runs; waits inside its transaction until told to go."""
import os
import time


def apply(conn, environment):
    conn.sql("INSERT INTO runs (n) VALUES (1)").execute()
    folder = conn.vars["barrier"]
    open(os.path.join(folder, "inside"), "w").close()
    for _ in range(1200):
        if os.path.exists(os.path.join(folder, "go")):
            return
        time.sleep(0.05)
'''


def test_concurrent_applies_run_a_changed_repeatable_once(project: Project,
                                                          tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    (barrier / "go").touch()
    config_with(project, f"vars: {{barrier: '{barrier}'}}")
    project.add("001_runs.sql", "CREATE TABLE runs (n INTEGER);\n")
    project.add("R_count.py", _COUNTING)
    assert_clean_exit(project.cli("apply"), 0)
    project.add("R_count.py", _COUNTING + "# changed\n")
    (barrier / "go").unlink()
    (barrier / "inside").unlink()

    results: dict[str, RunResult | BaseException] = {}
    second_planned = threading.Event()

    def run(key: str, progress: Any = None) -> None:
        try:
            results[key] = apply_migrations(config=project.config, lock_wait=60,
                                            progress=progress)
        except BaseException as exc:  # reported by the assertions below
            results[key] = exc

    first = threading.Thread(target=run, args=("first",))
    first.start()
    _wait_for(barrier / "inside")
    second = threading.Thread(target=run, args=(
        "second", lambda event, _: second_planned.set() if event == "start" else None))
    second.start()
    assert second_planned.wait(30)  # it planned the repeatable and now waits for the lock
    (barrier / "go").touch()
    first.join(60)
    second.join(60)
    one, two = results["first"], results["second"]
    assert isinstance(one, RunResult) and isinstance(two, RunResult), results
    assert [m.name for m in one.migrations] == ["count"]
    assert two.migrations == () and two.skipped == ("R_count.py",)
    assert project.query("SELECT count(*) FROM runs") == [(2,)]
    assert journal_of(project, "count") == [("R", "apply", "ok")] * 2
    assert state_of(project, "count") == "applied"


def _wait_for(path: Path) -> None:
    import time

    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


# --- near misses ----------------------------------------------------------------------

@pytest.mark.parametrize(("files", "expected"), [
    ({"r_v.sql": "SELECT 1;"}, "lower-case r; repeatable migrations start with an upper-case "
                               "R_: rename it to R_v.sql"),
    ({"R__v.sql": "SELECT 1;"}, "uses Flyway's R__ prefix; cryomigrate's repeatable "
                                "migrations are R_<name> with one underscore: rename it to "
                                "R_v.sql"),
    ({"R_.sql": "SELECT 1;"}, "R_.sql is a repeatable migration without a name"),
    ({"R_v-x.sql": "SELECT 1;"}, "R_v-x.sql is not named R_<name>.sql"),
    ({"R_View.sql": "SELECT 1;", "R_view.sql": "SELECT 1;"},
     "same name (ignoring case and extension): R_View.sql and R_view.sql"),
    ({"R_v.sql": "SELECT 1;", "R_v.py": "def apply(conn, environment):\n    pass\n"},
     "R_v.py and R_v.sql"),
    ({"R_v.py": "def apply(conn, environment):\n    pass\n\n\n"
                "def rollback(conn, environment):\n    pass\n"},
     "R_v.py: has a rollback() function, but a repeatable migration is never rolled back"),
    ({"R_v.sql": "-- cryomigrate:apply\nSELECT 1;\n-- cryomigrate:rollback\n"},
     "R_v.sql: has a -- cryomigrate:rollback section, but a repeatable migration is never"),
    ({"R_v.sql": "-- cryomigrate:no-transaction\nSELECT 1;\n"},
     "R_v.sql: a repeatable migration always runs in a transaction"),
    ({"R_v.py": "transactional = False\n\n\ndef apply(conn, environment):\n    pass\n"},
     "R_v.py: a repeatable migration always runs in a transaction"),
])
def test_near_misses_are_input_errors(project: Project, files: dict[str, str],
                                      expected: str) -> None:
    for name, content in files.items():
        project.add(name, content)
    # A well-named file's content is checked when it is loaded (to run, or to validate);
    # status only reads names and checksums.
    content = "rollback" in expected or "transaction" in expected
    for command in ("apply", "validate") if content else ("apply", "status", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert expected in " ".join(result.stderr.split()), (command, result.stderr)
    assert_untouched(project)


# --- new ------------------------------------------------------------------------------

@pytest.mark.parametrize(("typed", "name"), [
    ("Add user preferences!", "add_user_preferences"),
    ("add-x", "add_x"),
    ("  Add:  users' prefs (v2)!! ", "add_users_prefs_v2"),
    ("Café crème", "cafe_creme"),
    ("Straße", "strasse"),
    ("../escape", "escape"),
    ("AddUsers", "AddUsers"),
    ("__add__x__", "add_x"),
])
def test_new_makes_a_name_of_a_sentence(project: Project, typed: str, name: str) -> None:
    result = project.cli("new", typed, "--format", "json")
    assert_clean_exit(result, 0)
    assert json_doc(result)["name"] == name
    assert [p.name for p in project.migrations.iterdir()] == [f"001_{name}.py"]


@pytest.mark.parametrize("typed", ["!!!", "", "(-_-)", "日本"])
def test_new_refuses_what_cannot_become_a_name(project: Project, typed: str) -> None:
    result = project.cli("new", typed)
    assert_clean_exit(result, 2)
    assert f"'{typed}' cannot become a migration name" in result.stderr
    assert ("left nothing" in result.stderr) != (typed == "日本")
    assert list(project.migrations.iterdir()) == []


def test_new_name_length_still_limited(project: Project) -> None:
    result = project.cli("new", "word " * 60)
    assert_clean_exit(result, 2)
    assert "too long" in result.stderr


def test_new_repeatable_scaffolds_r_files_that_apply(project: Project) -> None:
    python = project.cli("new", "--repeatable", "Active users view", "--format", "json")
    assert_clean_exit(python, 0)
    document = json_doc(python)
    assert (document["version"], document["name"], document["repeatable"]) == (
        None, "active_users_view", True)
    sql = project.cli("new", "--repeatable", "--sql", "policies")
    assert_clean_exit(sql, 0)
    assert sorted(p.name for p in project.migrations.iterdir()) == [
        "R_active_users_view.py", "R_policies.sql"]
    assert "rollback" not in (project.migrations / "R_active_users_view.py").read_text()
    assert_clean_exit(project.cli("validate"), 0)
    assert_clean_exit(project.cli("apply"), 0)
    assert state_of(project, "policies") == "applied"
    assert_clean_exit(project.cli("new", "next"), 0)  # numbering ignores R_ files
    assert (project.migrations / "001_next.py").exists()


@pytest.mark.parametrize("again", ["policies", "Policies", "POLICIES!"])
def test_new_repeatable_never_overwrites(project: Project, again: str) -> None:
    assert_clean_exit(project.cli("new", "--repeatable", "--sql", "policies"), 0)
    path = project.migrations / "R_policies.sql"
    path.write_text("-- mine\n", encoding="utf-8")
    for extra in ((), ("--sql",)):
        result = project.cli("new", "--repeatable", *extra, again)
        assert_clean_exit(result, 2)
        assert "already exists" in result.stderr
    assert path.read_text(encoding="utf-8") == "-- mine\n"
    assert [p.name for p in project.migrations.iterdir()] == ["R_policies.sql"]
