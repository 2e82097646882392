"""Issue 12, items 1, 2 and 4: lint before apply (real squawk), its policies, lock_timeout
retries and the INVALID index a failed CREATE INDEX CONCURRENTLY leaves behind."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import Project
from tests.helpers_core import assert_clean_exit, json_doc

EXISTING = """-- cryomigrate:apply
CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT, name TEXT);
-- cryomigrate:rollback
DROP TABLE users;
"""
RISKY = """-- cryomigrate:apply
CREATE INDEX users_email ON users (email);
ALTER TABLE users DROP COLUMN name;
-- cryomigrate:rollback
ALTER TABLE users ADD COLUMN name TEXT;
DROP INDEX users_email;
"""


def _config(project: Project, policies: str = "", extra: str = "") -> None:
    project.write_config(f"""
        environments:
          development:
            database: {project.url}
            lock_timeout: 5s
            statement_timeout: 1min
            {extra}
            policies: {{{policies}}}
    """)


def _findings(project: Project, *args: str) -> list[dict[str, object]]:
    result = project.cli("lint", "--format", "json", *args)
    assert result.exit_code in (0, 3), result.output
    return list(json_doc(result)["findings"])  # type: ignore[arg-type]


def test_lint_flags_a_plain_index_and_marks_drop_column_destructive(pg_project: Project
                                                                     ) -> None:
    _config(pg_project)
    pg_project.add("001_users.sql", EXISTING)
    assert_clean_exit(pg_project.cli("apply"), 0)
    pg_project.add("002_risky.sql", RISKY)
    found = {(f["rule"], f["line"], f["destructive"]) for f in _findings(pg_project)}
    # Lines of the migration file, not of its apply section.
    assert ("require-concurrent-index-creation", 2, False) in found
    assert ("ban-drop-column", 3, True) in found
    # The environment sets both timeouts, so squawk's advice to set them is not repeated.
    assert not {rule for rule, _, _ in found} & {"require-lock-timeout",
                                                  "require-statement-timeout"}
    # Pending only: 001 is applied, and --all lints it too (it has nothing to say).
    assert {f["file"] for f in _findings(pg_project, "--all")} == {"002_risky.sql"}
    text = pg_project.cli("lint")
    assert_clean_exit(text, 0)
    assert "002_risky.sql:3: ban-drop-column" in text.stdout and "[destructive]" in text.stdout


def test_a_waiver_silences_exactly_the_rules_it_names(pg_project: Project) -> None:
    _config(pg_project)
    pg_project.add("001_users.sql", EXISTING)
    pg_project.add("002_risky.sql", "-- cryomigrate:lint-ignore ban-drop-column\n" + RISKY)
    rules = {f["rule"] for f in _findings(pg_project)}
    assert "ban-drop-column" not in rules
    assert "require-concurrent-index-creation" in rules


def test_a_near_miss_of_the_waiver_is_an_input_error(sqlite_project: Project) -> None:
    sqlite_project.add("001_x.sql", "-- cryomigrate:lint-ignore\nSELECT 1;\n")
    result = sqlite_project.cli("lint")
    assert_clean_exit(result, 2)
    assert "001_x.sql line 1: unknown marker" in result.stderr


def test_a_waiver_naming_no_known_rule_is_an_input_error(pg_project: Project) -> None:
    _config(pg_project)
    pg_project.add("001_users.sql", EXISTING)
    pg_project.add("002_risky.sql", "-- cryomigrate:lint-ignore destructive\n"
                                    "-- cryomigrate:lint-ignore ban-drop-colum\n" + RISKY)
    for command in (("lint",), ("apply",), ("validate",), ("lint", "--format", "json")):
        result = pg_project.cli(*command)
        assert_clean_exit(result, 2)
        assert "002_risky.sql line 2: -- cryomigrate:lint-ignore names 'ban-drop-colum'" \
            in result.output, result.output
    assert pg_project.tables() == set()
    assert json_doc(result)["error"]["code"] == 2


def test_with_lint_off_waivers_are_not_checked(pg_project: Project) -> None:
    # Only the destructive policy reads the statements: a waiver waives nothing there.
    _config(pg_project, "lint: off, destructive: refuse")
    pg_project.add("001_t.sql", "-- cryomigrate:lint-ignore ban-drop-colum\n"
                                "CREATE TABLE t (id bigint);\n")
    assert_clean_exit(pg_project.cli("apply"), 0)


def test_squawk_rules_may_be_waived_in_a_sqlite_project(sqlite_project: Project) -> None:
    # The same files may serve a PostgreSQL environment, where squawk reads them.
    sqlite_project.add("001_t.sql", "-- cryomigrate:lint-ignore prefer-bigint-over-int "
                                    "destructive\nCREATE TABLE t (id INTEGER);\nDROP TABLE t;\n")
    result = sqlite_project.cli("lint", "--format", "json")
    assert_clean_exit(result, 0)
    assert json_doc(result)["findings"] == []
    sqlite_project.add("002_u.sql", "-- cryomigrate:lint-ignore prefer-bigint-over-in\n"
                                    "SELECT 1;\n")
    result = sqlite_project.cli("lint")
    assert_clean_exit(result, 2)
    assert "002_u.sql line 1" in result.stderr and "'prefer-bigint-over-in'" in result.stderr


def test_own_rules_on_sqlite_said_once(sqlite_project: Project) -> None:
    sqlite_project.add("001_t.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT);\n"
                                    "CREATE INDEX CONCURRENTLY t_a ON t (a);\n"
                                    "ALTER TABLE t DROP COLUMN a;\nTRUNCATE t;\n")
    sqlite_project.add("002_p.py", "def apply(conn, environment):\n    pass\n")
    result = sqlite_project.cli("lint", "--format", "json")
    assert_clean_exit(result, 0)
    doc = json_doc(result)
    assert [(f["rule"], f["line"], f["destructive"]) for f in doc["findings"]] == [
        ("concurrent-index-in-transaction", 2, False), ("destructive", 3, True),
        ("destructive", 4, True)]
    assert sum("own rules only" in note for note in doc["notes"]) == 1
    assert any("002_p.py" in note for note in doc["notes"])


def test_lint_refuse_makes_apply_exit_3_with_nothing_written(pg_project: Project) -> None:
    _config(pg_project, "lint: refuse")
    pg_project.add("001_users.sql", "CREATE TABLE users (id INT);\n")  # prefer-bigint
    result = pg_project.cli("apply")
    assert_clean_exit(result, 3)
    assert "policies.lint: refuse" in result.stderr
    assert "cryomigrate_history" not in pg_project.tables() and "users" not in pg_project.tables()
    assert_clean_exit(pg_project.cli("lint"), 3)
    # A dry run shows the findings and the refusal, and writes nothing either.
    dry = pg_project.cli("apply", "--dry-run")
    assert_clean_exit(dry, 0)
    assert "prefer-bigint-over-int" in dry.stderr and "would be refused" in dry.stderr


@pytest.mark.parametrize("policy", ["refuse", "confirm"])
def test_destructive_policies(pg_project: Project, policy: str) -> None:
    _config(pg_project, f"destructive: {policy}, lint: off")
    pg_project.add("001_users.sql", EXISTING)
    pg_project.add("002_drop.sql", "-- cryomigrate:lint-ignore ban-drop-column\n"
                                   "ALTER TABLE users DROP COLUMN name;\n")
    result = pg_project.cli("apply")  # no terminal, no --yes
    assert_clean_exit(result, 3)
    assert "002_drop.sql line 2: drops a column" in result.stderr  # waived or not
    assert pg_project.tables() == set()
    yes = pg_project.cli("apply", "--yes")
    if policy == "refuse":
        assert_clean_exit(yes, 3)
        assert pg_project.tables() == set()
    else:
        assert_clean_exit(yes, 0)
        assert [r[0] for r in pg_project.history()] == ["001", "002"]


def test_squawk_missing(pg_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import cryomigrate.lint as lint

    monkeypatch.setattr(lint, "find_squawk", lambda: None)
    _config(pg_project)
    pg_project.add("001_users.sql", EXISTING)
    result = pg_project.cli("lint")
    assert_clean_exit(result, 2)
    assert "squawk is not installed" in result.stderr
    applied = pg_project.cli("apply")
    assert_clean_exit(applied, 0)
    assert "skipped linting with squawk" in applied.stderr


def _hold_table_lock(url: str, table: str, seconds: float, started: threading.Event) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        started.set()
        time.sleep(seconds)


@pytest.mark.parametrize("retries", [6, 0])
def test_lock_retries(pg_project: Project, retries: int) -> None:
    _config(pg_project, extra=f"lock_retries: {retries}")
    pg_project.write_config(pg_project.config.read_text().replace("lock_timeout: 5s",
                                                                   "lock_timeout: 300ms"))
    pg_project.add("001_users.sql", EXISTING)
    assert_clean_exit(pg_project.cli("apply"), 0)
    pg_project.add("002_col.sql", "ALTER TABLE users ADD COLUMN age BIGINT;\n")
    started = threading.Event()
    holder = threading.Thread(target=_hold_table_lock,
                              args=(pg_project.url, "users", 2.0, started))
    holder.start()
    assert started.wait(10)
    try:
        result = pg_project.cli("apply", "--format", "json")
    finally:
        holder.join()
    attempts = [row for row in pg_project.journal() if row[0] == "002"]
    if retries:
        assert_clean_exit(result, 0)
        assert "retrying in" in result.stderr
        notices = json_doc(result)["notices"]  # a CI job reading the document sees them too
        assert any("002_col.sql: lock_timeout, rolled back; retrying in" in n for n in notices)
        assert attempts[-1] == ("002", "apply", "ok")
        failed = attempts[:-1]
        assert failed and all(row == ("002", "apply", "failed") for row in failed)
    else:
        assert_clean_exit(result, 1)
        assert "lock timeout" in result.stderr and "55P03" in result.stderr
        assert attempts == [("002", "apply", "failed")]


def test_failed_concurrent_index_names_the_invalid_index(pg_project: Project) -> None:
    _config(pg_project)
    pg_project.add("001_users.sql", EXISTING.replace(
        "-- cryomigrate:rollback", "INSERT INTO users VALUES (1, 'a', 'x'), (2, 'a', 'y');\n"
        "-- cryomigrate:rollback"))
    pg_project.add("002_unique.sql", "-- cryomigrate:no-transaction\n-- cryomigrate:apply\n"
                   "CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);\n")
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert "INVALID index public.users_email_key" in result.stderr
    assert "DROP INDEX CONCURRENTLY IF EXISTS public.users_email_key;" in result.stderr


def test_config_keys_are_strict(sqlite_project: Project) -> None:
    for bad, words in [("policies: {lint: loud}", "policies.lint"),
                       ("policies: {destructive: ask}", "policies.destructive"),
                       ("policies: {require_applied_in: nowhere}", "require_applied_in"),
                       ("lock_retries: -1", "lock_retries")]:
        sqlite_project.write_config(f"""
            environments:
              development:
                database: sqlite:///app.db
                {bad}
        """)
        result = sqlite_project.cli("status")
        assert_clean_exit(result, 2)
        assert words in result.stderr, result.stderr
