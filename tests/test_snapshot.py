"""Issue 12, item 3: verify, drift and the promotion gate, on real databases; and the
cryoprotect corpus through lint and verify."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests import helpers_pg as h
from tests.conftest import CLUSTER_WIDE, PG_ADMIN_URL, PgDatabase, Project, corpus_dir
from tests.helpers_core import assert_clean_exit, execute, json_doc


@pytest.fixture(autouse=True)
def _own_scratch_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scratch databases named for this test alone: under pytest-xdist other tests make
    and drop theirs meanwhile."""
    from cryomigrate.snapshot import scratch

    monkeypatch.setattr(scratch, "PREFIX", f"cryomigrate_scratch_{uuid.uuid4().hex[:8]}_")


def _scratch_databases() -> list[str]:
    import psycopg

    from cryomigrate.snapshot import scratch

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        return [r[0] for r in admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)",
            (scratch.PREFIX,))]


def _good(project: Project) -> None:
    project.add("001_users.sql", """-- cryomigrate:apply
        CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL DEFAULT '');
        CREATE INDEX users_email ON users (email);
        -- cryomigrate:rollback
        DROP TABLE users;
        """)
    project.add("002_view.sql", """-- cryomigrate:apply
        CREATE VIEW emails AS SELECT email FROM users;
        -- cryomigrate:rollback
        DROP VIEW emails;
        """)
    project.add("003_seed.py", "def apply(conn, environment):\n"
                               "    conn.sql(\"INSERT INTO users VALUES (1, 'a')\").execute()\n")


def test_verify_passes_a_correct_folder(project: Project) -> None:
    _good(project)
    result = project.cli("verify", "--format", "json")
    assert_clean_exit(result, 0)
    doc = json_doc(result)
    assert [(m["migration"], m["outcome"]) for m in doc["migrations"]] == [
        ("001_users.sql", "ok"), ("002_view.sql", "ok"), ("003_seed.py", "irreversible")]
    assert doc["differences"] == []
    assert project.tables() == set()  # the environment's own database is untouched
    if project.dialect == "postgresql":
        assert _scratch_databases() == []


def test_verify_names_the_migration_and_what_its_rollback_leaves(project: Project) -> None:
    _good(project)
    project.add("004_leaky.sql", """-- cryomigrate:apply
        CREATE TABLE audit (id BIGINT);
        CREATE INDEX audit_id ON audit (id);
        ALTER TABLE users ADD COLUMN nickname TEXT;
        -- cryomigrate:rollback
        DROP TABLE audit;
        """)
    project.add("005_never.sql", "-- cryomigrate:apply\nCREATE TABLE later (id BIGINT);\n"
                                 "-- cryomigrate:rollback\nDROP TABLE later;\n")
    result = project.cli("verify")
    assert_clean_exit(result, 4)
    assert "004_leaky.sql: its rollback does not restore the schema" in result.stderr
    column = ("column public.users.nickname" if project.dialect == "postgresql"
              else "table users")
    assert re.search(rf"{re.escape(column)}: .*", result.stdout), result.stdout
    assert "005_never" not in result.stdout
    doc = json_doc(project.cli("verify", "--format", "json"))
    assert doc["migration"] == "004_leaky.sql"
    assert {d["object"] for d in doc["differences"]} == {column}
    if project.dialect == "postgresql":
        assert _scratch_databases() == []


def test_verify_names_a_failing_migration(sqlite_project: Project) -> None:
    sqlite_project.add("001_bad.sql", "CREATE TABLE t (id BIGINT);\nSELECT nothing FROM t;\n")
    result = sqlite_project.cli("verify")
    assert_clean_exit(result, 1)
    assert "verify: apply of 001_bad.sql failed on the scratch database" in result.stderr


def test_drift_finds_a_column_added_by_hand_and_nothing_else(project: Project) -> None:
    _good(project)
    assert_clean_exit(project.cli("apply"), 0)
    clean = project.cli("drift")
    assert_clean_exit(clean, 0)
    assert "No drift" in clean.stdout
    history = project.history()
    execute(project, "ALTER TABLE users ADD COLUMN phone TEXT")
    result = project.cli("drift", "--format", "json")
    assert_clean_exit(result, 4)
    differences = json_doc(result)["differences"]
    if project.dialect == "postgresql":
        assert differences == [{"object": "column public.users.phone",
                                "what": "in the database, not made by its migrations"}]
    else:  # SQLite keeps a table's CREATE statement: the table itself differs
        assert [d["object"] for d in differences] == ["table users"]
    assert project.history() == history  # drift wrote nothing there


def test_a_url_naming_its_database_in_the_query_is_refused(pg_project: Project,
                                                          pg_database: PgDatabase) -> None:
    # libpq lets ?dbname= win over the path: a scratch copy built by replacing the path
    # would have replayed, and rolled back, the environment's own database.
    _good(pg_project)
    assert_clean_exit(pg_project.cli("apply"), 0)
    history = pg_project.history()
    base = pg_database.url.rsplit("/", 1)[0]
    pg_project.write_config(f"""
        environments:
          development:
            database: {base}/?dbname={pg_database.name}
    """)
    for command in ("verify", "drift"):
        result = pg_project.cli(command)
        assert_clean_exit(result, 2)
        assert "dbname=" in result.stderr, result.stderr
    assert pg_project.history() == history
    assert "users" in pg_project.tables()
    assert _scratch_databases() == []


def _two_environments(project: Project, staging: str) -> None:
    # Under defaults, as a team would write it: staging inherits it and is not gated.
    project.write_config(f"""
        defaults:
          policies: {{require_applied_in: staging}}
        environments:
          staging:
            database: {staging}
          production:
            database: {project.url}
    """)


def test_promotion_gate(pg_project: Project, tmp_path: Path) -> None:
    _two_environments(pg_project, "sqlite:///staging.db")
    pg_project.add("001_users.sql", "CREATE TABLE users (id BIGINT);\n")
    refused = pg_project.cli("apply", "--env", "production")
    assert_clean_exit(refused, 3)
    assert "001_users.sql" in refused.stderr and "staging" in refused.stderr
    assert pg_project.tables() == set()
    assert_clean_exit(pg_project.cli("apply", "--env", "staging"), 0)
    # The same file, changed after staging ran it, is refused again.
    pg_project.add("001_users.sql", "CREATE TABLE users (id BIGINT, x TEXT);\n")
    assert_clean_exit(pg_project.cli("apply", "--env", "production"), 3)
    pg_project.add("001_users.sql", "CREATE TABLE users (id BIGINT);\n")
    assert_clean_exit(pg_project.cli("apply", "--env", "production"), 0)
    assert "users" in pg_project.tables()


def test_a_promotion_gate_naming_its_own_environment_is_refused(sqlite_project: Project
                                                                 ) -> None:
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            policies: {require_applied_in: development}
    """)
    result = sqlite_project.cli("validate")
    assert_clean_exit(result, 2)
    assert "names 'development' itself, so it gates nothing" in result.stderr
    # Under defaults it is inherited by the source environment too: that one is allowed.
    sqlite_project.write_config("""
        defaults:
          policies: {require_applied_in: staging}
        environments:
          staging: {database: "sqlite:///staging.db"}
          production: {database: "sqlite:///app.db"}
    """)
    assert_clean_exit(sqlite_project.cli("validate"), 0)


def test_promotion_gate_with_the_source_unreachable(sqlite_project: Project) -> None:
    _two_environments(sqlite_project, "postgresql://nobody@127.0.0.1:1/none")
    sqlite_project.add("001_users.sql", "CREATE TABLE users (id BIGINT);\n")
    assert_clean_exit(sqlite_project.cli("apply", "--env", "production"), 6)
    assert not (sqlite_project.root / "app.db").exists()


@CLUSTER_WIDE
def test_cryoprotect_corpus_lint_and_verify(pg_project: Project, pg_database: PgDatabase
                                            ) -> None:
    corpus = corpus_dir()
    assert corpus is not None
    pg_project.write_config(f"""
        migrations: {corpus / 'cryoprotect'}
        environments:
          development:
            database: {pg_project.url}
            scratch_setup: {corpus / 'supabase_stub.sql'}
    """)
    lint = pg_project.cli("lint", "--format", "json")
    assert_clean_exit(lint, 0)
    findings = json_doc(lint)["findings"]
    assert len({f["file"] for f in findings}) > 5
    with h.cluster_restored(pg_database):
        result = pg_project.cli("verify", "--format", "json")
    assert_clean_exit(result, 0)
    steps = json_doc(result)["migrations"]
    assert len(steps) == 14 and {s["outcome"] for s in steps} == {"irreversible"}
    assert _scratch_databases() == []


def test_drift_points_at_files_edited_since_they_ran(project: Project) -> None:
    """Not 'changed by hand?' alone: a changed repeatable (the next apply runs it again)
    or an edited migration explains the difference too, and the notes name it."""
    project.add("001_users.sql", "CREATE TABLE users (id INTEGER, email TEXT);\n")
    project.add("R_v.sql", "DROP VIEW IF EXISTS v_users;\n"
                           "CREATE VIEW v_users AS SELECT id FROM users;\n")
    assert_clean_exit(project.cli("apply"), 0)
    project.add("R_v.sql", "DROP VIEW IF EXISTS v_users;\n"
                           "CREATE VIEW v_users AS SELECT id, email FROM users;\n")
    result = project.cli("drift", "--format", "json")
    assert_clean_exit(result, 4)
    document = json_doc(result)
    assert "or by the edits in notes?" in document["error"]["message"]
    assert any(note.startswith("R_v.sql changed since the database ran them")
               for note in document["notes"]), document["notes"]
    assert_clean_exit(project.cli("apply"), 0)  # runs the repeatable again
    assert_clean_exit(project.cli("drift"), 0)


@pytest.mark.parametrize("key", ["scratch_setup: missing.sql"])
def test_scratch_setup_missing_file(sqlite_project: Project, key: str) -> None:
    sqlite_project.add("001_t.sql", "CREATE TABLE t (id BIGINT);\n")
    sqlite_project.write_config(f"""
        environments:
          development:
            database: sqlite:///app.db
            {key}
    """)
    result = sqlite_project.cli("verify")
    assert_clean_exit(result, 2)
    assert (f"{sqlite_project.config}:4: environments.development.scratch_setup: cannot read "
            f"{sqlite_project.root / 'missing.sql'}: No such file or directory"
            ) in result.stderr, result.stderr


def test_scratch_setup_not_utf8_is_named_where_written(sqlite_project: Project) -> None:
    sqlite_project.add("001_t.sql", "CREATE TABLE t (id BIGINT);\n")
    (sqlite_project.root / "stub.sql").write_bytes(b"SELECT '\xff';\n")
    sqlite_project.write_config("defaults:\n  scratch_setup: stub.sql\nenvironments:\n"
                                "  development:\n    database: sqlite:///app.db\n")
    result = sqlite_project.cli("verify")
    assert_clean_exit(result, 2)
    assert f"{sqlite_project.config}:2: defaults.scratch_setup: cannot read" in result.stderr


def test_ctrl_c_during_verify_drops_the_scratch_database(pg_project: Project,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from cryomigrate import runner

    _good(pg_project)
    seen: list[str] = []

    def interrupted(self: runner.Runner, direction: str, migrations: object) -> None:
        seen.extend(_scratch_databases())
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.Runner, "run", interrupted)
    result = pg_project.cli("verify")
    assert_clean_exit(result, 130)
    assert len(seen) == 1  # it existed while verify ran
    assert _scratch_databases() == []


@pytest.mark.parametrize(("landing", "done"), [("CREATE", True), ("DROP", False)])
def test_ctrl_c_landing_as_the_scratch_database_is_created_or_dropped(
        pg_project: Project, monkeypatch: pytest.MonkeyPatch, landing: str, done: bool
) -> None:
    """A Ctrl-C reaching the client once the server created the database, or before the
    DROP was sent: the database is dropped all the same, and the run exits 130."""
    from cryomigrate.snapshot import scratch

    _good(pg_project)
    real = scratch._admin
    landed: list[str] = []

    def admin(env: object, statement: str) -> None:
        if done or not statement.startswith(landing) or landed:
            real(env, statement)  # type: ignore[arg-type]
        if statement.startswith(landing) and not landed:
            landed.append(statement)
            raise KeyboardInterrupt

    monkeypatch.setattr(scratch, "_admin", admin)
    result = pg_project.cli("verify")
    assert_clean_exit(result, 130)
    assert landed and _scratch_databases() == []


@pytest.mark.parametrize("command", ["verify", "drift"])
def test_ctrl_c_inside_a_migration_of_verify_or_drift(pg_project: Project,
                                                      command: str) -> None:
    """Exit 130 with the command's own document: never the replay's apply result, which
    would read as migrations applied to the environment."""
    pg_project.add("001_t.sql", "-- cryomigrate:apply\nCREATE TABLE t (id int);\n"
                                "-- cryomigrate:rollback\nDROP TABLE t;\n")
    pg_project.add("002_stop.py", "def apply(conn, environment):\n"
                                  "    if conn.sql('SELECT current_database() AS d')"
                                  ".execute().data[0]['d'].startswith('cryomigrate_scratch'):\n"
                                  "        raise KeyboardInterrupt\n"
                                  "def rollback(conn, environment):\n    pass\n")
    if command == "drift":
        assert_clean_exit(pg_project.cli("apply"), 0)
    text = pg_project.cli(command)
    assert_clean_exit(text, 130)
    result = pg_project.cli(command, "--format", "json")
    assert_clean_exit(result, 130)
    document = json_doc(result)
    assert "applied" not in document and document["error"]["code"] == 130
    if command == "verify":
        assert [s["migration"] for s in document["migrations"]] == ["001_t.sql"]
    assert _scratch_databases() == []
