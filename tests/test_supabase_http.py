"""Supabase over its HTTP API (DESIGN 8.1) and the after_run hook (8.3).

The real ``supabase`` client talks to a loopback stand-in for PostgREST's RPC endpoint
(tests/postgrest_standin.py) over a real PostgreSQL with the Supabase stub's roles and
``auth.users``; cryomigrate's functions come from ``cryomigrate supabase-setup`` itself.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests import helpers_pg as h
from tests import postgrest_standin as standin
from tests.conftest import PgDatabase, Project, corpus_dir
from tests.helpers_core import config_with
from tests.test_supabase import USER_PREFERENCES

SERVICE_KEY = standin.make_jwt("service_role")
ANON_KEY = standin.make_jwt("anon")

GRANT_TEMPLATE = """
    -- cryomigrate:apply
    GRANT SELECT ON public.user_preferences TO {{ vars.reader | ident }};
    COMMENT ON TABLE public.user_preferences IS {{ ('owned by ' ~ environment) | literal }};
    -- cryomigrate:rollback
    REVOKE SELECT ON public.user_preferences FROM {{ vars.reader | ident }};
"""

DEFAULTS_PY = '''
    """Give every user default preferences, as the original module's scripts did."""


    def apply(conn, environment):
        users = conn.sql("SELECT id FROM auth.users ORDER BY email").execute().data
        for user in users:
            conn.sql("INSERT INTO public.user_preferences (user_id, theme) VALUES (%s, %s)",
                     (user["id"], "dark")).execute()
        counted = conn.rpc("count_preferences", {}).execute().data
        assert counted == len(users), counted


    def rollback(conn, environment):
        conn.sql("DELETE FROM public.user_preferences").execute()
'''

COUNT_FUNCTION = """
    -- cryomigrate:apply
    CREATE FUNCTION public.count_preferences() RETURNS integer
    LANGUAGE sql STABLE AS $$ SELECT count(*)::integer FROM public.user_preferences $$;
    -- cryomigrate:rollback
    DROP FUNCTION public.count_preferences();
"""


@dataclass
class Api:
    project: Project
    server: standin._Server

    def configure(self, extra: str = "", key: str = "${SUPABASE_SERVICE_ROLE_KEY}") -> None:
        config_with(self.project, "")
        self.project.config.write_text(
            "environments:\n  development:\n"
            f"    database: {standin.project_url(self.server)}\n"
            f"    service_key: {key}\n    vars: {{reader: authenticated}}\n{extra}",
            encoding="utf-8")

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.server.requests if r[0] != "GET"]


@pytest.fixture
def supabase(pg_project: Project, pg_database: PgDatabase) -> Iterator[Project]:
    """The database with the Supabase stub (cluster-wide roles, undone afterwards)."""
    stub = corpus_dir()
    assert stub is not None
    with h.cluster_restored(pg_database):
        h.run_sql_file(pg_database.url, stub / "supabase_stub.sql")
        yield pg_project


@pytest.fixture
def api(supabase: Project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """The stand-in serving the database, cryomigrate's functions installed through
    ``cryomigrate supabase-setup`` (twice: it is idempotent)."""
    setup = supabase.cli("supabase-setup")
    assert setup.exit_code == 0, setup.output
    for _ in range(2):
        h.execute(supabase.url, setup.stdout)
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
    with standin.serving(supabase.url) as server:
        result = Api(supabase, server)
        result.configure()
        yield result


def _states(project: Project) -> list[tuple[str, str]]:
    result = project.cli("status", "--format", "json")
    assert result.exit_code == 0, result.output
    return [(m["version"], m["state"]) for m in json.loads(result.stdout)["migrations"]]


def _add_workflow(project: Project) -> None:
    project.add("001_user_preferences.sql", USER_PREFERENCES)
    project.add("002_count_preferences.sql", COUNT_FUNCTION)
    project.add("003_grant_reader.sql.j2", GRANT_TEMPLATE)
    project.add("004_default_preferences.py", DEFAULTS_PY)


def test_setup_sql_grants_execute_to_service_role_only(api: Api) -> None:
    rows = api.project.query(
        "SELECT p.proname, p.prosecdef, p.proconfig, "
        "has_function_privilege('anon', p.oid, 'EXECUTE'), "
        "has_function_privilege('authenticated', p.oid, 'EXECUTE'), "
        "has_function_privilege('service_role', p.oid, 'EXECUTE') "
        "FROM pg_proc p WHERE p.proname LIKE 'cryomigrate%' ORDER BY 1")
    assert rows == [(name, True, ["search_path=\"\""], False, False, True)
                    for name in ("cryomigrate_exec", "cryomigrate_read")]


def test_original_workflow_over_http(api: Api) -> None:
    project = api.project
    for email in ("alice@example.com", "bob@example.com"):
        h.execute(project.url, f"INSERT INTO auth.users (email) VALUES ('{email}')")
    _add_workflow(project)

    assert _states(project) == [(v, "pending") for v in ("001", "002", "003", "004")]
    dry = project.cli("apply", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "CREATE TABLE public.user_preferences" in dry.stdout
    assert api.writes() == [], "status and --dry-run only read"
    assert "cryomigrate_history" not in project.tables()

    applied = project.cli("apply", "--target", "3")
    assert applied.exit_code == 0, applied.output
    applied = project.cli("apply")
    assert applied.exit_code == 0, applied.output
    assert _states(project) == [(v, "applied") for v in ("001", "002", "003", "004")]
    assert project.query("SELECT theme, count(*) FROM user_preferences GROUP BY 1") == [
        ("dark", 2)]
    assert project.query("SELECT has_table_privilege('authenticated', "
                         "'public.user_preferences', 'SELECT')") == [(True,)]
    assert project.query("SELECT obj_description('public.user_preferences'::regclass)") == [
        ("owned by development",)]
    assert project.history() == [
        ("001", "user_preferences", "applied"), ("002", "count_preferences", "applied"),
        ("003", "grant_reader", "applied"), ("004", "default_preferences", "applied")]

    before = len(api.writes())
    assert _states(project)[-1] == ("004", "applied")
    history = project.cli("history", "--format", "json")
    assert history.exit_code == 0, history.output
    assert len(json.loads(history.stdout)["entries"]) == 4
    validate = project.cli("validate")
    assert validate.exit_code == 0, validate.output
    assert len(api.writes()) == before, "status, history and validate only read"

    rolled = project.cli("rollback", "--steps", "1")
    assert rolled.exit_code == 0, rolled.output
    assert project.query("SELECT count(*) FROM user_preferences") == [(0,)]
    rolled = project.cli("rollback")
    assert rolled.exit_code == 0, rolled.output
    assert "user_preferences" not in project.tables()
    assert project.history() == []
    assert project.query("SELECT action, outcome, count(*) FROM cryomigrate_history_journal "
                         "GROUP BY 1, 2 ORDER BY 1") == [("apply", "ok", 4),
                                                         ("rollback", "ok", 4)]


def test_baseline_and_repair_over_http(api: Api) -> None:
    project = api.project
    project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    project.add("002_b.sql", "CREATE TABLE b (id int);\n")
    h.execute(project.url, "CREATE TABLE a (id int)")
    baseline = project.cli("baseline", "1")
    assert baseline.exit_code == 0, baseline.output
    assert _states(project) == [("001", "applied"), ("002", "pending")]
    project.add("001_a.sql", "CREATE TABLE a (id int); -- edited\n")
    assert _states(project)[0] == ("001", "modified")
    repaired = project.cli("repair")
    assert repaired.exit_code == 0, repaired.output
    applied = project.cli("apply")
    assert applied.exit_code == 0, applied.output
    assert _states(project) == [("001", "applied"), ("002", "applied")]


def test_anon_key_is_refused_and_nothing_applied(api: Api) -> None:
    project = api.project
    api.configure(key=ANON_KEY)
    project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    for command in (("status",), ("apply",)):
        result = project.cli(*command)
        assert result.exit_code == 6, result.output
        assert "service_role" in result.stderr
        assert ANON_KEY not in result.output
    assert "a" not in project.tables()
    assert "cryomigrate_history" not in project.tables()


def test_missing_functions_name_supabase_setup(api: Api) -> None:
    project = api.project
    h.execute(project.url, "DROP FUNCTION public.cryomigrate_exec(jsonb); "
                           "DROP FUNCTION public.cryomigrate_read(jsonb)")
    project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    result = project.cli("apply")
    assert result.exit_code == 6, result.output
    assert "cryomigrate supabase-setup" in result.stderr


def test_failing_sql_migration_leaves_nothing_and_is_journaled(api: Api) -> None:
    project = api.project
    project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    project.add("002_b.sql", "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1);\n"
                             "SELECT 1 / 0;\n")
    result = project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "002_b.sql line 3" in result.stderr and "division by zero" in result.stderr
    assert "a" in project.tables() and "b" not in project.tables()
    assert project.history() == [("001", "a", "applied")]
    assert project.journal() == [("001", "apply", "ok"), ("002", "apply", "failed")]


def test_non_transactional_migration_refused_before_anything_runs(api: Api) -> None:
    project = api.project
    project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    project.add("002_index.sql", "-- cryomigrate:no-transaction\n"
                                 "CREATE INDEX CONCURRENTLY a_id ON a (id);\n")
    result = project.cli("apply")
    assert result.exit_code == 2, result.output
    assert "002_index.sql" in result.stderr and "direct connection" in result.stderr
    assert "a" not in project.tables()
    assert "cryomigrate_history" not in project.tables()


def test_failing_python_migration_stays_dirty(api: Api) -> None:
    project = api.project
    project.add("001_py.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE half (id int)").execute()
            conn.sql("SELECT 1 / 0").execute()
    ''')
    result = project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "dirty" in result.stderr
    assert project.history() == [("001", "py", "dirty")]
    assert "half" in project.tables()
    assert project.cli("apply").exit_code == 4


def test_service_key_absent_from_every_output(api: Api) -> None:
    project = api.project
    project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    project.add("002_bad.sql", "SELECT * FROM missing_table;\n")
    outputs = [project.cli(*args) for args in (
        ("status",), ("status", "--format", "json"), ("apply", "--format", "json"),
        ("apply",), ("history", "--format", "json"), ("validate", "--format", "json"),
        ("rollback", "--dry-run"))]
    api.configure(key=SERVICE_KEY)  # written into the file, not only the environment
    outputs += [project.cli("apply", "--format", "json"), project.cli("status")]
    api.configure(key="not-a-jwt-but-a-secret-0123456789")
    outputs.append(project.cli("apply", "--format", "json"))
    assert any(r.exit_code == 1 for r in outputs)
    for result in outputs:
        assert SERVICE_KEY not in result.output, result.output
        assert SERVICE_KEY.split(".")[2] not in result.output
        assert "not-a-jwt-but-a-secret-0123456789" not in result.output


def test_supabase_history_written_inside_the_call(api: Api) -> None:
    project = api.project
    api.configure("    supabase_history: true\n")
    project.add("20240101000000_a.sql", "CREATE TABLE a (id int);\nCREATE TABLE a2 (id int);\n")
    assert project.cli("apply").exit_code == 0
    assert project.query("SELECT version, name, statements FROM "
                         "supabase_migrations.schema_migrations") == [
        ("20240101000000", "a", ["CREATE TABLE a (id int)", "CREATE TABLE a2 (id int)"])]
    project.add("20240101000000_a.sql", "-- cryomigrate:apply\nCREATE TABLE a (id int);\n"
                "CREATE TABLE a2 (id int);\n-- cryomigrate:rollback\nDROP TABLE a, a2;\n")
    assert project.cli("repair").exit_code == 0
    assert project.cli("rollback").exit_code == 0
    assert project.query("SELECT count(*) FROM supabase_migrations.schema_migrations") == [(0,)]


def test_repair_marks_keep_the_supabase_history_in_step(api: Api) -> None:
    project = api.project
    api.configure("    supabase_history: true\n")
    project.add("20240101000000_a.sql", "CREATE TABLE a (id bigint);\n")
    assert project.cli("apply").exit_code == 0
    cli_rows = "SELECT version FROM supabase_migrations.schema_migrations"
    assert project.cli("repair", "--mark-pending", "20240101000000").exit_code == 0
    assert project.query(cli_rows) == []
    assert project.cli("repair", "--mark-applied", "20240101000000").exit_code == 0
    assert project.query(cli_rows) == [("20240101000000",)]


# -- after_run (DESIGN 8.3), on the direct connection ------------------------------------

def _notifications(listener: psycopg.Connection[object]) -> list[str]:
    return [n.payload for n in listener.notifies(timeout=0.5)]


def test_after_run_notifies_once_per_changing_run(pg_project: Project) -> None:
    project = pg_project
    config_with(project, """
        vars: {channel: cryomigrate_test}
        after_run: "NOTIFY {{ vars.channel | ident }}, {{ ('reload ' ~ environment) | literal }};"
    """)
    for version, table in (("001", "a"), ("002", "b")):
        project.add(f"{version}_{table}.sql",
                    f"-- cryomigrate:apply\nCREATE TABLE {table} (id int);"
                    f"\n-- cryomigrate:rollback\nDROP TABLE {table};\n")
    with psycopg.connect(project.url, autocommit=True) as listener:
        listener.execute("LISTEN cryomigrate_test")
        assert project.cli("apply", "--dry-run").exit_code == 0
        assert _notifications(listener) == []
        assert project.cli("apply").exit_code == 0
        assert _notifications(listener) == ["reload development"]
        assert project.cli("apply").exit_code == 0  # nothing to do
        assert _notifications(listener) == []
        assert project.cli("rollback", "--steps", "1").exit_code == 0
        assert _notifications(listener) == ["reload development"]


def test_after_run_follows_a_run_that_committed_some_and_then_failed(
        pg_project: Project) -> None:
    """The migrations committed before the failure changed the schema: PostgREST needs the
    reload all the same. A run that committed nothing sends nothing."""
    project = pg_project
    config_with(project, 'after_run: "NOTIFY cryomigrate_test, \'reload\';"')
    project.add("001_a.sql", "CREATE TABLE a (id bigint);\n")
    project.add("002_bad.sql", "SELECT 1 / 0;\n")
    with psycopg.connect(project.url, autocommit=True) as listener:
        listener.execute("LISTEN cryomigrate_test")
        result = project.cli("apply", "--format", "json")
        assert result.exit_code == 1, result.output
        document = json.loads(result.stdout)
        assert [m["version"] for m in document["applied"]] == ["001"]
        assert "division by zero" in document["error"]["message"]
        assert _notifications(listener) == ["reload"]
        result = project.cli("apply")
        assert result.exit_code == 1, result.output
        assert _notifications(listener) == [], "nothing committed, nothing to reload"


def test_after_run_failing_after_a_failed_run_keeps_the_runs_error(
        pg_project: Project) -> None:
    project = pg_project
    config_with(project, 'after_run: "SELECT * FROM no_such_table;"')
    project.add("001_a.sql", "CREATE TABLE a (id bigint);\n")
    project.add("002_bad.sql", "SELECT 1 / 0;\n")
    result = project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "division by zero" in result.stderr
    assert "after_run then failed too" in result.stderr and "no_such_table" in result.stderr
    assert project.history() == [("001", "a", "applied")]


def test_after_run_failure_is_exit_1_after_a_committed_run(pg_project: Project) -> None:
    project = pg_project
    config_with(project, 'after_run: "SELECT 1 / 0;"')
    project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    result = project.cli("apply", "--format", "json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert [m["version"] for m in document["applied"]] == ["001"]
    assert "after_run" in document["error"]["message"]
    assert project.history() == [("001", "a", "applied")]


# -- a call answered only after it committed (DESIGN 8.1) ---------------------------------

SLOW = "standin:slow-answer"


def test_timed_out_call_that_committed_is_reported_applied_once(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in commits the call and answers past the client's timeout: cryomigrate
    re-reads the history under the lock, finds the migration recorded, reports it applied
    and goes on; it is neither repeated nor reported failed."""
    from cryomigrate.backends import supabase_http

    project = api.project
    monkeypatch.setattr(supabase_http, "CALL_TIMEOUT_S", 1.0)
    api.server.slow_after_commit, api.server.slow_seconds = SLOW, 3.0
    project.add("001_runs.sql", "CREATE TABLE runs (note text);\n")
    project.add("002_slow.sql", f"INSERT INTO runs (note) VALUES ('{SLOW}');\n")
    project.add("003_after.sql", "CREATE TABLE after_slow (id bigint);\n")

    result = project.cli("apply", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [m["version"] for m in json.loads(result.stdout)["applied"]] == ["001", "002", "003"]
    assert project.query("SELECT count(*) FROM runs") == [(1,)], "the script ran once"
    assert project.history() == [("001", "runs", "applied"), ("002", "slow", "applied"),
                                 ("003", "after", "applied")]
    assert project.journal() == [("001", "apply", "ok"), ("002", "apply", "ok"),
                                 ("003", "apply", "ok")]
    again = project.cli("apply")
    assert again.exit_code == 0, again.output
    assert project.query("SELECT count(*) FROM runs") == [(1,)]


# -- conn.table(): the client's own query builder (DESIGN 8.1) ----------------------------

TABLE_PY = '''
    """Fill and read a table through the Supabase client, as the original module did."""


    def apply(conn, environment):
        first = conn.table("items").insert({"id": 1, "name": "first"}).execute().data
        assert first == [{"id": 1, "name": "first"}], first
        conn.table("items").insert([{"id": 2, "name": "second"}]).execute()
        names = sorted(row["name"] for row in conn.table("items").select("*").execute().data)
        conn.sql("INSERT INTO public.seen (names) VALUES (%s)", (",".join(names),)).execute()


    def rollback(conn, environment):
        conn.sql("DELETE FROM public.items").execute()
        conn.sql("DELETE FROM public.seen").execute()
'''


def test_python_migration_uses_the_clients_table_builder(api: Api) -> None:
    project = api.project
    project.add("001_items.sql", "-- cryomigrate:apply\n"
                "CREATE TABLE public.items (id bigint PRIMARY KEY, name text NOT NULL);\n"
                "CREATE TABLE public.seen (names text);\n"
                "-- cryomigrate:rollback\nDROP TABLE public.items, public.seen;\n")
    project.add("002_fill.py", TABLE_PY)
    result = project.cli("apply")
    assert result.exit_code == 0, result.output
    assert project.query("SELECT id, name FROM items ORDER BY id") == [(1, "first"),
                                                                      (2, "second")]
    assert project.query("SELECT names FROM seen") == [("first,second",)]
    assert ("POST", "/rest/v1/items") in api.server.requests
    assert ("GET", "/rest/v1/items") in api.server.requests
    assert project.history()[-1] == ("002", "fill", "applied")
    assert project.cli("rollback").exit_code == 0
    assert "items" not in project.tables()


# -- baseline and repair: one call, one transaction (DESIGN 8.1) --------------------------

REFUSE_VERSION = """
    CREATE FUNCTION public.refuse_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.version = {version} THEN RAISE EXCEPTION 'version {version} refused'; END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_version BEFORE INSERT OR UPDATE ON public.cryomigrate_history
    FOR EACH ROW EXECUTE FUNCTION public.refuse_version();
"""


def test_baseline_failing_part_way_over_http_leaves_nothing(api: Api) -> None:
    project = api.project
    for version, table in (("001", "a"), ("002", "b"), ("003", "c")):
        project.add(f"{version}_{table}.sql", f"CREATE TABLE {table} (id bigint);\n")
    assert project.cli("baseline", "1").exit_code == 0
    h.execute(project.url, REFUSE_VERSION.format(version=3))

    result = project.cli("baseline", "3")
    assert result.exit_code == 1, result.output
    assert "version 3 refused" in result.stderr
    assert project.history() == [("001", "a", "applied")], "002 was not kept either"
    assert project.journal() == [("001", "baseline", "ok")]


def test_repair_failing_part_way_over_http_leaves_nothing(api: Api) -> None:
    project = api.project
    for version, table in (("001", "a"), ("002", "b")):
        project.add(f"{version}_{table}.sql", f"CREATE TABLE {table} (id bigint);\n")
    assert project.cli("apply").exit_code == 0
    for version, table in (("001", "a"), ("002", "b")):
        project.add(f"{version}_{table}.sql", f"CREATE TABLE {table} (id bigint); -- edited\n")
    h.execute(project.url, REFUSE_VERSION.format(version=2))

    result = project.cli("repair")
    assert result.exit_code == 1, result.output
    assert "version 2 refused" in result.stderr
    assert _states(project) == [("001", "modified"), ("002", "modified")], \
        "001's new checksum was not kept either"
    assert [row[1] for row in project.journal()] == ["apply", "apply"]
    h.execute(project.url, "DROP TRIGGER refuse_version ON public.cryomigrate_history")
    assert project.cli("repair").exit_code == 0
    assert _states(project) == [("001", "applied"), ("002", "applied")]


# -- repeatable migrations (DESIGN 8.1, 12) ------------------------------------------------

def test_repeatable_sql_runs_over_http_and_python_is_refused(api: Api) -> None:
    project = api.project
    project.add("001_a.sql", "CREATE TABLE a (id bigint);\n")
    project.add("R_view.sql", "CREATE OR REPLACE VIEW public.v AS SELECT 1 AS x;\n")
    result = project.cli("apply")
    assert result.exit_code == 0, result.output
    assert project.query("SELECT x FROM v") == [(1,)]
    project.add("R_view.sql", "CREATE OR REPLACE VIEW public.v AS SELECT 2 AS x;\n")
    result = project.cli("apply")
    assert result.exit_code == 0 and "R_view" in result.stdout, result.output
    assert project.query("SELECT x FROM v") == [(2,)]
    assert project.query("SELECT name FROM cryomigrate_history_repeatable") == [("view",)]

    project.add("002_b.sql", "CREATE TABLE b (id bigint);\n")
    project.add("R_py.py", '''
        def apply(conn, environment):
            conn.sql("CREATE TABLE IF NOT EXISTS py_ran (id bigint)").execute()
    ''')
    calls = len(api.writes())
    refused = project.cli("apply")
    assert refused.exit_code == 2, refused.output
    assert "R_py" in refused.stderr and "Nothing was run" in refused.stderr
    assert len(api.writes()) == calls
    assert "b" not in project.tables() and "py_ran" not in project.tables()
    assert project.history() == [("001", "a", "applied")]


# -- the last statement of a script is never wrapped for its rows (DESIGN 8.1) -------------

@pytest.mark.parametrize("last", [
    "COMMENT ON TABLE public.orders IS 'includes returning customers';",
    "CREATE FUNCTION public.add_order() RETURNS bigint LANGUAGE sql AS $$\n"
    "    INSERT INTO public.orders (note) VALUES ('x') RETURNING id\n$$;",
    "WITH v AS (SELECT 'y' AS note) INSERT INTO public.orders (note) SELECT note FROM v;",
], ids=["comment", "function", "with-insert"])
def test_last_statement_of_a_sql_migration_runs_as_written(api: Api, last: str) -> None:
    project = api.project
    project.add("001_orders.sql", "CREATE TABLE public.orders (id bigserial PRIMARY KEY, "
                f"note text);\n{last}\n")
    result = project.cli("apply")
    assert result.exit_code == 0, result.output
    assert project.history() == [("001", "orders", "applied")]
    assert project.journal() == [("001", "apply", "ok")]


def test_returns_rows_reads_the_top_level_code_only() -> None:
    from cryomigrate.backends.supabase_http import returns_rows

    for sql in ("SELECT 1", "values (1)", "TABLE t", "WITH a AS (SELECT 1) SELECT * FROM a",
                "INSERT INTO t VALUES (1) RETURNING id", "/* x */ (SELECT 1)",
                "WITH a AS (DELETE FROM t RETURNING id) SELECT * FROM a"):
        assert returns_rows(sql), sql
    for sql in ("COMMENT ON TABLE t IS 'returning'", "SELECT * INTO s2 FROM s",
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ INSERT INTO t "
                "VALUES (1) RETURNING id $$", "WITH v AS (SELECT 1) INSERT INTO w SELECT 1",
                "DELETE FROM t -- returning", "CREATE TABLE returning_x (id int)"):
        assert not returns_rows(sql), sql


def test_select_into_is_refused_over_http_before_anything_is_sent(api: Api) -> None:
    # PL/pgSQL's EXECUTE refuses SELECT ... INTO; the advice is CREATE TABLE ... AS.
    from cryomigrate.backends.supabase_http import _selects_into

    for sql in ("SELECT * INTO s2 FROM s", "WITH a AS (SELECT 1) SELECT * INTO s3 FROM a"):
        assert _selects_into(sql), sql
    for sql in ("WITH v AS (SELECT 1) INSERT INTO w SELECT 1", "INSERT INTO t SELECT 1",
                "SELECT 'into' FROM t", "SELECT * FROM t WHERE id IN (SELECT 1 INTO x)"):
        assert not _selects_into(sql), sql
    project = api.project
    project.add("001_copy.sql", "CREATE TABLE public.s (id bigint);\n"
                "SELECT * INTO public.s2 FROM public.s;\n")
    before = len(api.writes())
    result = project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "001_copy.sql line 2" in result.stderr and "CREATE TABLE ... AS" in result.stderr
    assert "s" not in project.tables() and "s2" not in project.tables()
    assert project.query("SELECT count(*) FROM cryomigrate_history") == [(0,)]
    assert len(api.writes()) - before <= 2  # the history tables, and the failure journaled


# -- adopt: read first, then one locked call (DESIGN 9.2) ----------------------------------

CRYOPROTECT_TABLE = ("CREATE TABLE public.migrations (version text PRIMARY KEY, name text, "
                     "applied_at timestamptz DEFAULT now()); "
                     "INSERT INTO public.migrations (version, name) VALUES ('001', 'a'), "
                     "('002', 'b'), ('003', 'c')")


def test_adopt_over_http_is_one_writing_call(api: Api) -> None:
    project = api.project
    for version, table in (("001", "a"), ("002", "b"), ("003", "c"), ("004", "d")):
        project.add(f"{version}_{table}.sql", f"CREATE TABLE {table} (id bigint);\n")
    h.execute(project.url, CRYOPROTECT_TABLE)
    before = len(api.writes())
    result = project.cli("adopt", "--from", "cryoprotect")
    assert result.exit_code == 0, result.output
    # Reads are POSTs too (cryomigrate_exec); the writes are one call = one transaction.
    assert len(api.writes()) - before <= 4, api.writes()[before:]
    assert project.query("SELECT count(DISTINCT xmin::text) FROM (SELECT xmin FROM "
                         "cryomigrate_history UNION ALL SELECT xmin FROM "
                         "cryomigrate_history_journal) rows") == [(1,)]
    assert _states(project) == [("001", "applied"), ("002", "applied"), ("003", "applied"),
                                ("004", "pending")]
    assert [row[1] for row in project.journal()] == ["adopt"] * 3


def test_adopt_failing_part_way_over_http_leaves_nothing(api: Api) -> None:
    project = api.project
    for version, table in (("001", "a"), ("002", "b"), ("003", "c"), ("004", "d")):
        project.add(f"{version}_{table}.sql", f"CREATE TABLE {table} (id bigint);\n")
    assert project.cli("apply", "--target", "1").exit_code == 0
    h.execute(project.url, "CREATE TABLE public.migrations (version text PRIMARY KEY, "
              "name text, applied_at timestamptz DEFAULT now()); "
              "INSERT INTO public.migrations (version, name) VALUES ('002', 'b'), ('003', 'c')")
    h.execute(project.url, REFUSE_VERSION.format(version=3))
    result = project.cli("adopt", "--from", "cryoprotect")
    assert result.exit_code == 1, result.output
    assert "version 3 refused" in result.stderr
    assert project.history() == [("001", "a", "applied")], "002 was not kept either"
    assert project.journal() == [("001", "apply", "ok")]


# -- timeouts over HTTP (DESIGN 8.1) -------------------------------------------------------

def _hold_table_lock(url: str, seconds: float) -> threading.Thread:
    """Another session holds an ACCESS EXCLUSIVE lock on public.busy for ``seconds``."""
    ready = threading.Event()

    def hold() -> None:
        with psycopg.connect(url) as db:
            db.execute("LOCK TABLE public.busy IN ACCESS EXCLUSIVE MODE")
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread


@pytest.mark.parametrize("where", ["environment", "role"])
def test_lock_timeout_over_http(api: Api, where: str) -> None:
    """``lock_timeout: 300ms`` is applied after the run lock; with none configured the
    database's (the role's) own value is kept, not replaced by 0 (wait forever)."""
    project = api.project
    h.execute(project.url, "CREATE TABLE public.busy (id bigint)")
    if where == "environment":
        api.configure("    lock_timeout: 300ms\n")
    else:
        h.alter_database(project.url, "lock_timeout = '300ms'")
    project.add("001_alter.sql", "ALTER TABLE public.busy ADD COLUMN note text;\n")
    holder = _hold_table_lock(project.url, 8.0)
    started = time.monotonic()
    result = project.cli("apply")
    elapsed = time.monotonic() - started
    holder.join()
    assert result.exit_code == 1, result.output
    assert "55P03" in result.stderr, result.stderr
    assert elapsed < 5, elapsed
    assert project.history() == []


def test_timed_out_unguarded_call_says_it_may_have_committed() -> None:
    from cryomigrate.backends.supabase_http import timed_out_message

    message = timed_out_message("http://x", "ReadTimeout", guarded=False)
    assert "may or may not have committed" in message
    assert "cryomigrate status" in message
    assert "nothing was applied" not in message
    assert "did not commit" in timed_out_message("http://x", "ReadTimeout", guarded=True)


@pytest.mark.parametrize("kind", ["sql", "python"])
def test_a_stale_plan_stops_over_http(api: Api, monkeypatch: pytest.MonkeyPatch,
                                      kind: str) -> None:
    """As over a direct connection (test_faults.py): a rollback planned on 001 finds 002
    applied by another run meanwhile, and stops with exit 4 before changing anything."""
    from cryomigrate.runner import Runner

    project = api.project
    if kind == "python":
        project.add("001_a.py", "def apply(conn, environment):\n    pass\n\n\n"
                                "def rollback(conn, environment):\n    pass\n")
    else:
        project.add("001_a.sql", "-- cryomigrate:apply\nCREATE TABLE public.a (id int);\n"
                                 "-- cryomigrate:rollback\nDROP TABLE public.a;\n")
    project.add("002_b.sql", "CREATE TABLE public.b (id int);\n")
    assert project.cli("apply", "--target", "1").exit_code == 0
    original = Runner.run

    def run(self: Runner, *args: Any, **kwargs: Any) -> Any:
        other = h.run(project.config, "apply")
        assert other.returncode == 0, other.output
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "run", run)
    result = project.cli("rollback", "--steps", "1")
    assert result.exit_code == 4, result.output
    assert "did not roll back 001_a" in result.stderr, result.output
    monkeypatch.setattr(Runner, "run", original)
    assert _states(project) == [("001", "applied"), ("002", "applied")]
