"""The real Supabase CLI agrees with cryomigrate (DESIGN 8.2, ``supabase_history: true``).

"Both ways" here means a team can hand the same ``supabase/migrations`` folder from one
tool to the other at any point:

- cryomigrate applies: ``supabase migration list`` shows every version local and remote,
  and ``supabase migration up`` applies nothing;
- the CLI takes over part-way: what cryomigrate has not applied is local only for the CLI,
  and ``supabase migration up`` applies exactly that; back with cryomigrate,
  ``cryomigrate baseline`` records what the CLI applied, and both agree again.

The files are plain Supabase migrations, with no ``-- cryomigrate:rollback`` section: the
CLI runs a file whole, so a rollback section in a file it reads would run too. (Adopting
the CLI's table without a baseline is ``cryomigrate adopt --from supabase``, DESIGN 9.2.)

After ``cryomigrate baseline`` (over a direct connection and over the HTTP API), the CLI
too sees the baselined versions as applied, and ``supabase migration up`` applies only what
came after them.

The CLI is found through ``CRYOMIGRATE_SUPABASE_CLI`` (set by .ci/run); under CI a
missing CLI fails the test rather than skipping it. It runs with telemetry and update
checks off, and needs no Docker for ``migration list|up --db-url``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests import helpers_pg as h
from tests.conftest import CLUSTER_WIDE, IN_CI, Project
from tests.test_supabase_http import api, supabase  # noqa: F401  (fixtures of the HTTP case)

DEFAULT_CLI = ("/opt/cryomigrate-peers/supabase-cli/node_modules/@supabase/cli-linux-x64/bin/"
               "supabase")
QUIET = {"SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1",
         "SUPABASE_NO_UPDATE_NOTIFIER": "1"}
VERSIONS = ["20240101000000", "20240102000000", "20240103000000"]


def _cli() -> str:
    path = os.environ.get("CRYOMIGRATE_SUPABASE_CLI", DEFAULT_CLI)
    if not os.access(path, os.X_OK):
        message = f"the Supabase CLI is not at {path} (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def _supabase(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    url = project.url + "?sslmode=disable"
    result = subprocess.run(
        [_cli(), "migration", *args, "--db-url", url, "--workdir", str(project.root)],
        capture_output=True, text=True, timeout=120, env={**os.environ, **QUIET})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _listed(project: Project) -> list[tuple[str, str]]:
    """(local, remote) per row of ``supabase migration list``."""
    rows = []
    for line in _supabase(project, "list").stdout.splitlines():
        cells = [c.strip().strip("`").strip() for c in line.split("|")]
        if len(cells) == 3 and re.fullmatch(r"\d{14}|", cells[0]) and cells[0] + cells[1]:
            rows.append((cells[0], cells[1]))
    return rows


@pytest.fixture
def supabase_project(pg_project: Project) -> Project:
    project = pg_project
    folder = project.root / "supabase" / "migrations"
    folder.mkdir(parents=True)
    project.config.write_text(
        "migrations: supabase/migrations\nenvironments:\n  development:\n"
        f"    database: {project.url}\n    supabase_history: true\n", encoding="utf-8")
    for n, version in enumerate(VERSIONS):
        Path(folder / f"{version}_table_{n}.sql").write_text(
            f"CREATE TABLE public.t{n} (id int);\nINSERT INTO public.t{n} VALUES ({n});\n",
            encoding="utf-8")
    return project


def test_cli_sees_what_cryomigrate_applied(supabase_project: Project) -> None:
    project = supabase_project
    assert _listed(project) == [(v, "") for v in VERSIONS]
    applied = project.cli("apply")
    assert applied.exit_code == 0, applied.output
    assert _listed(project) == [(v, v) for v in VERSIONS]
    up = _supabase(project, "up")
    assert "Applying migration" not in up.stdout + up.stderr
    assert project.query("SELECT name, statements FROM supabase_migrations.schema_migrations "
                         "ORDER BY version")[0] == (
        "table_0", ["CREATE TABLE public.t0 (id int)", "INSERT INTO public.t0 VALUES (0)"])


def test_cli_takes_over_part_way_and_hands_back(supabase_project: Project) -> None:
    project = supabase_project
    applied = project.cli("apply", "--target", VERSIONS[0])
    assert applied.exit_code == 0, applied.output
    assert _listed(project) == [(VERSIONS[0], VERSIONS[0])] + [(v, "") for v in VERSIONS[1:]]

    up = _supabase(project, "up")
    assert up.stderr.count("Applying migration") == 2, up.stderr
    assert project.query("SELECT count(*) FROM public.t2") == [(1,)]
    assert _listed(project) == [(v, v) for v in VERSIONS]

    baseline = project.cli("baseline", VERSIONS[-1])
    assert baseline.exit_code == 0, baseline.output
    status = project.cli("status")
    assert status.exit_code == 0 and "pending" not in status.stdout, status.output
    assert project.cli("apply").exit_code == 0
    assert project.query("SELECT count(*) FROM public.t2") == [(1,)], "applied once"
    assert _listed(project) == [(v, v) for v in VERSIONS]


# The HTTP case brings the Supabase stub (fixture api), reached through getfixturevalue.
@pytest.mark.parametrize("transport", ["direct", pytest.param("http", marks=CLUSTER_WIDE)])
def test_cli_agrees_after_a_baseline(supabase_project: Project, transport: str,
                                     request: pytest.FixtureRequest) -> None:
    project = supabase_project
    if transport == "http":
        # The stand-in, cryomigrate's functions and the service key in the environment.
        server = request.getfixturevalue("api").server
        from tests import postgrest_standin as standin

        project.config.write_text(
            "migrations: supabase/migrations\nenvironments:\n  development:\n"
            f"    database: {standin.project_url(server)}\n"
            "    service_key: ${SUPABASE_SERVICE_ROLE_KEY}\n    supabase_history: true\n",
            encoding="utf-8")
    folder = project.root / "supabase" / "migrations"
    for n in (0, 1):  # what the database already holds, applied by hand
        h.execute(project.url, (folder / f"{VERSIONS[n]}_table_{n}.sql").read_text())

    baseline = project.cli("baseline", VERSIONS[1])
    assert baseline.exit_code == 0, baseline.output
    assert _listed(project) == [(v, v) for v in VERSIONS[:2]] + [(VERSIONS[2], "")]
    assert project.query("SELECT name, statements FROM supabase_migrations.schema_migrations "
                         "ORDER BY version")[0] == (
        "table_0", ["CREATE TABLE public.t0 (id int)", "INSERT INTO public.t0 VALUES (0)"])
    up = _supabase(project, "up")
    assert up.stderr.count("Applying migration") == 1, up.stderr
    assert project.query("SELECT count(*) FROM public.t0") == [(1,)], "not applied again"
    assert project.query("SELECT count(*) FROM public.t2") == [(1,)]
    assert _listed(project) == [(v, v) for v in VERSIONS]
