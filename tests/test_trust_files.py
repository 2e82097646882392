"""Issue 8, migration files: near misses get a clear input error before anything runs.

Each test drives the CLI and checks the exit code, that the message names the file (and
line), that no traceback reached the user and that nothing was written to the database.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cryomigrate import apply_migrations
from cryomigrate.errors import MigrationFileError
from cryomigrate.sqlscript import parse_sections
from tests.conftest import Project, corpus_dir
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    assert_untouched,
    history_versions,
    sqlite_project_at,
)

_USERS = "CREATE TABLE users (id INTEGER PRIMARY KEY);\n"


# --- item 1: near-miss section markers ----------------------------------------------------

@pytest.mark.parametrize("marker", [
    "-- cryomigrate: rollback",
    "-- CRYOMIGRATE:rollback",
    "-- cryomigrate:Rollback",
    "-- cryomigrate:rollback now",
    "-- cryomigrate : rollback",
    "/* cryomigrate:rollback */",
    "-- cryomigrate rollback",
    "-- cryomigrate_rollback",
    "-- cryomigrate.rollback",
    "-- cryomigrate;rollback",
    "-- cryomigrate\uff1arollback",
])
def test_near_miss_marker_is_an_input_error_and_nothing_runs(project: Project,
                                                             marker: str) -> None:
    add_tables(project, "001_t1")
    project.add("002_users.sql", f"-- cryomigrate:apply\n{_USERS}{marker}\nDROP TABLE t1;\n")
    for command in ("apply", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert "002_users.sql line 3" in result.stderr, result.stderr
    assert_untouched(project)


@pytest.mark.parametrize(("up", "down", "tool"), [
    ("-- migrate:up", "-- migrate:down", "dbmate"),
    ("-- +goose Up", "-- +goose Down", "goose"),
])
def test_another_tools_markers_in_cryomigrates_format_are_refused(
        sqlite_project: Project, up: str, down: str, tool: str) -> None:
    # Read as plain comments, the down section would run during apply.
    sqlite_project.add("001_users.sql", f"{up}\n{_USERS}{down}\nDROP TABLE users;\n")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_users.sql line 1" in result.stderr and f"format: {tool}" in result.stderr
    assert_untouched(sqlite_project)


def test_marker_after_sql_on_the_same_line_is_an_input_error(project: Project) -> None:
    project.add("001_users.sql", f"-- cryomigrate:apply\n{_USERS}"
                                 "SELECT 1; -- cryomigrate:rollback\nDROP TABLE users;\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_users.sql line 3" in result.stderr and "own" in result.stderr
    assert_untouched(project)


def test_accepted_marker_spellings_mean_exactly_the_marker(project: Project) -> None:
    project.add("001_users.sql", f"  --cryomigrate:apply \t\n{_USERS}"
                                 "\t-- cryomigrate:rollback  \r\nDROP TABLE users;\n")
    assert_clean_exit(project.cli("apply"), 0)
    assert "users" in project.tables()
    assert_clean_exit(project.cli("rollback"), 0)
    assert "users" not in project.tables()


def test_marker_text_inside_a_string_is_data(project: Project) -> None:
    project.add("001_notes.sql", """
        -- cryomigrate:apply
        CREATE TABLE notes (body TEXT);
        INSERT INTO notes VALUES ('first line
        -- cryomigrate:rollback
        \\set not a meta-command');
        -- cryomigrate:rollback
        DROP TABLE notes;
    """)
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT body FROM notes") == [
        ("first line\n-- cryomigrate:rollback\n\\set not a meta-command",)]


def test_marker_text_inside_a_dollar_quoted_body_is_data(pg_project: Project) -> None:
    pg_project.add("001_fn.sql", """
        CREATE FUNCTION doc() RETURNS text LANGUAGE sql AS $body$
        SELECT '-- cryomigrate:rollback is how a section starts'
        $body$;
        DO $$ BEGIN
        -- cryomigrate: a comment inside a function body is the function's business
        RAISE NOTICE 'ok %', E'\\\\set';
        END $$;
    """)
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT doc()") == [
        ("-- cryomigrate:rollback is how a section starts",)]


def test_every_corpus_file_still_parses() -> None:
    corpus = corpus_dir()
    assert corpus is not None
    files = sorted(corpus.rglob("*.sql"))
    assert files
    for path in files:
        text = path.read_bytes().decode("utf-8-sig")
        if "-- +goose" in text:  # openfga: goose's own layout, read with format: goose
            with pytest.raises(MigrationFileError, match="format: goose"):
                parse_sections(text, path.name)
            continue
        parse_sections(text, path.name)


# --- item 7: async and generator functions -----------------------------------------------

@pytest.mark.parametrize(("source", "what"), [
    ("async def apply(conn, environment):\n    pass\n", "async def"),
    ("def apply(conn, environment):\n    yield\n", "generator"),
    ("async def apply(conn, environment):\n    yield\n", "async generator"),
    ("def apply(conn, environment):\n    pass\n\n\n"
     "async def rollback(conn, environment):\n    pass\n", "async def"),
])
def test_async_or_generator_functions_are_refused_at_load(project: Project, source: str,
                                                          what: str) -> None:
    add_tables(project, "001_t1")
    project.add("002_lazy.py", source)
    for command in ("apply", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert "002_lazy.py line" in result.stderr and what in result.stderr
    assert_untouched(project)


@pytest.mark.parametrize("source", [
    "def apply(conn):\n    pass\n",
    "def apply():\n    pass\n",
    "def apply(conn, environment, extra):\n    pass\n",
    "def apply(conn, environment):\n    pass\n\n\ndef rollback(conn):\n    pass\n",
])
def test_a_function_that_cannot_take_conn_and_environment_is_refused_at_load(
        project: Project, source: str) -> None:
    # Found before 001 runs, not when 002's turn comes.
    add_tables(project, "001_t1")
    project.add("002_arity.py", source)
    for command in ("apply", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert "002_arity.py line" in result.stderr, result.stderr
        assert "cannot be called as" in result.stderr, result.stderr
    assert_untouched(project)


@pytest.mark.parametrize("source", [
    "def apply(conn, environment=None):\n    pass\n",
    "def apply(*args):\n    pass\n",
    "def apply(conn, environment, extra=1, **more):\n    pass\n",
    "def apply(conn, environment):\n    pass\n\n\nrollback = None\n",
    # A decorator supplying an argument: what is called is the wrapper.
    "import functools\n\n\ndef with_batch(f):\n    @functools.wraps(f)\n"
    "    def wrapper(conn, environment):\n        return f(conn, environment, 500)\n"
    "    return wrapper\n\n\n@with_batch\ndef apply(conn, environment, batch):\n"
    "    pass\n",
])
def test_a_function_that_can_take_conn_and_environment_is_accepted(project: Project,
                                                                   source: str) -> None:
    project.add("001_loose.py", source)
    assert_clean_exit(project.cli("apply"), 0)


def test_function_returning_a_coroutine_fails_instead_of_being_recorded(
        project: Project) -> None:
    project.add("001_wrapped.py", """
        async def _later(conn):
            conn.sql("CREATE TABLE never (id INTEGER)").execute()


        def apply(conn, environment):
            return _later(conn)
    """)
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "001_wrapped.py" in result.stderr and "coroutine" in result.stderr
    assert "never" not in project.tables()
    assert history_versions(project) == []

# --- item 9: symbolic links ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["002_gone.sql", "notes.sql", "003_gone.py"])
def test_broken_symlink_is_an_input_error(project: Project, name: str) -> None:
    add_tables(project, "001_t1")
    (project.migrations / name).symlink_to(project.root / "nowhere.sql")
    for command in ("apply", "status", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert name in result.stderr and "point to nothing" in result.stderr
    assert_untouched(project)


def test_symlink_to_a_real_file_works_as_the_file(project: Project) -> None:
    shared = project.root / "shared_users.sql"
    shared.write_text(f"-- cryomigrate:apply\n{_USERS}-- cryomigrate:rollback\n"
                      "DROP TABLE users;\n", encoding="utf-8")
    (project.migrations / "001_users.sql").symlink_to(shared)
    assert_clean_exit(project.cli("apply"), 0)
    assert history_versions(project) == ["001"]
    assert_clean_exit(project.cli("rollback"), 0)
    assert "users" not in project.tables()


# --- item 12: values out of range ---------------------------------------------------------

def test_version_beyond_bigint_is_an_input_error_at_scan(project: Project) -> None:
    add_tables(project, "001_t1", "99999999999999999999_huge")
    for command in ("apply", "status", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert "99999999999999999999_huge.sql" in result.stderr
    assert_untouched(project)


def test_largest_bigint_version_is_fine(sqlite_project: Project) -> None:
    add_tables(sqlite_project, "9223372036854775807_last")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert history_versions(sqlite_project) == ["9223372036854775807"]


def test_target_beyond_bigint_is_an_input_error(sqlite_project: Project) -> None:
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("apply", "--target", "99999999999999999999")
    assert_clean_exit(result, 2)
    assert_untouched(sqlite_project)


def test_new_with_an_overlong_name_is_an_input_error(sqlite_project: Project) -> None:
    result = sqlite_project.cli("new", "x" * 300)
    assert_clean_exit(result, 2)
    assert "255" in result.stderr
    assert list(sqlite_project.migrations.iterdir()) == []


# --- item 14: psql-only input and NUL bytes ---------------------------------------------

def test_copy_from_stdin_is_psql_only(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_seed.sql", "CREATE TABLE seed (id INTEGER, name TEXT);\n"
                                "COPY seed (id, name) FROM stdin;\n1\tone\n2\ttwo\n\\.\n")
    for command in ("apply", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert "002_seed.sql line 2" in result.stderr
        assert "not SQL: psql only" in result.stderr
    assert_untouched(project)


@pytest.mark.parametrize("command", [
    "\\set ON_ERROR_STOP on", "\\i other.sql", "\\connect app", "\\c app", "  \\gexec"])
def test_psql_meta_command_is_psql_only(project: Project, command: str) -> None:
    add_tables(project, "001_t1")
    project.add("002_meta.sql", f"CREATE TABLE meta (id INTEGER);\n{command}\nSELECT 1;\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_meta.sql line 2" in result.stderr and "not SQL: psql only" in result.stderr
    assert command.split()[0] in result.stderr
    assert_untouched(project)


def test_backslashes_in_strings_are_fine(project: Project) -> None:
    escape = "E'\\\\set\\n'" if project.dialect == "postgresql" else "'\\set' || char(10)"
    project.add("001_paths.sql", "CREATE TABLE paths (p TEXT);\n"
                                 f"INSERT INTO paths VALUES ('C:\\temp\n\\i not a command');\n"
                                 f"INSERT INTO paths VALUES ({escape});\n")
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT p FROM paths") == [("C:\\temp\n\\i not a command",),
                                                    ("\\set\n",)]


def test_nul_byte_is_an_input_error_saying_nothing_was_sent(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_nul.sql", b"CREATE TABLE n (id INTEGER);\nSELECT '\x00';\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_nul.sql line 2" in result.stderr and "NUL" in result.stderr
    assert "nothing was sent" in result.stderr
    assert_untouched(project)


# --- item 11: the file's own BEGIN/COMMIT was dropped -------------------------------------

def test_failure_after_dropped_transaction_control_says_so(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_wrapped.sql", """
        BEGIN;
        CREATE TABLE wrapped (id INTEGER);
        COMMIT;
        INSERT INTO no_such_table VALUES (1);
    """)
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    message = result.stderr
    assert "002_wrapped.sql line 4" in message
    assert "BEGIN at line 1" in message and "COMMIT at line 3" in message
    assert "-- cryomigrate:no-transaction" in message
    assert history_versions(project) == ["001"]
    assert "wrapped" not in project.tables()


def test_transaction_local_setting_in_dropped_begin_lasts_with_advice(
        pg_project: Project) -> None:
    # The shape of dbdev's reserved_user_accts.sql: a setting local to the file's own
    # transaction, which now lasts to the end of the file.
    pg_project.add("001_local.sql", """
        BEGIN;
        SELECT set_config('default_transaction_read_only', 'on', true);
        SET LOCAL transaction_read_only = on;
        COMMIT;
        CREATE TABLE after_commit (id INTEGER);
    """)
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert "001_local.sql line 5" in result.stderr
    assert "not sent" in result.stderr and "no-transaction" in result.stderr
    assert "after_commit" not in pg_project.tables()


def test_success_with_dropped_transaction_control_is_unchanged(project: Project) -> None:
    project.add("001_wrapped.sql", "BEGIN;\nCREATE TABLE w (id INTEGER);\nCOMMIT;\n")
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert history_versions(project) == ["001"] and "w" in project.tables()


# --- item 15: validate and new without the database URL ---------------------------------

def _production_from_unset_variable(project: Project) -> dict[str, str | None]:
    project.write_config(f"""
        environments:
          development:
            database: {project.url}
          production:
            database: ${{CM_TEST_TRUST_DATABASE_URL}}
    """)
    return {"CM_TEST_TRUST_DATABASE_URL": None}


def test_validate_without_the_database_url_skips_only_database_checks(
        sqlite_project: Project) -> None:
    env = _production_from_unset_variable(sqlite_project)
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("validate", "--env", "production", env=env)
    assert_clean_exit(result, 0)
    assert "database checks skipped" in result.stdout
    assert "CM_TEST_TRUST_DATABASE_URL" in result.stdout
    sqlite_project.add("002_bad.sql", "-- cryomigrate:rolback\nSELECT 1;\n")
    result = sqlite_project.cli("validate", "--env", "production", env=env)
    assert_clean_exit(result, 2)
    assert "002_bad.sql line 1" in result.stderr
    assert_untouched(sqlite_project)


def test_validate_warns_of_a_var_whose_variable_is_unset_and_names_it(
        sqlite_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CM_TEST_UNSET_TOKEN", raising=False)
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            vars: {api_token: "${CM_TEST_UNSET_TOKEN}"}
    """)
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("validate")
    assert_clean_exit(result, 0)  # validate runs where secrets are absent, as in CI
    assert "vars.api_token takes ${CM_TEST_UNSET_TOKEN}, which is not set" in result.output
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "CM_TEST_UNSET_TOKEN is not set" in result.stderr  # named, never masked
    assert_untouched(sqlite_project)


def test_new_without_the_database_url(sqlite_project: Project) -> None:
    env = _production_from_unset_variable(sqlite_project)
    result = sqlite_project.cli("new", "add_x", "--env", "production", env=env)
    assert_clean_exit(result, 0)
    assert (sqlite_project.migrations / "001_add_x.py").is_file()


# --- item 16: helpers, scaffolds, the folder, every problem at once ------------------------

_HELPER_USER = '''
    from _helpers import create


    def apply(conn, environment):
        create(conn)


    def rollback(conn, environment):
        from _helpers import drop  # imported while it runs, too
        drop(conn)
'''


def _helpers(table: str) -> str:
    return f'''
        def create(conn):
            conn.sql("CREATE TABLE {table} (id INTEGER)").execute()


        def drop(conn):
            conn.sql("DROP TABLE {table}").execute()
    '''


def test_python_migration_imports_helpers_beside_it(project: Project) -> None:
    project.add("_helpers.py", _helpers("helped"))
    project.add("001_helped.py", _HELPER_USER)
    assert_clean_exit(project.cli("validate"), 0)
    assert_clean_exit(project.cli("apply"), 0)
    assert "helped" in project.tables()
    assert_clean_exit(project.cli("rollback"), 0)
    assert "helped" not in project.tables()
    assert not (project.migrations / "__pycache__").exists()


def test_helpers_of_two_projects_do_not_leak(tmp_path: Path) -> None:
    path_before, modules_before = list(sys.path), set(sys.modules)
    for name in ("one", "two"):
        project = sqlite_project_at(tmp_path / name)
        project.add("_helpers.py", _helpers(f"from_{name}"))
        project.add("001_helped.py", _HELPER_USER)
        apply_migrations(config=project.config)
        other = "from_two" if name == "one" else "from_one"
        assert f"from_{name}" in project.tables() and other not in project.tables()
    assert sys.path == path_before
    assert "_helpers" not in sys.modules
    assert not any(str(tmp_path) in str(getattr(sys.modules[m], "__file__", "") or "")
                   for m in set(sys.modules) - modules_before)


def test_python_scaffold_rollback_is_not_a_silent_no_op(project: Project) -> None:
    assert_clean_exit(project.cli("new", "one"), 0)
    result = project.cli("validate")
    assert_clean_exit(result, 0)
    assert "warning: 001_one.py" in result.stdout and "NotImplementedError" in result.stdout
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback")
    assert_clean_exit(result, 1)
    assert "001_one.py" in result.stderr and "rollback" in result.stderr
    assert history_versions(project) == ["001"]


def test_validate_warns_about_an_empty_sql_rollback_section(sqlite_project: Project) -> None:
    assert_clean_exit(sqlite_project.cli("new", "two", "--sql"), 0)
    add_tables(sqlite_project, "002_t2")
    result = sqlite_project.cli("validate")
    assert_clean_exit(result, 0)
    assert "warning: 001_two.sql" in result.stdout and "empty" in result.stdout
    assert "002_t2" not in result.stdout


def test_new_creates_a_missing_migrations_folder(sqlite_project: Project) -> None:
    sqlite_project.migrations.rmdir()
    result = sqlite_project.cli("new", "initial")
    assert_clean_exit(result, 0)
    assert (sqlite_project.migrations / "001_initial.py").is_file()


def test_validate_reports_every_file_problem_at_once(sqlite_project: Project) -> None:
    project = sqlite_project
    add_tables(project, "001_t1", "002_a", "002_b")
    project.add("003-misnamed.sql", "SELECT 1;")
    (project.migrations / "004_gone.sql").symlink_to(project.root / "nowhere.sql")
    project.add("005_marker.sql", "-- cryomigrate:apply\nSELECT 1;\n-- cryomigrate: rollback\n")
    project.add("006_imports.py", "import no_such_module_anywhere\n")
    project.add("007_template.sql.j2", "SELECT {{ vars.undefined_thing }};\n")
    result = project.cli("validate")
    assert_clean_exit(result, 2)
    output = result.stdout + result.stderr
    for needle in ("002_a.sql", "002_b.sql", "003-misnamed.sql", "004_gone.sql",
                   "005_marker.sql line 3", "006_imports.py", "007_template.sql.j2"):
        assert needle in output, needle
    assert_untouched(project)

