"""supabase/dbdev (54 files, ``format: supabase``) read in place, on a cluster of its own.

dbdev's first migrations create pg_cron, which loads only through
``shared_preload_libraries`` and works only in the database ``cron.database_name`` names:
neither can be set on the shared test cluster, which every other test uses. So this test
makes a throw-away cluster (Debian's postgresql-common: ``pg_createcluster``, as root) on a
free port with pg_cron loaded and trust auth, and drops it whatever happens. Nothing on the
shared cluster is touched (the Supabase stub's roles are created on the private one), so
the test needs no ``cluster_wide`` mark; its cluster name and port are its own, so parallel
workers and other runs on this machine do not collide with it.

.ci/run installs ``postgresql-15-cron``; outside CI a machine without it, or without
postgresql-common or root, skips the test, and in CI that fails it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import helpers_pg as h
from tests.conftest import IN_CI, Project, corpus_dir
from tests.helpers_core import assert_clean_exit
from tests.test_corpus_formats import read_in_place, states

PG_MAJOR = "15"
PG_CRON_CONTROL = Path(f"/usr/share/postgresql/{PG_MAJOR}/extension/pg_cron.control")
DBDEV_FILES = 54


@dataclass(frozen=True)
class PrivateCluster:
    name: str
    port: int
    database: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"


def _unavailable() -> str | None:
    if shutil.which("pg_createcluster") is None or shutil.which("pg_dropcluster") is None:
        return "pg_createcluster is not installed (Debian's postgresql-common)"
    if not PG_CRON_CONTROL.is_file():
        return f"pg_cron is not installed ({PG_CRON_CONTROL}; apt package " \
               f"postgresql-{PG_MAJOR}-cron, which .ci/run installs)"
    if os.geteuid() != 0:
        return "pg_createcluster needs root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stdout}{result.stderr}"


def _start(cluster: PrivateCluster) -> None:
    _run("pg_createcluster", PG_MAJOR, cluster.name, "-p", str(cluster.port),
         "-o", "shared_preload_libraries=pg_cron",
         "-o", f"cron.database_name={cluster.database}", "--", "--auth=trust")
    _run("pg_ctlcluster", "--skip-systemctl-redirect", PG_MAJOR, cluster.name, "start")
    _run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
         str(cluster.port), "-U", "postgres", "-d", "postgres",
         "-c", f'CREATE DATABASE "{cluster.database}"')


@pytest.fixture(scope="module")
def pg_cron_cluster() -> Iterator[PrivateCluster]:
    problem = _unavailable()
    if problem is not None:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    # A port free now can be taken before the server binds it (another worker, another
    # run): then that attempt's cluster is dropped and another port tried.
    for attempt in range(3):
        cluster = PrivateCluster(f"cmtest_{uuid.uuid4().hex[:12]}", _free_port(), "dbdev")
        try:
            _start(cluster)
        except AssertionError as exc:
            _drop(cluster)
            if attempt == 2 or "already in use" not in str(exc):
                raise
            continue
        try:
            yield cluster
        finally:
            _drop(cluster)
        return


def _drop(cluster: PrivateCluster) -> None:
    subprocess.run(["pg_dropcluster", "--stop", PG_MAJOR, cluster.name],
                   capture_output=True, timeout=120)


def test_dbdev_supabase_layout_applies_in_place_with_pg_cron(
        pg_cron_cluster: PrivateCluster, tmp_path: Path) -> None:
    corpus = corpus_dir()
    assert corpus is not None
    project = Project(tmp_path, pg_cron_cluster.url, "postgresql")
    h.run_sql_file(project.url, corpus / "supabase_stub.sql")
    read_in_place(project, corpus / "dbdev", "supabase")

    result = project.cli("apply", "--format", "json")
    assert_clean_exit(result, 0)
    applied = json.loads(result.stdout)["applied"]
    assert len(applied) == DBDEV_FILES
    assert applied[0]["version"] == "20220117141357"

    result = project.cli("history", "--format", "json")
    assert_clean_exit(result, 0)
    entries = json.loads(result.stdout)["entries"]
    assert [(e["action"], e["outcome"]) for e in entries] == [("apply", "ok")] * DBDEV_FILES
    found = states(project)
    assert len(found) == DBDEV_FILES and set(found.values()) == {"applied"}
    assert project.query("SELECT extname FROM pg_extension WHERE extname = 'pg_cron'") == [
        ("pg_cron",)]
    assert project.query("SELECT count(*) > 0 FROM cron.job") == [(True,)]

    again = project.cli("apply", "--format", "json")
    assert_clean_exit(again, 0)
    assert json.loads(again.stdout)["applied"] == []
