"""State in the database (DESIGN §4): what the history and journal rows hold, and where."""

from __future__ import annotations

from tests.conftest import Project
from tests.helpers_core import add_tables, assert_clean_exit, config_with, execute

PY = '''
    """Create table p."""


    def apply(conn, environment):
        conn.sql("CREATE TABLE p (id INTEGER)").execute()
'''


def test_history_row_contents(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_p.py", PY)
    project.add("003_t.sql.j2", "CREATE TABLE t3 (id INTEGER);")
    assert_clean_exit(project.cli("apply"), 0)
    rows = project.query("SELECT version, version_text, name, kind, checksum, applied_at, "
                         "applied_by, duration_ms FROM cryomigrate_history ORDER BY version")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (1, "001", "t1", "sql"), (2, "002", "p", "python"), (3, "003", "t", "template")]
    for r in rows:
        assert str(r[4]).startswith("sha256:") and len(r[4]) == 71
        assert r[5] and r[6] and r[7] >= 0


def test_durations_cover_the_migrations_work(project: Project) -> None:
    # The history and journal rows travel with the script (and the COMMIT), before its
    # duration is known: the backend fills it in. It must still cover the real work.
    project.add("001_slow.py", """
        import time


        def apply(conn, environment):
            conn.sql("CREATE TABLE slow (id INTEGER)").execute()
            time.sleep(0.12)
    """)
    slow_sql = ("SELECT pg_sleep(0.12);\n" if project.dialect == "postgresql" else
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                "WHERE x < 3000000) SELECT count(*) FROM c;\n")
    project.add("002_slow.sql", slow_sql)
    assert_clean_exit(project.cli("apply"), 0)
    history = project.query("SELECT version, duration_ms FROM cryomigrate_history "
                            "ORDER BY version")
    journal = project.query("SELECT version, duration_ms FROM cryomigrate_history_journal "
                            "ORDER BY id")
    assert history[0][1] >= 120 and journal[0][1] >= 120, (history, journal)
    assert history[1][1] >= (120 if project.dialect == "postgresql" else 1), history
    assert abs(history[1][1] - journal[1][1]) <= 1, (history, journal)
    assert all(d < 60_000 for _, d in history)


def test_journal_row_contents(project: Project) -> None:
    project.add("001_bad.sql", "SELECT * FROM nowhere;")
    assert_clean_exit(project.cli("apply"), 1)
    rows = project.query("SELECT version, name, action, outcome, environment, started_at, "
                         "duration_ms, error FROM cryomigrate_history_journal")
    assert len(rows) == 1
    version, name, action, outcome, environment, started_at, duration, error = rows[0]
    assert (version, name, action, outcome, environment) == ("001", "bad", "apply", "failed",
                                                            "development")
    assert started_at and duration >= 0 and "nowhere" in error


def test_custom_history_table(project: Project) -> None:
    config_with(project, history_table="schema_log")
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    assert {"schema_log", "schema_log_journal", "t1"} <= project.tables()
    assert "cryomigrate_history" not in project.tables()
    assert project.query("SELECT version_text FROM schema_log") == [("001",)]


def test_schema_qualified_history_table_postgres(pg_project: Project) -> None:
    config_with(pg_project, history_table="ops.migrations")
    add_tables(pg_project, "001_t1")
    assert_clean_exit(pg_project.cli("status"), 0)
    assert pg_project.query("SELECT 1 FROM pg_namespace WHERE nspname = 'ops'") == []
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT version_text FROM ops.migrations") == [("001",)]
    assert pg_project.query("SELECT action FROM ops.migrations_journal") == [("apply",)]


def test_schema_qualified_history_table_sqlite_is_exit_2(sqlite_project: Project) -> None:
    config_with(sqlite_project, history_table="ops.migrations")
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "ops.migrations" in result.stderr
    assert "t1" not in sqlite_project.tables()


def test_journal_records_environment_name(project: Project) -> None:
    config_with(project, "")
    with project.config.open("a") as config:
        config.write(f"  staging:\n    database: {project.url}\n")
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply", "--env", "staging"), 0)
    assert project.query("SELECT environment FROM cryomigrate_history_journal") == [
        ("staging",)]


def test_a_history_table_that_is_another_tools_is_named_as_such(project: Project) -> None:
    config_with(project, history_table="schema_migrations")
    add_tables(project, "001_t1")
    execute(project, "CREATE TABLE schema_migrations (version VARCHAR(128) PRIMARY KEY)")
    for command in ("status", "apply"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert "history_table: schema_migrations exists but is not cryomigrate's" \
            in result.stderr, result.stderr
    assert project.query("SELECT count(*) FROM schema_migrations") == [(0,)]
