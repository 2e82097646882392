"""Real folders of real projects, read in place with ``format:`` (DESIGN §9.1).

Nothing is copied or renamed: ``migrations:`` points at the corpus folder by absolute
path (../shared/corpus, see its README.md), and each file runs as its own tool runs it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import helpers_pg as h
from tests.conftest import CLUSTER_WIDE, PgDatabase, Project, corpus_dir
from tests.helpers_core import assert_clean_exit


@pytest.fixture
def corpus() -> Path:
    path = corpus_dir()
    assert path is not None
    return path


def read_in_place(project: Project, folder: Path, fmt: str) -> None:
    project.write_config(f"""
        format: {fmt}
        migrations: {folder}
        history_table: cryomigrate_meta.history
        environments:
          development:
            database: {project.url}
    """)


def states(project: Project) -> dict[str, str]:
    result = project.cli("status", "--format", "json")
    assert_clean_exit(result, 0)
    return {m["version"]: m["state"] for m in json.loads(result.stdout)["migrations"]}


def tables(project: Project) -> set[str]:
    return {r[0] for r in project.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}


def test_openfga_goose_in_place(pg_project: Project, corpus: Path) -> None:
    read_in_place(pg_project, corpus / "openfga", "goose")
    index = ("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
             "WHERE c.relname IN ('idx_user_lookup', 'idx_reverse_lookup_user') AND "
             "i.indisvalid ORDER BY 1")
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert set(states(pg_project).values()) == {"applied"}
    assert pg_project.query(index) == [("idx_user_lookup",)]  # NO TRANSACTION, CONCURRENTLY
    assert_clean_exit(pg_project.cli("rollback", "--steps", "1"), 0)
    assert pg_project.query(index) == [("idx_reverse_lookup_user",)]
    assert_clean_exit(pg_project.cli("rollback"), 0)
    assert tables(pg_project) == set()


def test_docs_rs_sqlx_pairs_in_place(pg_project: Project, corpus: Path) -> None:
    read_in_place(pg_project, corpus / "docs.rs", "sqlx")
    assert_clean_exit(pg_project.cli("apply"), 0)
    found = states(pg_project)
    assert len(found) == 33 and set(found.values()) == {"applied"}
    assert {"crates", "releases", "builds"} <= tables(pg_project)
    assert_clean_exit(pg_project.cli("rollback"), 0)
    assert tables(pg_project) == set()  # schema public empty (the extension aside)
    assert pg_project.query("SELECT count(*) FROM pg_class WHERE relnamespace = "
                            "'public'::regnamespace") == [(0,)]
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert set(states(pg_project).values()) == {"applied"}


def test_harbor_golang_migrate_in_place(pg_project: Project, corpus: Path) -> None:
    h.run_sql_file(pg_project.url, corpus / "golang_migrate_stub.sql")
    read_in_place(pg_project, corpus / "harbor", "golang-migrate")
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert len(states(pg_project)) == 39
    assert {"harbor_user", "project", "role"} <= tables(pg_project)


@CLUSTER_WIDE
def test_supabase_cache_helpers_in_place(pg_project: Project, pg_database: PgDatabase,
                                         corpus: Path) -> None:
    with h.cluster_restored(pg_database):
        h.run_sql_file(pg_project.url, corpus / "supabase_stub.sql")
        read_in_place(pg_project, corpus / "supabase-cache-helpers", "supabase")
        assert_clean_exit(pg_project.cli("apply"), 0)
        assert len(states(pg_project)) == 8
        assert {"contact", "contact_note"} <= tables(pg_project)
        result = pg_project.cli("rollback")
        assert_clean_exit(result, 2)
        assert "irreversible" in result.stderr
