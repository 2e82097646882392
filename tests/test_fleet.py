"""Fleets (DESIGN 11, issue 13): one command on many databases, bounded, sharded, exactly once.

PostgreSQL tests create their own databases (unique names) and drop them in ``finally``;
``require_postgres()`` makes them fail, not skip, in CI.
"""

from __future__ import annotations

import json
import signal
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cryomigrate.cli import main
from cryomigrate.errors import FleetFailed, InputError
from tests.conftest import PG_ADMIN_URL, require_postgres
from tests.helpers_core import assert_clean_exit, json_doc
from tests.helpers_pg import finish, spawn, wait_until

SECRET = "Fl33t-s3cret-Pw"
UNREACHABLE = f"postgresql://app:{SECRET}@127.0.0.1:1/nowhere"  # port 1: nothing listens


@contextmanager
def pg_databases(count: int) -> Iterator[list[str]]:
    """``count`` fresh PostgreSQL databases (their URLs), dropped afterwards."""
    require_postgres()
    import psycopg

    names = [f"cm_fleet_{uuid.uuid4().hex[:10]}" for _ in range(count)]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            for name in names:
                admin.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        yield [f"{base}/{name}" for name in names]
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def project(root: Path, urls: list[str], *, migrations: int = 2, sleep: float = 0,
            extra: str = "") -> Path:
    """A project whose ``fleet`` environment lists ``urls``; each migration creates a
    table and logs itself in ``effects`` (so doing one twice would show)."""
    (root / "migrations").mkdir(parents=True, exist_ok=True)
    for n in range(1, migrations + 1):
        slow = f"SELECT pg_sleep({sleep});\n" if sleep else ""
        (root / "migrations" / f"00{n}_t{n}.sql").write_text(
            f"-- cryomigrate:apply\n{slow}CREATE TABLE t{n} (id int);\n"
            f"CREATE TABLE IF NOT EXISTS effects (version text);\n"
            f"INSERT INTO effects VALUES ('00{n}');\n"
            f"-- cryomigrate:rollback\nDROP TABLE t{n};\n")
    listed = "".join(f"\n      - {json.dumps(url)}" for url in urls)
    config = root / "environments.yaml"
    config.write_text(f"environments:\n  fleet:\n    databases:{listed}\n{extra}")
    return config


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args, "--env", "fleet"],
                              catch_exceptions=True)


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description is not None else []


def effects(url: str) -> list[str]:
    if not query(url, "SELECT 1 FROM pg_tables WHERE tablename = 'effects'"):
        return []
    return sorted(row[0] for row in query(url, "SELECT version FROM effects"))


def touched(url: str) -> bool:
    return bool(query(url, "SELECT 1 FROM pg_tables WHERE tablename LIKE 'cryomigrate%'"))


# --- the scenarios on PostgreSQL ---------------------------------------------------

def test_ten_databases_and_one_unreachable_with_a_password(tmp_path: Path) -> None:
    with pg_databases(10) as urls:
        config = project(tmp_path, [*urls[:4], UNREACHABLE, *urls[4:]], extra="    parallel: 4\n")
        result = cli(config, "apply", "--format", "json")
        assert_clean_exit(result, 6)
        document = json_doc(result)
        entries = {e["database"]: e for e in document["databases"]}
        for url in urls:
            assert entries[url]["error"] is None and entries[url]["version"] == "002"
            assert [m["version"] for m in entries[url]["applied"]] == ["001", "002"]
            assert effects(url) == ["001", "002"]
        bad = document["databases"][4]
        assert bad["database"] == "postgresql://app:***@127.0.0.1:1/nowhere"
        assert bad["error"]["code"] == 6 and document["error"]["code"] == 6
        assert document["summary"]["versions"] == [{"version": "002", "databases": 10}]
        assert document["summary"]["failed"] == 1
        text = cli(config, "apply")  # the text report, a no-op for the ten
        assert_clean_exit(text, 6)
        assert "10 ok, 1 failed" in text.stdout and "at 002: 10" in text.stdout
        for output in (result.stdout, result.stderr, text.stdout, text.stderr):
            assert SECRET not in output


def test_shards_cover_every_database_exactly_once(tmp_path: Path) -> None:
    with pg_databases(7) as urls:
        config = project(tmp_path, urls)
        seen: list[str] = []
        for k in (1, 2, 3):
            result = cli(config, "apply", "--shard", f"{k}/3", "--format", "json")
            assert_clean_exit(result, 0)
            document = json_doc(result)
            assert document["summary"]["shard"] == f"{k}/3"
            seen += [e["database"] for e in document["databases"]]
        assert sorted(seen) == sorted(urls)
        assert all(effects(url) == ["001", "002"] for url in urls)


def test_two_fleet_runs_at_once_apply_every_migration_once(tmp_path: Path) -> None:
    with pg_databases(6) as urls:
        config = project(tmp_path, urls, migrations=3, sleep=0.05, extra="    parallel: 3\n")
        runs = [spawn(config, "apply", "--env", "fleet") for _ in range(2)]
        for done in [finish(p) for p in runs]:
            assert done.returncode == 0, done.output
        for url in urls:
            assert effects(url) == ["001", "002", "003"]
            assert len(query(url, "SELECT * FROM cryomigrate_history")) == 3


def test_a_database_that_failed_part_way_is_counted_where_it_stopped(tmp_path: Path
                                                                     ) -> None:
    with pg_databases(3) as urls:
        query(urls[1], "CREATE TABLE t2 (id int)")  # 001 applies there, 002 fails
        config = project(tmp_path, urls)
        result = cli(config, "apply", "--format", "json")
        assert_clean_exit(result, 1)
        document = json_doc(result)
        failed = document["databases"][1]
        assert (failed["outcome"], failed["version"]) == ("failed", "001")
        assert [m["version"] for m in failed["applied"]] == ["001"]
        assert document["summary"]["versions"] == [{"version": "001", "databases": 1},
                                                   {"version": "002", "databases": 2}]
        text = cli(config, "rollback", "--target", "001")  # 001 everywhere now
        assert_clean_exit(text, 0)
        assert "at 001: 3" in text.stdout, text.stdout
        query(urls[2], "CREATE TABLE t2 (id int)")
        text = cli(config, "apply")
        assert_clean_exit(text, 1)
        assert "exit 1 (at 001): 002_t2.sql" in text.stdout, text.stdout
        assert "at 001: 2" in text.stdout and "at 002: 1" in text.stdout, text.stdout


def test_fail_fast_with_parallel_one_touches_only_the_first(tmp_path: Path) -> None:
    with pg_databases(4) as urls:
        query(urls[0], "CREATE TABLE t1 (id int)")  # 001 fails there
        config = project(tmp_path, urls)
        result = cli(config, "apply", "--fail-fast", "--parallel", "1", "--format", "json")
        assert_clean_exit(result, 1)
        outcomes = [e["outcome"] for e in json_doc(result)["databases"]]
        assert outcomes == ["failed", "not started", "not started", "not started"]
        assert not any(touched(url) for url in urls[1:])


def test_connections_never_exceed_parallel(tmp_path: Path) -> None:
    with pg_databases(6) as urls:
        names = [url.rsplit("/", 1)[1] for url in urls]
        config = project(tmp_path, urls, sleep=0.3, extra="    parallel: 4\n")
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                while not stop.is_set():
                    row = admin.execute("SELECT count(*) FROM pg_stat_activity "
                                        "WHERE datname = ANY(%s)", (names,)).fetchone()
                    peak = max(peak, row[0] if row else 0)
                    time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            result = cli(config, "apply", "--parallel", "2")
        finally:
            stop.set()
            sampler.join()
        assert_clean_exit(result, 0)
        assert peak == 2, f"{peak} connections at once with --parallel 2"


def test_ctrl_c_cancels_running_databases_and_starts_no_more(tmp_path: Path) -> None:
    with pg_databases(4) as urls:
        names = [url.rsplit("/", 1)[1] for url in urls]
        config = project(tmp_path, urls, migrations=1, sleep=30, extra="    parallel: 2\n")
        process = spawn(config, "apply", "--env", "fleet", "--format", "json")

        def sleeping() -> bool:
            rows = query(PG_ADMIN_URL, "SELECT count(*) FROM pg_stat_activity WHERE "
                         f"datname IN ({', '.join(repr(n) for n in names)}) "
                         "AND query LIKE '%pg_sleep%' AND state = 'active'")
            return rows[0][0] == 2

        wait_until(sleeping, 60, "two migrations running", process)
        clock = time.monotonic()
        process.send_signal(signal.SIGINT)
        done = finish(process, timeout=30)
        assert time.monotonic() - clock < 15, "the running statements were not cancelled"
        assert done.returncode == 130, done.output
        outcomes = [e["outcome"] for e in json.loads(done.stdout)["databases"]]
        assert sorted(outcomes) == ["interrupted", "interrupted", "not started", "not started"]
        assert not any(effects(url) for url in urls)  # cancelled and rolled back


# --- configuration and options (no server needed) -----------------------------------------

def sqlite_fleet(root: Path, body: str) -> Path:
    (root / "migrations").mkdir(exist_ok=True)
    (root / "migrations" / "001_a.sql").write_text("CREATE TABLE a (id int);\n")
    config = root / "environments.yaml"
    config.write_text(textwrap.dedent(body).lstrip())
    return config


@pytest.mark.parametrize(("body", "expected"), [
    ("environments:\n  fleet:\n    databases: []\n", "environments.fleet.databases"),
    ("environments:\n  fleet:\n    database: sqlite:///a.db\n    databases: [sqlite:///b.db]\n",
     "not both"),
    ("environments:\n  fleet:\n    databases: [sqlite:///a.db]\n    parallel: 0\n",
     "environments.fleet.parallel"),
    ("environments:\n  fleet:\n    databases: [sqlite:///a.db]\n    parallel: true\n",
     "environments.fleet.parallel"),
    ("environments:\n  fleet:\n    databases: [sqlite:///a.db, mysql://x/y]\n",
     "environments.fleet.databases.1"),
    ("environments:\n  fleet:\n    databases: [sqlite:///a.db, sqlite:///a.db]\n",
     "already listed"),
    # One database under two spellings: the default port, postgres://, the host's case,
    # another user, a query string.
    ("environments:\n  fleet:\n    databases: [postgresql://app@db.example:5432/t_a, "
     "postgres://other@DB.example/t_a?sslmode=require]\n", "already listed"),
    ("defaults:\n  databases: [sqlite:///a.db]\nenvironments:\n  fleet:\n    database: "
     "sqlite:///a.db\n", "defaults"),
    ("environments:\n  fleet:\n    databases_file: missing.txt\n", "missing.txt"),
    ("environments:\n  fleet:\n    databases_file: t.txt\n", "t.txt:3: "
     "environments.fleet.databases_file"),
    ("environments:\n  fleet:\n    databases_file: empty.txt\n", "no database"),
    ("environments:\n  fleet:\n    databases_file: unset.txt\n",
     "unset.txt:2: environments.fleet.databases_file: environment 'fleet' uses "
     "${CM_TEST_UNSET_URL}"),
])
def test_config_near_misses_are_input_errors(tmp_path: Path, body: str, expected: str) -> None:
    (tmp_path / "t.txt").write_text("sqlite:///a.db\n# a comment\npostgresql://u:p@w@h/db\n")
    (tmp_path / "empty.txt").write_text("# nothing here\n\n")
    (tmp_path / "unset.txt").write_text("sqlite:///a.db\n${CM_TEST_UNSET_URL}\n")
    config = sqlite_fleet(tmp_path, body)
    result = cli(config, "status", "--format", "json")
    assert_clean_exit(result, 2)
    message = json_doc(result)["error"]["message"]
    assert expected in message, message
    assert ".yaml:" in message or ".txt:" in message, message  # file and line named
    assert "u:p@w" not in result.stdout + result.stderr


@pytest.mark.parametrize("shard", ["0/3", "4/3", "1/0", "a/b", "1-3", "/3", "3/", "-1/3", "1/3/3"])
def test_shard_near_misses_are_usage_errors(tmp_path: Path, shard: str) -> None:
    config = sqlite_fleet(tmp_path, "environments:\n  fleet:\n    databases: [sqlite:///a.db]\n")
    result = cli(config, "status", "--shard", shard)
    assert_clean_exit(result, 2)
    assert "--shard" in result.stderr


def test_fleet_options_on_one_database_are_refused(tmp_path: Path) -> None:
    config = sqlite_fleet(tmp_path, "environments:\n  fleet:\n    database: sqlite:///a.db\n")
    assert_clean_exit(cli(config, "apply", "--shard", "1/2"), 2)
    assert_clean_exit(cli(config, "apply"), 0)


def test_sqlite_fleet_from_a_file_every_command(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("# tenants\nsqlite:///a.db\n\nsqlite:///b.db  # second\n"
                                    "sqlite:///c.db\n")
    config = sqlite_fleet(tmp_path, "environments:\n  fleet:\n    databases_file: t.txt\n"
                                    "    parallel: 2\n")
    for command in ("apply", "status", "validate", "history"):
        result = cli(config, command, "--format", "json")
        assert_clean_exit(result, 0)
        assert len(json_doc(result)["databases"]) == 3, command
    rolled = cli(config, "rollback", "--format", "json")
    assert_clean_exit(rolled, 2)  # 001_a.sql has no rollback section: refused on each
    text = cli(config, "status")
    assert "3 ok" in text.stdout and "at 001: 3" in text.stdout


def test_lint_verify_and_drift_run_on_every_database(tmp_path: Path) -> None:
    # The production-safety commands (DESIGN 10) on a fleet: each database alone, one
    # document; a column added by hand to one database is that database's drift only.
    import sqlite3

    config = sqlite_fleet(tmp_path, "environments:\n  fleet:\n    databases: "
                                    "[sqlite:///a.db, sqlite:///b.db]\n")
    (tmp_path / "migrations" / "001_a.sql").write_text(
        "-- cryomigrate:apply\nCREATE TABLE a (id INTEGER);\n"
        "-- cryomigrate:rollback\nDROP TABLE a;\n")
    assert_clean_exit(cli(config, "apply"), 0)
    for command in ("lint", "verify", "drift"):
        result = cli(config, command, "--format", "json", "--all" if command == "lint"
                     else "--parallel", *(() if command == "lint" else ("2",)))
        assert_clean_exit(result, 0)
        assert [d["outcome"] for d in json_doc(result)["databases"]] == ["ok", "ok"], command
    (tmp_path / "migrations" / "002_drop.sql").write_text("DROP TABLE a;\n")
    linted = cli(config, "lint")  # a line per database, in words
    assert_clean_exit(linted, 0)
    assert linted.stdout.count("1 lint finding(s)") == 2, linted.stdout
    (tmp_path / "migrations" / "002_drop.sql").unlink()
    with sqlite3.connect(tmp_path / "b.db") as db:
        db.execute("ALTER TABLE a ADD COLUMN by_hand TEXT")
    drifted = cli(config, "drift", "--format", "json")
    assert_clean_exit(drifted, 4)
    outcomes = {d["database"]: d["outcome"] for d in json_doc(drifted)["databases"]}
    assert outcomes == {"sqlite:///a.db": "ok", "sqlite:///b.db": "failed"}, outcomes
    assert "by_hand" in drifted.stdout


def test_library_api(tmp_path: Path) -> None:
    from cryomigrate import apply_migrations
    from cryomigrate.fleet import FleetOptions, apply_fleet, fleet_status

    config = sqlite_fleet(tmp_path, "environments:\n  fleet:\n    databases: [sqlite:///a.db,"
                                    " sqlite:///b.db, 'sqlite:///sub/none/c.db']\n")
    with pytest.raises(InputError, match="fleet"):
        apply_migrations(environment="fleet", config=config)
    seen: list[str] = []
    with pytest.raises(FleetFailed) as failed:
        apply_fleet(environment="fleet", config=config,
                    options=FleetOptions(on_database=lambda o: seen.append(o.database)))
    assert sorted(seen) == ["sqlite:///a.db", "sqlite:///b.db", "sqlite:///sub/none/c.db"]
    result = failed.value.result
    assert [d.outcome for d in result.databases] == ["ok", "ok", "failed"]
    status = fleet_status(environment="fleet", config=config,
                          options=FleetOptions(shard=(1, 2)))
    assert [d.version for d in status.databases] == ["001"]
