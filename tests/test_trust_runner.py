"""Issue 8, the runner's half: history tables only their owner can touch (item 3), no
session state leaking between migrations (5), ``sys.exit`` failing a migration (6), what a
migration prints kept off stdout (8), timeouts for non-transactional migrations (10), and
Ctrl-C inside a migration (13). DESIGN 4, 5 and 6."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests import helpers_pg as h
from tests.conftest import CLUSTER_WIDE, PG_ADMIN_URL, PgDatabase, Project, corpus_dir
from tests.helpers_core import add_tables, assert_clean_exit, history_versions

HISTORY_TABLES = ("cryomigrate_history", "cryomigrate_history_journal")
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
# Roles and cluster settings are shared by every database: such tests run one at a time.


def _timeouts(project: Project, **settings: str) -> None:
    lines = "".join(f"    {key}: {value}\n" for key, value in settings.items())
    project.config.write_text(f"environments:\n  development:\n    database: {project.url}\n"
                              f"{lines}", encoding="utf-8")


def _columns(project: Project, table: str) -> list[str]:
    return [r[0] for r in project.query(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position")]


def _journal_errors(project: Project) -> list[tuple[str, str, str | None]]:
    return [(r[0], r[1], r[2]) for r in project.query(
        "SELECT version, outcome, error FROM cryomigrate_history_journal ORDER BY id")]


# ---------------------------------------------------------------------------------------
# Item 3: on Supabase, anon and authenticated can neither read nor wipe the history


@pytest.fixture
def supabase_stubbed(pg_project: Project, pg_database: PgDatabase) -> Iterator[Project]:
    """A PostgreSQL project whose database has the Supabase stub: roles anon,
    authenticated and service_role, and default privileges granting them every new table
    in ``public``. The stub's cluster-wide roles are dropped again if it created them."""
    stub = corpus_dir()
    assert stub is not None
    with h.cluster_restored(pg_database):
        h.run_sql_file(pg_database.url, stub / "supabase_stub.sql")
        yield pg_project


def _public_privileges(project: Project) -> list[tuple[str, str]]:
    """Every (table, privilege) that PUBLIC holds on a history table, by two readings of
    the catalog: has_table_privilege and the ACL itself."""
    held = []
    for table in HISTORY_TABLES:
        for privilege in PRIVILEGES:
            if project.query(f"SELECT has_table_privilege('public', 'public.{table}', "
                             f"'{privilege}')")[0][0]:
                held.append((table, privilege))
        held += [(table, row[0]) for row in project.query(
            f"SELECT a.privilege_type FROM pg_class c, aclexplode(c.relacl) a "
            f"WHERE c.oid = 'public.{table}'::regclass AND a.grantee = 0")]
    return held


def _row_security(project: Project) -> dict[str, bool]:
    return dict(project.query(
        "SELECT relname::text, relrowsecurity FROM pg_class WHERE relname IN "
        "('cryomigrate_history', 'cryomigrate_history_journal') "
        "AND relnamespace = 'public'::regnamespace"))


@CLUSTER_WIDE
def test_supabase_api_roles_can_neither_read_nor_wipe_the_history(
        supabase_stubbed: Project) -> None:
    import psycopg

    project = supabase_stubbed
    add_tables(project, "001_app")
    assert_clean_exit(project.cli("apply"), 0)
    # The stub's default privileges are in force: the app's own table is open to anon.
    assert project.query("SELECT has_table_privilege('anon', 'public.app', 'SELECT')") == [
        (True,)]

    with psycopg.connect(project.url, autocommit=True) as conn:
        for role in ("anon", "authenticated"):
            for table in HISTORY_TABLES:
                for statement in (f"SELECT * FROM public.{table}",
                                  f"DELETE FROM public.{table}",
                                  f"INSERT INTO public.{table} DEFAULT VALUES",
                                  f"TRUNCATE public.{table}"):
                    conn.execute(f"SET ROLE {role}")  # type: ignore[arg-type]
                    try:
                        with pytest.raises(psycopg.errors.InsufficientPrivilege):
                            conn.execute(statement)  # type: ignore[arg-type]
                    finally:
                        conn.execute("RESET ROLE")
            sequence = conn.execute("SELECT pg_get_serial_sequence("
                                    "'public.cryomigrate_history_journal', 'id')").fetchone()
            assert sequence is not None
            assert conn.execute("SELECT has_sequence_privilege(%s, %s, 'USAGE') OR "
                                "has_sequence_privilege(%s, %s, 'UPDATE')",
                                (role, sequence[0], role, sequence[0])).fetchone() == (False,)

    assert _public_privileges(project) == []
    assert _row_security(project) == {table: True for table in HISTORY_TABLES}
    # ... and the owner still works with them.
    assert project.history() == [("001", "app", "applied")]
    assert project.journal() == [("001", "apply", "ok")]


def test_on_plain_postgres_public_gets_nothing_either(pg_project: Project) -> None:
    # A database whose default privileges hand new tables to PUBLIC: the history tables
    # must still end up with no privilege for PUBLIC.
    h.execute(pg_project.url, "ALTER DEFAULT PRIVILEGES IN SCHEMA public "
                              "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO PUBLIC")
    add_tables(pg_project, "001_app")
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT has_table_privilege('public', 'public.app', 'DELETE')") \
        == [(True,)]  # the default privileges are in force
    assert _public_privileges(pg_project) == []
    assert _row_security(pg_project) == {table: True for table in HISTORY_TABLES}
    assert pg_project.history() == [("001", "app", "applied")]


# ---------------------------------------------------------------------------------------
# Item 5: what a migration sets for the session never reaches the next one, nor our writes


def _schema_of(project: Project, table: str) -> list[str]:
    return [r[0] for r in project.query(
        f"SELECT table_schema FROM information_schema.tables WHERE table_name = '{table}'")]


def test_a_pg_dump_style_empty_search_path_still_records_the_migration(
        pg_project: Project) -> None:
    pg_project.add("001_dump.sql", """
        SELECT pg_catalog.set_config('search_path', '', false);
        CREATE TABLE public.t (id int);
    """)
    pg_project.add("002_plain.sql", "CREATE TABLE t2 (id int);\n")
    result = pg_project.cli("apply")
    assert_clean_exit(result, 0)
    assert pg_project.history() == [("001", "dump", "applied"), ("002", "plain", "applied")]
    assert pg_project.journal() == [("001", "apply", "ok"), ("002", "apply", "ok")]
    assert _schema_of(pg_project, "t") == ["public"]
    assert _schema_of(pg_project, "t2") == ["public"]


def test_a_search_path_set_in_one_migration_does_not_move_the_next_ones_tables(
        pg_project: Project) -> None:
    pg_project.add("001_other.sql", """
        CREATE SCHEMA other;
        SET search_path TO other;
        CREATE TABLE t1 (id int);
    """)
    pg_project.add("002_t2.sql", "CREATE TABLE t2 (id int);\n")
    assert_clean_exit(pg_project.cli("apply"), 0)  # both in one command
    assert _schema_of(pg_project, "t1") == ["other"]  # the migration's own SET did apply
    assert _schema_of(pg_project, "t2") == ["public"]
    assert _schema_of(pg_project, "cryomigrate_history") == ["public"]
    assert history_versions(pg_project) == ["001", "002"]


@CLUSTER_WIDE
def test_a_role_set_in_one_migration_does_not_own_the_next_ones_tables(
        pg_project: Project) -> None:
    role = f"cm_role_{uuid.uuid4().hex[:10]}"
    h.execute(PG_ADMIN_URL, f"CREATE ROLE {role} NOLOGIN")
    try:
        h.execute(pg_project.url, f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
        pg_project.add("001_as_role.sql", f"""
            SET ROLE {role};
            CREATE TABLE t1 (id int);
        """)
        pg_project.add("002_t2.sql", "CREATE TABLE t2 (id int);\n")
        pg_project.add("003_t3.py", """
            def apply(conn, environment):
                conn.sql("CREATE TABLE t3 (id int)").execute()
        """)
        assert_clean_exit(pg_project.cli("apply"), 0)
        owners = dict(pg_project.query(
            "SELECT tablename::text, tableowner::text FROM pg_tables "
            "WHERE schemaname = 'public'"))
        assert owners == {"t1": role, "t2": "postgres", "t3": "postgres",
                          "cryomigrate_history": "postgres",
                          "cryomigrate_history_journal": "postgres"}, owners
        assert history_versions(pg_project) == ["001", "002", "003"]
    finally:
        h.execute(pg_project.url, f"DROP OWNED BY {role}")
        h.execute(PG_ADMIN_URL, f"DROP ROLE {role}")


def test_a_python_migrations_search_path_does_not_reach_the_next_migration(
        pg_project: Project) -> None:
    pg_project.add("001_other.py", """
        def apply(conn, environment):
            conn.sql("CREATE SCHEMA other").execute()
            conn.sql("SET search_path TO other").execute()
            conn.sql("CREATE TABLE t1 (id int)").execute()
    """)
    pg_project.add("002_t2.sql", "CREATE TABLE t2 (id int);\n")
    pg_project.add("003_t3.py", """
        def apply(conn, environment):
            conn.sql("CREATE TABLE t3 (id int)").execute()
    """)
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert _schema_of(pg_project, "t1") == ["other"]
    assert _schema_of(pg_project, "t2") == ["public"]
    assert _schema_of(pg_project, "t3") == ["public"]
    assert history_versions(pg_project) == ["001", "002", "003"]


def test_sqlite_pragmas_in_one_migration_do_not_break_the_next(
        sqlite_project: Project) -> None:
    sqlite_project.add("001_pragmas.sql", """
        PRAGMA foreign_keys = ON;
        PRAGMA recursive_triggers = ON;
        CREATE TABLE t1 (id INTEGER);
    """)
    add_tables(sqlite_project, "002_t2")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert {"t1", "t2"} <= sqlite_project.tables()
    assert history_versions(sqlite_project) == ["001", "002"]


def test_sqlite_query_only_set_by_a_migration_does_not_reach_our_writes(
        sqlite_project: Project) -> None:
    # DESIGN 4: cryomigrate's own statements never depend on the user's settings.
    sqlite_project.add("001_readonly.sql", """
        CREATE TABLE t1 (id INTEGER);
        PRAGMA query_only = ON;
    """)
    add_tables(sqlite_project, "002_t2")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert history_versions(sqlite_project) == ["001", "002"]


# ---------------------------------------------------------------------------------------
# Item 6: sys.exit() in a migration is that migration failing


@pytest.mark.parametrize("exit_call", ["sys.exit()", "sys.exit(0)", "raise SystemExit(3)"])
def test_sys_exit_in_a_python_migration_fails_it(project: Project, exit_call: str) -> None:
    add_tables(project, "001_t1")
    project.add("002_quits.py", f"""
        import sys


        def apply(conn, environment):
            conn.sql("CREATE TABLE half (id INTEGER)").execute()
            {exit_call}
    """)
    add_tables(project, "003_t3")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "002_quits" in result.stderr and "SystemExit" in result.stderr, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not {"half", "t3"} & project.tables()
    assert history_versions(project) == ["001"]
    assert project.journal() == [("001", "apply", "ok"), ("002", "apply", "failed")]


# ---------------------------------------------------------------------------------------
# Item 8: what a migration prints goes to stderr; stdout is cryomigrate's


PRINTS_IN_APPLY = """
    def apply(conn, environment):
        print("hello from apply")
        conn.sql("CREATE TABLE t2 (id INTEGER)").execute()
"""
PRINTS_AT_IMPORT = '\n    print("hello from import")\n\n' + PRINTS_IN_APPLY


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_print_inside_apply_goes_to_stderr(project: Project, fmt: str) -> None:
    add_tables(project, "001_t1")
    project.add("002_prints.py", PRINTS_IN_APPLY)
    result = h.run(project.config, "apply", "--format", fmt)
    assert result.returncode == 0, result.output
    assert "hello from apply" in result.stderr and "hello" not in result.stdout, result.output
    if fmt == "json":
        document = json.loads(result.stdout)
        assert [m["version"] for m in document["applied"]] == ["001", "002"]
    assert history_versions(project) == ["001", "002"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_print_at_import_time_goes_to_stderr(project: Project, fmt: str) -> None:
    add_tables(project, "001_t1")
    project.add("002_prints.py", PRINTS_AT_IMPORT)
    result = h.run(project.config, "apply", "--format", fmt)
    assert result.returncode == 0, result.output
    assert "hello from import" in result.stderr, result.output
    assert "hello" not in result.stdout, result.output
    if fmt == "json":
        document = json.loads(result.stdout)
        assert [m["version"] for m in document["applied"]] == ["001", "002"]


# ---------------------------------------------------------------------------------------
# Item 10: lock_timeout and statement_timeout for non-transactional migrations


def test_lock_timeout_applies_to_a_non_transactional_migration(pg_project: Project) -> None:
    import psycopg

    _timeouts(pg_project, lock_timeout="1s")
    pg_project.add("001_t.sql", "CREATE TABLE t (id int);\n")
    assert h.run(pg_project.config, "apply").returncode == 0
    pg_project.add("002_alter.sql", "-- cryomigrate:no-transaction\n"
                   "ALTER TABLE t ADD COLUMN c int;\n")
    with psycopg.connect(pg_project.url) as holder:  # holds the lock until the block ends
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = h.run(pg_project.config, "apply", timeout=30)
        elapsed = time.monotonic() - started
        holder.rollback()
    assert result.returncode == 1, result.output
    assert elapsed < 5, f"lock_timeout 1s fired after {elapsed:.1f}s"
    assert "55P03" in result.stderr and "002_alter.sql" in result.stderr, result.output
    assert "dirty" in result.stderr and "repair --mark-applied 002" in result.stderr, \
        result.output
    assert "Traceback" not in result.stderr
    assert _columns(pg_project, "t") == ["id"]
    assert h.status_states(pg_project.config) == {"001": "applied", "002": "dirty"}
    assert [(v, o) for v, o, _ in _journal_errors(pg_project)] == [
        ("001", "ok"), ("002", "failed")]


def test_statement_timeout_applies_to_a_non_transactional_migration(
        pg_project: Project) -> None:
    _timeouts(pg_project, statement_timeout="500ms")
    pg_project.add("001_slow.sql", "-- cryomigrate:no-transaction\nSELECT pg_sleep(5);\n")
    started = time.monotonic()
    result = h.run(pg_project.config, "apply", timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.output
    assert elapsed < 4.5, f"statement_timeout 500ms fired after {elapsed:.1f}s"
    assert "57014" in result.stderr and "001_slow.sql" in result.stderr, result.output
    assert "dirty" in result.stderr and "Traceback" not in result.stderr, result.output
    assert h.status_states(pg_project.config) == {"001": "dirty"}


def test_session_timeouts_end_with_the_non_transactional_migration(
        pg_project: Project) -> None:
    # The environment sets no timeout. A non-transactional migration sets short ones for
    # its session (as a user tuning one ALTER would); the migrations after it in the same
    # run, transactional or not, and cryomigrate's own writes, must not inherit them.
    pg_project.add("001_tuned.sql", """
        -- cryomigrate:no-transaction
        SET statement_timeout = '300ms';
        SET lock_timeout = '300ms';
        CREATE TABLE t1 (id int);
    """)
    pg_project.add("002_sleeps.sql", "SELECT pg_sleep(1);\nCREATE TABLE t2 (id int);\n")
    pg_project.add("003_sleeps_outside.sql", "-- cryomigrate:no-transaction\n"
                   "SELECT pg_sleep(1);\n")
    pg_project.add("004_reads.py", """
        def apply(conn, environment):
            row = conn.sql("SELECT current_setting('statement_timeout') AS st, "
                           "current_setting('lock_timeout') AS lt").execute().data[0]
            conn.sql("CREATE TABLE seen (st text, lt text)").execute()
            conn.sql("INSERT INTO seen VALUES (%s, %s)", (row["st"], row["lt"])).execute()
    """)
    result = h.run(pg_project.config, "apply", timeout=60)
    assert result.returncode == 0, result.output
    assert history_versions(pg_project) == ["001", "002", "003", "004"]
    assert pg_project.query("SELECT st, lt FROM seen") == [("0", "0")]


def test_environment_timeouts_do_not_outlive_the_non_transactional_migration(
        pg_project: Project) -> None:
    # With the environment's timeouts, the transactional migration after a
    # non-transactional one sees exactly the environment's values, not something left over.
    _timeouts(pg_project, lock_timeout="4s", statement_timeout="5s")
    pg_project.add("001_outside.sql", "-- cryomigrate:no-transaction\n"
                   "CREATE TABLE t1 (id int);\n")
    pg_project.add("002_reads.py", """
        def apply(conn, environment):
            row = conn.sql("SELECT current_setting('statement_timeout') AS st, "
                           "current_setting('lock_timeout') AS lt, "
                           "current_setting('search_path') AS sp").execute().data[0]
            conn.sql("CREATE TABLE seen (st text, lt text, sp text)").execute()
            conn.sql("INSERT INTO seen VALUES (%s, %s, %s)",
                     (row["st"], row["lt"], row["sp"])).execute()
    """)
    result = h.run(pg_project.config, "apply", timeout=60)
    assert result.returncode == 0, result.output
    assert pg_project.query("SELECT st, lt, sp FROM seen") == [("5s", "4s",
                                                               '"$user", public')]


# ---------------------------------------------------------------------------------------
# Item 13: Ctrl-C inside a migration


SLEEPS_INSIDE = '''
"""Create a table, say so through a marker file, then sleep until interrupted."""
import pathlib
import time

transactional = {transactional}
ROOT = pathlib.Path(__file__).resolve().parents[1]


def apply(conn, environment):
    conn.sql("CREATE TABLE half (id INTEGER)").execute()
    (ROOT / "inside").touch()
    time.sleep(60)
'''


def _interrupt_inside(project: Project, transactional: bool, *args: str) -> h.Completed:
    project.add("002_sleeps.py", SLEEPS_INSIDE.format(transactional=transactional))
    process = h.spawn(project.config, "apply", *args)
    h.wait_until((project.root / "inside").exists, 60, "the run to enter 002", process)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    result = h.finish(process, timeout=20)
    assert time.monotonic() - started < 10, result.output
    return result


def test_ctrl_c_inside_a_non_transactional_migration(project: Project) -> None:
    add_tables(project, "001_t1")
    result = _interrupt_inside(project, transactional=False)
    assert result.returncode == 130, result.output
    assert "Traceback" not in result.stderr, result.output
    assert "002_sleeps.py" in result.stderr and "dirty" in result.stderr, result.output
    assert "cryomigrate repair --mark-applied 002" in result.stderr, result.output
    assert "cryomigrate repair --mark-pending 002" in result.stderr, result.output
    journal = _journal_errors(project)
    assert [(v, o) for v, o, _ in journal] == [("001", "ok"), ("002", "failed")]
    assert "interrupted" in (journal[1][2] or ""), journal
    assert h.status_states(project.config) == {"001": "applied", "002": "dirty"}

    # The next run says at once that it waits for the dirty migration, then gives up.
    lines: list[tuple[float, str]] = []
    process = subprocess.Popen(h.cli_command(project.config, "apply", "--lock-wait", "3"),
                               cwd=project.root, env=h.cli_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    started = time.monotonic()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append((time.monotonic() - started, line))

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    ended = time.monotonic() - started
    reader.join(timeout=10)
    assert process.stdout is not None
    stdout = process.stdout.read()
    process.stdout.close()
    text = "".join(line for _, line in lines)
    assert process.returncode == 4, f"exit {process.returncode}\n{stdout}\n{text}"
    assert 3 <= ended < 15, (ended, text)
    waiting = [at for at, line in lines if "002_sleeps" in line and "waiting" in line]
    assert waiting, text
    # Said as the wait began (well before the 3 s ran out), not after it.
    assert waiting[0] < ended - 2, (waiting[0], ended, text)
    assert "repair --mark-applied 002" in text and "Traceback" not in text, text


def test_ctrl_c_inside_a_transactional_migration(project: Project) -> None:
    add_tables(project, "001_t1")
    result = _interrupt_inside(project, True, "--format", "json")
    assert result.returncode == 130, result.output
    assert "Traceback" not in result.stderr, result.output
    document = json.loads(result.stdout)  # still exactly one document
    assert document["error"]["code"] == 130, document
    assert [m["version"] for m in document["applied"]] == ["001"], document
    assert "002_sleeps.py" in result.stderr and "rolled back" in result.stderr, result.output
    assert "half" not in project.tables()
    assert history_versions(project) == ["001"]
    journal = _journal_errors(project)
    assert [(v, o) for v, o, _ in journal] == [("001", "ok"), ("002", "failed")]
    assert "interrupted" in (journal[1][2] or ""), journal
    assert h.status_states(project.config) == {"001": "applied", "002": "pending"}



# ---------------------------------------------------------------------------------------
# Item 14: a failure creating the history table says that is what failed


def test_a_failure_creating_the_history_table_names_it(pg_project: Project,
                                                      pg_database: PgDatabase) -> None:
    # PostgreSQL 15 gives PUBLIC no CREATE on schema public: a role with only CONNECT
    # cannot create the history table, and must be told that this is what failed.
    role = f"cm_role_{uuid.uuid4().hex[:8]}"
    h.execute(PG_ADMIN_URL, f'CREATE ROLE "{role}" LOGIN')
    try:
        h.execute(pg_database.url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        pg_project.write_config(f"""
            environments:
              development:
                database: {pg_database.url.replace("postgres@", f"{role}@", 1)}
        """)
        add_tables(pg_project, "001_t1")
        result = pg_project.cli("apply")
        assert_clean_exit(result, 1)
        assert "creating the history table cryomigrate_history" in result.stderr, \
            result.stderr
        assert "permission denied for schema public" in result.stderr, result.stderr
        assert "t1" not in pg_project.tables()
    finally:
        h.execute(pg_database.url, f'DROP OWNED BY "{role}"')
        h.execute(PG_ADMIN_URL, f'DROP ROLE "{role}"')
