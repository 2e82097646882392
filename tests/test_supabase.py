"""Supabase on plain PostgreSQL: the classic ``user_preferences`` migration against a stub
``auth.users``, and a schema-qualified history table (DESIGN 3, 4).

The stub (/work/shared/corpus/supabase_stub.sql, read in place) creates what a Supabase
project provides: the ``auth`` schema and ``auth.uid()``, the API roles, ``extensions``.
Its roles are cluster-wide, so the test undoes what it created.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests import helpers_pg as h
from tests.conftest import PgDatabase, Project, corpus_dir
from tests.helpers_core import config_with

USER_PREFERENCES = """
    -- Per-user preferences, owned by auth.users
    -- cryomigrate:apply
    CREATE TABLE public.user_preferences (
        id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
        user_id UUID NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
        theme TEXT NOT NULL DEFAULT 'system' CHECK (theme IN ('light', 'dark', 'system')),
        settings JSONB NOT NULL DEFAULT '{}'::jsonb,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE UNIQUE INDEX user_preferences_user_id_key ON public.user_preferences (user_id);

    CREATE OR REPLACE FUNCTION public.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        NEW.updated_at := now();  -- a semicolon inside the body
        RETURN NEW;
    END;
    $$;
    CREATE TRIGGER user_preferences_touch BEFORE UPDATE ON public.user_preferences
        FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

    ALTER TABLE public.user_preferences ENABLE ROW LEVEL SECURITY;
    CREATE POLICY "Users manage their own preferences" ON public.user_preferences
        FOR ALL TO authenticated
        USING (auth.uid() = user_id) WITH CHECK (auth.uid() = user_id);
    GRANT SELECT, INSERT, UPDATE, DELETE ON public.user_preferences TO authenticated;
    -- cryomigrate:rollback
    DROP TABLE public.user_preferences;
    DROP FUNCTION public.touch_updated_at();
"""

DEFAULT_PREFERENCES_PY = '''
    """Give every existing user default preferences (the Supabase-client call shape)."""


    def apply(conn, environment):
        users = conn.sql("SELECT id FROM auth.users ORDER BY email").execute().data
        for user in users:
            conn.sql("INSERT INTO public.user_preferences (user_id) VALUES (%s)",
                     (user["id"],)).execute()


    def rollback(conn, environment):
        conn.sql("DELETE FROM public.user_preferences").execute()
'''


@pytest.fixture
def supabase(pg_project: Project, pg_database: PgDatabase) -> Iterator[Project]:
    """A PostgreSQL project whose database has had the Supabase stub applied."""
    stub = corpus_dir()
    assert stub is not None
    with h.cluster_restored(pg_database):
        h.run_sql_file(pg_database.url, stub / "supabase_stub.sql")
        yield pg_project


def _one(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def test_user_preferences_apply_and_rollback(supabase: Project) -> None:
    project = supabase
    url = project.url
    alice = _one(url, "INSERT INTO auth.users (email) VALUES ('alice@example.com') RETURNING id")
    bob = _one(url, "INSERT INTO auth.users (email) VALUES ('bob@example.com') RETURNING id")
    project.add("20240101000000_user_preferences.sql", USER_PREFERENCES)
    project.add("20240101000100_default_preferences.py", DEFAULT_PREFERENCES_PY)

    applied = project.cli("apply")
    assert applied.exit_code == 0, applied.output
    status = json.loads(project.cli("status", "--format", "json").stdout)
    assert [(m["version"], m["kind"], m["state"]) for m in status["migrations"]] == [
        ("20240101000000", "sql", "applied"), ("20240101000100", "python", "applied")]
    assert status["migrations"][0]["name"] == "user_preferences"

    # The schema does what the migration says: FK, unique user, cascade, RLS by auth.uid().
    assert project.query("SELECT count(*) FROM user_preferences") == [(2,)]
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO user_preferences (user_id) VALUES (%s)", (alice,))
        conn.rollback()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("INSERT INTO user_preferences (user_id) VALUES (gen_random_uuid())")
        conn.rollback()
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": str(bob), "role": "authenticated"}),))
        visible = conn.execute("SELECT user_id FROM user_preferences").fetchall()
        assert visible == [(bob,)]
        conn.rollback()
    h.execute(url, f"DELETE FROM auth.users WHERE id = '{alice}'")
    assert project.query("SELECT user_id FROM user_preferences") == [(bob,)]

    rolled = project.cli("rollback")
    assert rolled.exit_code == 0, rolled.output
    assert "user_preferences" not in project.tables()
    assert project.query("SELECT count(*) FROM pg_proc WHERE proname = 'touch_updated_at'") \
        == [(0,)]
    assert project.query("SELECT email FROM auth.users") == [("bob@example.com",)]
    status = json.loads(project.cli("status", "--format", "json").stdout)
    assert [m["state"] for m in status["migrations"]] == ["pending", "pending"]

    again = project.cli("apply")
    assert again.exit_code == 0, again.output
    assert project.query("SELECT user_id FROM user_preferences") == [(bob,)]


def test_schema_qualified_history_table_creates_its_schema(pg_project: Project) -> None:
    project = pg_project
    config_with(project, history_table="ops.history")
    project.add("001_create_a.sql", """
        -- cryomigrate:apply
        CREATE TABLE a (id INTEGER);
        -- cryomigrate:rollback
        DROP TABLE a;
    """)
    project.add("002_create_b.sql", """
        -- cryomigrate:apply
        CREATE TABLE b (id INTEGER);
        -- cryomigrate:rollback
        DROP TABLE b;
    """)
    schemas = "SELECT count(*) FROM pg_namespace WHERE nspname = 'ops'"

    status = project.cli("status", "--format", "json")
    assert status.exit_code == 0, status.output
    assert [m["state"] for m in json.loads(status.stdout)["migrations"]] == ["pending"] * 2
    assert project.query(schemas) == [(0,)], "status must not create the schema"

    applied = project.cli("apply")
    assert applied.exit_code == 0, applied.output
    assert project.query(schemas) == [(1,)]
    assert project.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ops' "
        "ORDER BY 1") == [("history",), ("history_journal",)]
    assert "cryomigrate_history" not in project.tables()
    assert project.query("SELECT version_text, state FROM ops.history ORDER BY version") == [
        ("001", "applied"), ("002", "applied")]

    rolled = project.cli("rollback", "--target", "1")
    assert rolled.exit_code == 0, rolled.output
    assert project.query("SELECT version_text FROM ops.history") == [("001",)]
    assert project.query("SELECT version, action, outcome FROM ops.history_journal "
                         "ORDER BY id") == [
        ("001", "apply", "ok"), ("002", "apply", "ok"), ("002", "rollback", "ok")]
    status = project.cli("status", "--format", "json")
    assert [m["state"] for m in json.loads(status.stdout)["migrations"]] == [
        "applied", "pending"]


def test_schema_qualified_history_table_in_existing_schema(pg_project: Project) -> None:
    project = pg_project
    h.execute(project.url, "CREATE SCHEMA ops; CREATE TABLE ops.keep (id INTEGER)")
    config_with(project, history_table="ops.history")
    project.add("001_create_a.sql", "CREATE TABLE a (id INTEGER);\n")
    applied = project.cli("apply")
    assert applied.exit_code == 0, applied.output
    assert project.query("SELECT version_text FROM ops.history") == [("001",)]
    assert {"keep", "a", "history", "history_journal"} <= project.tables()


def test_schema_qualified_history_table_is_an_input_error_on_sqlite(tmp_path: Path) -> None:
    project = Project(tmp_path, "sqlite:///app.db", "sqlite")
    project.migrations.mkdir()
    config_with(project, history_table="ops.history")
    project.add("001_create_a.sql", "CREATE TABLE a (id INTEGER);\n")
    result = project.cli("apply")
    assert result.exit_code == 2, result.output
    assert "ops.history" in result.stderr and "PostgreSQL" in result.stderr


def test_concurrent_first_runs_create_the_qualified_history_table_once(
        pg_project: Project) -> None:
    """Several runs on a fresh database race to create schema ops and its tables."""
    project = pg_project
    config_with(project, history_table="ops.history")
    project.add("000_effects.sql", h.EFFECTS_SQL)
    for n in range(1, 6):
        project.add(f"{n:03d}_effect_{n}.sql", f"INSERT INTO effects (version) VALUES ({n});\n")
    h.run_at_once(project.config, 4, "apply", "--lock-wait", "60")
    assert project.query("SELECT version, count(*) FROM effects GROUP BY 1 ORDER BY 1") == [
        (n, 1) for n in range(1, 6)]
    assert project.query("SELECT count(*) FROM ops.history") == [(6,)]
