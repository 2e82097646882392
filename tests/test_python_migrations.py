"""Python migrations and the ``conn`` object they receive (DESIGN §2.1, §2.3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryomigrate import apply_migrations
from tests.conftest import Project
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    history_versions,
    sqlite_project_at,
)

RESULTS = '''
    """Query results: rows as dicts, and the affected row count."""


    def apply(conn, environment):
        conn.sql("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)").execute()
        inserted = conn.sql("INSERT INTO people VALUES (1, 'ann'), (2, 'bob'), (3, 'cy')"
                            ).execute()
        assert inserted.rowcount == 3, inserted.rowcount
        assert inserted.data == [], inserted.data
        updated = conn.sql("UPDATE people SET name = name || '!' WHERE id > 1").execute()
        assert updated.rowcount == 2, updated.rowcount
        rows = conn.sql("SELECT id, name FROM people ORDER BY id").execute().data
        assert rows == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob!"},
                        {"id": 3, "name": "cy!"}], rows
        conn.sql("CREATE TABLE checked (ok INTEGER)").execute()
'''


def test_execute_returns_data_and_rowcount(project: Project) -> None:
    project.add("001_results.py", RESULTS)
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert "checked" in project.tables()


BOUND = '''
    def apply(conn, environment):
        p = "?" if conn.dialect == "sqlite" else "%s"
        conn.sql("CREATE TABLE quotes (id INTEGER, body TEXT)").execute()
        conn.sql(f"INSERT INTO quotes VALUES ({p}, {p})",
                 (1, "O'Reilly'); DROP TABLE quotes; --")).execute()
        conn.sql(f"INSERT INTO quotes VALUES ({p}, {p})", [2, "50% off"]).execute()
        found = conn.sql(f"SELECT id FROM quotes WHERE body = {p}", ("50% off",)).execute()
        assert found.data == [{"id": 2}], found.data
'''


def test_params_bound_in_driver_style(project: Project) -> None:
    project.add("001_bound.py", BOUND)
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT id, body FROM quotes ORDER BY id") == [
        (1, "O'Reilly'); DROP TABLE quotes; --"), (2, "50% off")]


MULTI = '''
    def apply(conn, environment):
        result = conn.sql("""
            CREATE TABLE m1 (id INTEGER);
            CREATE TABLE m2 (note TEXT);
            INSERT INTO m2 VALUES ('a;b');
            SELECT note FROM m2;
        """).execute()
        assert result.data == [{"note": "a;b"}], result.data
'''


def test_multi_statement_string(project: Project) -> None:
    project.add("001_multi.py", MULTI)
    assert_clean_exit(project.cli("apply"), 0)
    assert {"m1", "m2"} <= project.tables()


CONTEXT = '''
    def apply(conn, environment):
        p = "?" if conn.dialect == "sqlite" else "%s"
        conn.sql("CREATE TABLE ctx (k TEXT, v TEXT)").execute()
        for key, value in [("environment", environment), ("conn.environment", conn.environment),
                           ("dialect", conn.dialect), ("schema", conn.vars["app_schema"])]:
            conn.sql(f"INSERT INTO ctx VALUES ({p}, {p})", (key, value)).execute()
'''


def test_conn_environment_vars_dialect(project: Project) -> None:
    project.add("001_ctx.py", CONTEXT)
    assert_clean_exit(project.cli("apply"), 0)
    assert dict(project.query("SELECT k, v FROM ctx")) == {
        "environment": "development", "conn.environment": "development",
        "dialect": project.dialect, "schema": "public"}


RENDER = '''
    def apply(conn, environment):
        conn.sql(conn.render(
            "CREATE TABLE {{ name | ident }} (v TEXT);"
            "INSERT INTO {{ name | ident }} VALUES ({{ value | literal }});"
            "INSERT INTO {{ name | ident }} VALUES ({{ environment | literal }});"
            "INSERT INTO {{ name | ident }} VALUES ({{ vars.app_schema | literal }});",
            name='odd "name"', value="it's; here")).execute()
'''


def test_conn_render_with_filters(project: Project) -> None:
    project.add("001_render.py", RENDER)
    assert_clean_exit(project.cli("apply"), 0)
    assert 'odd "name"' in project.tables()
    assert sorted(project.query('SELECT v FROM "odd ""name"""')) == [
        ("development",), ("it's; here",), ("public",)]


def test_conn_render_undefined_variable_fails_the_migration(project: Project) -> None:
    """Met only while the migration runs, after 000 committed: the migration failing,
    exit 1 (exit 2 would say nothing ran), at the line of the call."""
    project.add("000_first.sql", "CREATE TABLE first (id INTEGER);\n")
    project.add("001_render.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE r (id INTEGER)").execute()
            conn.sql(conn.render("SELECT {{ nope }}")).execute()
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "001_render.py line 3: conn.render() template line 1" in result.stderr, \
        result.stderr
    assert "nope" in result.stderr
    assert "r" not in project.tables() and "first" in project.tables()
    assert ("001", "apply", "failed") in project.journal()


def test_two_projects_with_same_file_name_do_not_collide(tmp_path: Path) -> None:
    first, second = sqlite_project_at(tmp_path / "one"), sqlite_project_at(tmp_path / "two")
    for project, table in ((first, "from_one"), (second, "from_two")):
        project.add("001_initial.py", f'''
            TABLE = "{table}"


            def apply(conn, environment):
                conn.sql(f"CREATE TABLE {{TABLE}} (id INTEGER)").execute()
        ''')
    apply_migrations(config=first.config)
    apply_migrations(config=second.config)
    assert "from_one" in first.tables() and "from_two" not in first.tables()
    assert "from_two" in second.tables() and "from_one" not in second.tables()


def test_missing_apply_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_noop.py", '''
        def rollback(conn, environment):
            pass
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_noop.py" in result.stderr and "apply" in result.stderr
    assert "t1" not in project.tables()


def test_syntax_error_is_exit_2_with_file_and_line(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_broken.py", '''
        def apply(conn, environment):
            conn.sql("SELECT 1").execute(
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_broken.py line 2" in result.stderr
    assert "t1" not in project.tables()


def test_import_error_is_exit_2_with_file_and_line(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_imports.py", '''
        """Needs a module that is not installed."""

        import cryomigrate_no_such_module_xyz


        def apply(conn, environment):
            pass
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_imports.py line 3" in result.stderr
    assert "cryomigrate_no_such_module_xyz" in result.stderr
    assert "t1" not in project.tables()


FAILING = '''
    def apply(conn, environment):
        conn.sql("CREATE TABLE half_done (id INTEGER)").execute()
        raise RuntimeError("boom in apply")
'''


def test_exception_in_apply_rolls_back_and_is_journaled(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_fails.py", FAILING)
    add_tables(project, "003_t3")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "002_fails.py" in result.stderr and "boom in apply" in result.stderr
    tables = project.tables()
    assert "half_done" not in tables
    assert "t1" in tables and "t3" not in tables
    assert history_versions(project) == ["001"]
    assert project.journal()[-1] == ("002", "apply", "failed")
    errors = project.query("SELECT error FROM cryomigrate_history_journal WHERE outcome = "
                           "'failed'")
    assert "boom in apply" in errors[0][0]


def test_exception_in_rollback_keeps_it_applied(project: Project) -> None:
    project.add("001_t.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE t (id INTEGER)").execute()


        def rollback(conn, environment):
            conn.sql("DROP TABLE t").execute()
            raise ValueError("cannot undo")
    ''')
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback")
    assert_clean_exit(result, 1)
    assert "cannot undo" in result.stderr
    assert "t" in project.tables()
    assert history_versions(project) == ["001"]
    assert project.journal()[-1] == ("001", "rollback", "failed")


def test_python_migration_without_rollback_is_irreversible(project: Project) -> None:
    project.add("001_once.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE once (id INTEGER)").execute()
    ''')
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback")
    assert_clean_exit(result, 2)
    assert "001_once.py" in result.stderr and "irreversible" in result.stderr
    assert history_versions(project) == ["001"]


def test_non_transactional_python_migration_sqlite(sqlite_project: Project) -> None:
    sqlite_project.add("001_vacuum.py", '''
        transactional = False


        def apply(conn, environment):
            conn.sql("CREATE TABLE v (id INTEGER)").execute()
            conn.sql("VACUUM").execute()
    ''')
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert history_versions(sqlite_project) == ["001"]


def test_non_transactional_python_migration_postgres(pg_project: Project) -> None:
    pg_project.add("001_idx.py", '''
        transactional = False


        def apply(conn, environment):
            conn.sql("CREATE TABLE big (id INTEGER)").execute()
            conn.sql("CREATE INDEX CONCURRENTLY big_id ON big (id)").execute()
    ''')
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT indexname FROM pg_indexes WHERE tablename = 'big'") == [
        ("big_id",)]


def test_transactional_must_be_a_bool(project: Project) -> None:
    project.add("001_x.py", '''
        transactional = "no"


        def apply(conn, environment):
            pass
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_x.py" in result.stderr and "transactional" in result.stderr


def test_docstring_first_line_is_not_required(project: Project) -> None:
    project.add("001_plain.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE plain (id INTEGER)").execute()
    ''')
    assert_clean_exit(project.cli("apply"), 0)
    assert "plain" in project.tables()


def test_users_commit_inside_conn_sql_is_not_sent(project: Project) -> None:
    project.add("001_commit.py", '''
        def apply(conn, environment):
            conn.sql("BEGIN; CREATE TABLE early (id INTEGER); COMMIT;").execute()
            raise RuntimeError("later failure")
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "not sent" in result.stderr
    assert "early" not in project.tables()


@pytest.mark.parametrize("sql", ["COMMIT", "BEGIN; CREATE TABLE early (id INTEGER); COMMIT;"])
def test_users_commit_with_parameters_is_not_sent_either(project: Project, sql: str) -> None:
    project.add("001_commit.py", f'''
        def apply(conn, environment):
            conn.sql("CREATE TABLE first (id INTEGER)").execute()
            conn.sql("{sql}", []).execute()
            raise RuntimeError("later failure")
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "not sent" in result.stderr and "later failure" in result.stderr
    assert not {"first", "early"} & project.tables()
    assert history_versions(project) == []


def test_users_rollback_with_parameters_is_refused(project: Project) -> None:
    project.add("001_rollback.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE never_kept (id INTEGER)").execute()
            conn.sql("ROLLBACK", []).execute()
    ''')
    result = project.cli("apply")
    assert_clean_exit(result, 1)  # met while it runs: the migration failing
    assert "ROLLBACK would undo the migration's own transaction" in result.stderr
    assert "never_kept" not in project.tables()
    assert history_versions(project) == []


@pytest.mark.parametrize("with_params", [False, True])
def test_a_caught_error_on_postgresql_still_fails_the_migration(pg_project: Project,
                                                                with_params: bool) -> None:
    """PostgreSQL aborts a transaction at its first failing statement: catching the error
    in Python cannot bring it back, so nothing after it may run, or commit, outside it."""
    failing = ('conn.sql("SELECT * FROM does_not_exist WHERE 1 = %s", [1])' if with_params
               else 'conn.sql("SELECT * FROM does_not_exist")')
    pg_project.add("001_catch.py", f'''
        def apply(conn, environment):
            conn.sql("CREATE TABLE caught (id int)").execute()
            try:
                {failing}.execute()
            except Exception as exc:
                print("caught:", exc)
            conn.sql("CREATE TABLE after_catch (id int)").execute()
    ''')
    pg_project.add("002_next.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE next_one (id int)").execute()
    ''')
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert "does_not_exist" in result.stderr and "aborted the transaction" in result.stderr
    assert not {"caught", "after_catch", "next_one"} & pg_project.tables()
    assert history_versions(pg_project) == []
    assert ("001", "apply", "failed") in pg_project.journal()


def test_a_savepoint_recovers_from_an_expected_error_on_postgresql(pg_project: Project
                                                                   ) -> None:
    pg_project.add("001_sp.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE kept (id int)").execute()
            conn.sql("SAVEPOINT before_try").execute()
            try:
                conn.sql("SELECT * FROM does_not_exist").execute()
            except Exception:
                conn.sql("ROLLBACK TO SAVEPOINT before_try").execute()
            conn.sql("CREATE TABLE after_catch (id int)").execute()
    ''')
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert {"kept", "after_catch"} <= pg_project.tables()
    assert history_versions(pg_project) == ["001"]


def test_a_rollback_that_is_no_function_is_refused_at_load(project: Project) -> None:
    project.add("001_a.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE a (id INTEGER)").execute()
        rollback = "DROP TABLE a"
    ''')
    for command in ("validate", "apply"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert "001_a.py: rollback is a str, not a function" in result.stderr
    assert history_versions(project) == []


def test_validate_warns_of_a_rollback_under_another_name(project: Project) -> None:
    project.add("001_a.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE a (id INTEGER)").execute()
        def down(conn, environment):
            conn.sql("DROP TABLE a").execute()
    ''')
    result = project.cli("validate")
    assert_clean_exit(result, 0)
    assert "001_a.py: has down() but no rollback(), so it is irreversible" in result.output


def test_a_caught_error_at_the_end_of_a_migration_followed_by_another_is_journaled(
        pg_project: Project) -> None:
    """Its COMMIT travels with the next migration's first message, where it fails: the
    failure is still journaled, and names the statement caught, not one caught before
    in a migration that recovered with a savepoint."""
    pg_project.add("001_recovers.py", '''
        def apply(conn, environment):
            conn.sql("SAVEPOINT s").execute()
            try:
                conn.sql("SELECT * FROM missing_in_001").execute()
            except Exception:
                conn.sql("ROLLBACK TO SAVEPOINT s").execute()
    ''')
    pg_project.add("002_catches.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE caught (id int)").execute()
            try:
                conn.sql("SELECT * FROM missing_in_002").execute()
            except Exception:
                pass
    ''')
    pg_project.add("003_next.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE next_one (id int)").execute()
    ''')
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert "missing_in_002" in result.stderr and "missing_in_001" not in result.stderr
    assert history_versions(pg_project) == ["001"]
    assert not {"caught", "next_one"} & pg_project.tables()
    assert ("002", "apply", "failed") in pg_project.journal()
