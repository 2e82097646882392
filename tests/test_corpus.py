"""Real-world migration folders through cryomigrate on PostgreSQL (DESIGN 2.1, 5).

/work/shared/corpus holds the migrations of public projects, byte for byte (see its
README.md and manifest.json). They are read in place; each test converts one corpus into
cryomigrate's layout in tmp_path, changing nothing but file names (sanitised to
``<version>_<name>.sql``) and section marker lines:

- sqlx / golang-migrate pairs ``V_name.up.sql`` + ``V_name.down.sql`` become one file
  ``-- cryomigrate:apply`` + up + ``-- cryomigrate:rollback`` + down;
- goose's ``-- +goose Up`` / ``-- +goose Down`` / ``-- +goose NO TRANSACTION`` lines
  become ``-- cryomigrate:apply`` / ``-- cryomigrate:rollback`` /
  ``-- cryomigrate:no-transaction``.

Everything else, including users' own ``BEGIN; ... COMMIT;``, dollar-quoted bodies and
``CREATE INDEX CONCURRENTLY``, reaches the server as written. Some corpora change state
outside their database (roles, ``ALTER DATABASE postgres SET``): those tests take turns
(``CLUSTER_WIDE``, conftest.py), undo it, and then assert that the cluster holds exactly
what it held before, whatever that was (another user of the cluster may have set the same
things). dbdev is left out: it needs pg_cron in shared_preload_libraries.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import helpers_pg as h
from tests.conftest import CLUSTER_WIDE, PG_ADMIN_URL, PgDatabase, Project, corpus_dir
from tests.helpers_core import config_with

_NAME = re.compile(r"^(\d+)_(.+)$")
_GOOSE = {
    b"-- +goose Up": b"-- cryomigrate:apply",
    b"-- +goose Down": b"-- cryomigrate:rollback",
    b"-- +goose NO TRANSACTION": b"-- cryomigrate:no-transaction",
}


@pytest.fixture
def corpus() -> Path:
    path = corpus_dir()
    assert path is not None
    return path


@pytest.fixture
def manifest(corpus: Path) -> dict[str, dict[str, Any]]:
    entries = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    return {entry["name"]: entry for entry in entries}


def target_name(stem: str) -> str:
    """``0002_1.7.0_schema`` -> ``0002_1_7_0_schema.sql``: names must match [A-Za-z0-9_]+."""
    match = _NAME.match(stem)
    assert match, f"no version in {stem!r}"
    version, name = match.groups()
    return f"{version}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}.sql"


def convert_plain(source: Path, files: list[str], dest: Path, suffix: str = ".sql") -> None:
    """One file per migration, apply-only; only the name changes."""
    for filename in files:
        assert filename.endswith(suffix), filename
        out = dest / target_name(filename[: -len(suffix)])
        assert not out.exists(), f"two corpus files map to {out.name}"
        out.write_bytes((source / filename).read_bytes())


def convert_pairs(source: Path, ups: list[str], dest: Path) -> None:
    """sqlx reversible pairs -> one file with an apply and a rollback section."""
    for up_name in ups:
        stem = up_name.removesuffix(".up.sql")
        up = (source / up_name).read_bytes()
        down = (source / f"{stem}.down.sql").read_bytes()
        if not up.endswith(b"\n"):
            up += b"\n"
        out = dest / target_name(stem)
        assert not out.exists(), f"two corpus files map to {out.name}"
        out.write_bytes(b"-- cryomigrate:apply\n" + up + b"-- cryomigrate:rollback\n" + down)


def convert_goose(source: Path, files: list[str], dest: Path) -> None:
    """goose files: only the ``-- +goose`` annotation lines are rewritten."""
    for filename in files:
        lines = (source / filename).read_bytes().split(b"\n")
        converted = []
        for line in lines:
            stripped = line.rstrip(b"\r").rstrip()
            if stripped.startswith(b"-- +goose"):
                assert stripped in _GOOSE, f"{filename}: unsupported goose annotation {line!r}"
                converted.append(_GOOSE[stripped])
            else:
                converted.append(line)
        (dest / target_name(filename.removesuffix(".sql"))).write_bytes(b"\n".join(converted))


def _states(project: Project) -> dict[str, str]:
    result = project.cli("status", "--format", "json")
    assert result.exit_code == 0, result.output
    return {m["version"]: m["state"] for m in json.loads(result.stdout)["migrations"]}


def _apply_all(project: Project, expected: int) -> Any:
    result = project.cli("apply")
    assert result.exit_code == 0, result.output
    states = _states(project)
    assert len(states) == expected, sorted(states)
    assert set(states.values()) == {"applied"}, states
    return result


def _public_objects(project: Project) -> list[tuple[str, str]]:
    """What schema public holds, leaving out the members of extensions (listed as such)."""
    return project.query("""
        SELECT 'relation', c.relname FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND NOT EXISTS (
                SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                AND d.objid = c.oid AND d.deptype = 'e')
        UNION ALL SELECT 'function', p.proname FROM pg_proc p
            WHERE p.pronamespace = 'public'::regnamespace AND NOT EXISTS (
                SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                AND d.objid = p.oid AND d.deptype = 'e')
        UNION ALL SELECT 'type', t.typname FROM pg_type t
            WHERE t.typnamespace = 'public'::regnamespace AND t.typrelid = 0
              AND t.typcategory <> 'A' AND NOT EXISTS (
                SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                AND d.objid = t.oid AND d.deptype = 'e')
        UNION ALL SELECT 'extension', e.extname FROM pg_extension e
            WHERE e.extnamespace = 'public'::regnamespace
        ORDER BY 1, 2""")  # type: ignore[return-value]


def _tables(project: Project, schema: str = "public") -> set[str]:
    return {r[0] for r in project.query(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'")}


def _db_settings(database: str) -> list[str]:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d "
            "ON d.oid = s.setdatabase WHERE d.datname = %s AND s.setrole = 0",
            (database,)).fetchall()
    return [item for row in rows for item in row[0] or []]


def _role_settings(role: str) -> list[str]:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
            "WHERE r.rolname = %s AND s.setdatabase = 0", (role,)).fetchall()
    return [item for row in rows for item in row[0] or []]


@contextlib.contextmanager
def _postgres_database_setting(name: str, value: str | None) -> Iterator[None]:
    """Run the block with database ``postgres`` holding ``name = value``, as another user
    of the cluster may have left it (None: as it is); afterwards put back what was there."""
    import psycopg
    from psycopg import sql

    if value is None:
        yield
        return
    before = [s.split("=", 1)[1] for s in _db_settings("postgres")
              if s.startswith(f"{name}=")]
    alter = sql.SQL("ALTER DATABASE postgres ")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(alter + sql.SQL("SET {} = {}").format(sql.Identifier(name),
                                                            sql.Literal(value)))
    try:
        yield
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(alter + (sql.SQL("SET {} = {}").format(
                sql.Identifier(name), sql.Literal(before[0])) if before else sql.SQL(
                "RESET {}").format(sql.Identifier(name))))


# ---------------------------------------------------------------------------------------


@CLUSTER_WIDE
@pytest.mark.parametrize("jwt_secret_before", [None, "set-by-someone-else"])
def test_cryoprotect_with_its_own_begin_commit(pg_project: Project, pg_database: PgDatabase,
                                               corpus: Path,
                                               manifest: dict[str, dict[str, Any]],
                                               jwt_secret_before: str | None) -> None:
    entry = manifest["cryoprotect"]
    project = pg_project
    # 001 hard-codes ALTER DATABASE postgres SET "app.jwt_secret": afterwards the cluster
    # must hold what it held before, including a value that someone else had set.
    with _postgres_database_setting("app.jwt_secret", jwt_secret_before), \
            h.cluster_restored(pg_database):
        h.run_sql_file(project.url, corpus / "supabase_stub.sql")
        convert_plain(corpus / entry["dir"], entry["apply_order"], project.migrations)
        result = _apply_all(project, len(entry["apply_order"]))

        # 010 and 014 carry their own BEGIN; ... COMMIT;: recognised, not sent, noticed.
        assert re.search(r"010_complete_rls_policies\.sql line \d+: BEGIN not sent",
                         result.stderr), result.stderr
        assert re.search(r"014_chembl_molecules_schema_remediation\.sql line \d+: COMMIT "
                         r"not sent", result.stderr), result.stderr
        assert {"molecules", "mixtures", "molecule", "teams", "protocols", "roles",
                "permissions"} <= _tables(project)
        assert project.query("SELECT count(*) FROM pg_policies WHERE schemaname = "
                             "'public'")[0][0] > 0
        assert {"app.jwt_secret=your-jwt-secret", "app.jwt_exp=3600"} <= set(
            _db_settings("postgres"))


def test_harbor_golang_migrate_up_files(pg_project: Project, corpus: Path,
                                        manifest: dict[str, dict[str, Any]]) -> None:
    entry = manifest["harbor"]
    project = pg_project
    h.run_sql_file(project.url, corpus / "golang_migrate_stub.sql")
    convert_plain(corpus / entry["dir"], entry["apply_order"], project.migrations,
                  suffix=".up.sql")
    assert (project.migrations / "0050_2_2_0_schema.sql").exists()
    _apply_all(project, len(entry["apply_order"]))
    assert {"harbor_user", "project", "project_member", "access", "role"} <= _tables(project)
    # 0030 adds a column to golang-migrate's own table (the stub's), 0040 drops it again.
    assert project.query("SELECT column_name FROM information_schema.columns WHERE "
                         "table_name = 'schema_migrations' ORDER BY 1") == [
        ("dirty",), ("version",)]
    assert project.query("SELECT count(*) FROM harbor_user WHERE username = 'admin'") == [(1,)]


def test_docs_rs_apply_rollback_everything_and_reapply(
        pg_project: Project, corpus: Path, manifest: dict[str, dict[str, Any]]) -> None:
    entry = manifest["docs.rs"]
    project = pg_project
    # A history table outside public, so "public is empty" means exactly that.
    config_with(project, history_table="cryomigrate_meta.history")
    convert_pairs(corpus / entry["dir"], entry["apply_order"], project.migrations)
    assert (project.migrations / "20240309082057_release_status_view_sql.sql").exists()
    count = len(entry["apply_order"])

    _apply_all(project, count)
    assert {"crates", "releases", "builds", "owners", "repositories"} <= _tables(project)
    assert {"build_status", "owner_kind"} <= {
        r[0] for r in project.query("SELECT typname FROM pg_type WHERE typtype = 'e'")}

    rolled = project.cli("rollback")
    assert rolled.exit_code == 0, rolled.output
    assert set(_states(project).values()) == {"pending"}
    # The initial down file drops every object but not the extension its up file created
    # with CREATE EXTENSION IF NOT EXISTS; so that is all public may still hold.
    assert _public_objects(project) == [("extension", "fuzzystrmatch")]

    _apply_all(project, count)
    assert {"crates", "releases", "builds"} <= _tables(project)
    journal = project.query("SELECT action, outcome, count(*) "
                            "FROM cryomigrate_meta.history_journal GROUP BY 1, 2 ORDER BY 1, 2")
    assert journal == [("apply", "ok", 2 * count), ("rollback", "ok", count)]


def test_openfga_goose_with_create_index_concurrently(
        pg_project: Project, corpus: Path, manifest: dict[str, dict[str, Any]]) -> None:
    entry = manifest["openfga"]
    project = pg_project
    config_with(project, history_table="cryomigrate_meta.history")
    convert_goose(corpus / entry["dir"], entry["apply_order"], project.migrations)
    assert entry["no_transaction"] == ["006_add_collate_index.sql"]
    count = len(entry["apply_order"])
    index_state = ("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c "
                   "ON c.oid = i.indexrelid WHERE c.relname IN "
                   "('idx_user_lookup', 'idx_reverse_lookup_user') ORDER BY 1")

    _apply_all(project, count)
    assert {"tuple", "authorization_model", "store", "assertion", "changelog"} <= _tables(
        project)
    assert project.query(index_state) == [("idx_user_lookup", True)]

    rolled = project.cli("rollback", "--steps", "1")
    assert rolled.exit_code == 0, rolled.output
    assert project.query(index_state) == [("idx_reverse_lookup_user", True)]
    rolled = project.cli("rollback")
    assert rolled.exit_code == 0, rolled.output
    assert _public_objects(project) == []

    _apply_all(project, count)
    assert project.query(index_state) == [("idx_user_lookup", True)]


@CLUSTER_WIDE
def test_supabase_cache_helpers(pg_project: Project, pg_database: PgDatabase, corpus: Path,
                                manifest: dict[str, dict[str, Any]]) -> None:
    entry = manifest["supabase-cache-helpers"]
    project = pg_project
    with h.cluster_restored(pg_database):
        h.run_sql_file(project.url, corpus / "supabase_stub.sql")
        convert_plain(corpus / entry["dir"], entry["apply_order"], project.migrations)
        _apply_all(project, len(entry["apply_order"]))
        assert {"contact", "contact_note", "serial_key_table", "multi_pk", "address_book",
                "address_book_contact"} <= _tables(project)
        assert project.query("SELECT count(*) FROM pg_publication_tables WHERE pubname = "
                             "'supabase_realtime'")[0][0] > 0
        assert "pgrst.db_aggregates_enabled=true" in _role_settings("authenticator")
