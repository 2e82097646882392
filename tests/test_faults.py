"""Concurrency and faults on real databases (DESIGN 5): races, SIGKILL, lost connections,
timeouts and lock waits, and what a failing statement's message must say.

Runs are real ``python -m cryomigrate`` processes, so a kill takes a run down with its
connection exactly as in production. Every wait is bounded (see ``helpers_pg``).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests import helpers_pg as h
from tests.conftest import PgDatabase, Project

# ---------------------------------------------------------------------------------------
# Six runs at once


def _effect_migrations(project: Project, count: int) -> None:
    project.add("000_effects.sql", h.EFFECTS_SQL)
    for n in range(1, count + 1):
        if n % 5 == 0:
            project.add(f"{n:03d}_effect_{n}.py", f'''
                """Effect {n} from Python."""


                def apply(conn, environment):
                    conn.sql("INSERT INTO effects (version) VALUES ({n})").execute()


                def rollback(conn, environment):
                    conn.sql("DELETE FROM effects WHERE version = {n}").execute()
            ''')
        else:
            project.add(f"{n:03d}_effect_{n}.sql", f"""
                -- cryomigrate:apply
                CREATE TABLE t{n} (id INTEGER);
                INSERT INTO effects (version) VALUES ({n});
                -- cryomigrate:rollback
                DROP TABLE t{n};
                DELETE FROM effects WHERE version = {n};
            """)


def test_six_concurrent_applies_apply_every_migration_exactly_once(project: Project) -> None:
    count, runs = 25, 6
    _effect_migrations(project, count)
    h.run_at_once(project.config, runs, "apply", "--lock-wait", "120")

    h.assert_each_effect_once(project, count)
    history = project.history()
    assert [row[0] for row in history] == [f"{n:03d}" for n in range(count + 1)]
    assert {row[2] for row in history} == {"applied"}
    journal = project.query("SELECT version, outcome, count(*) FROM cryomigrate_history_journal "
                            "GROUP BY version, outcome ORDER BY version")
    assert journal == [(f"{n:03d}", "ok", 1) for n in range(count + 1)]
    assert set(h.status_states(project.config).values()) == {"applied"}


# ---------------------------------------------------------------------------------------
# SIGKILL inside a migration

KILL_MIGRATIONS = 8


def _assert_consistent(project: Project) -> set[int]:
    """Each migration's table exists exactly when its history row does; returns applied."""
    tables = project.tables()
    history = {int(row[0]): row[2] for row in project.history()}
    effects = dict(project.query("SELECT version, count(*) FROM effects GROUP BY version"))
    for n in range(1, KILL_MIGRATIONS + 1):
        recorded = history.get(n)
        assert recorded in (None, "applied"), f"migration {n} is {recorded} after a kill"
        assert (f"t{n}" in tables) == (recorded is not None), (
            f"t{n} exists={f't{n}' in tables} but history row={recorded}: half-applied")
        assert effects.get(n, 0) == (1 if recorded else 0), f"effect {n} counted {effects}"
    return set(history) - {0}


def test_sigkill_mid_migration_never_leaves_it_half_applied(project: Project) -> None:
    project.add("000_effects.sql", h.EFFECTS_SQL)
    for n in range(1, KILL_MIGRATIONS + 1):
        project.add(f"{n:03d}_gated_{n}.py", textwrap.dedent(h.GATED_PY.format(n=n)))
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    gate = {"CM_GATE_SECONDS": "0.2"}  # each migration sits 0.2 s inside its transaction
    kills_inside = 0
    for round_ in range(5):
        for marker in project.root.glob("inside_*"):
            marker.unlink()
        process = h.spawn(project.config, "apply", env=gate)
        if round_ % 2 == 0:
            # Wait until some migration is inside its transaction, then kill at a random
            # moment of its 0.2 s wait.
            h.wait_until(lambda: any(project.root.glob("inside_*")), 60,
                         "a migration to start", process)
            time.sleep(rng.uniform(0, 0.15))
            kills_inside += 1
        else:
            time.sleep(rng.uniform(0.05, 1.2))  # anywhere: start-up, between, inside
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        h.finish(process, timeout=30)
        assert process.returncode in (-signal.SIGKILL, 0), f"seed {seed}"
        applied = _assert_consistent(project)
        if len(applied) == KILL_MIGRATIONS:
            break
    assert kills_inside >= 1, f"seed {seed}: no kill landed inside a migration"

    final = h.run(project.config, "apply", "--lock-wait", "30")
    assert final.returncode == 0, f"seed {seed}\n{final.output}"
    assert _assert_consistent(project) == set(range(1, KILL_MIGRATIONS + 1))
    assert set(h.status_states(project.config).values()) == {"applied"}


# ---------------------------------------------------------------------------------------
# The server connection terminated in the middle of a migration (PostgreSQL)

SLEEPING_PY = '''
    """Create t2, then sleep on the server."""
    import os


    def apply(conn, environment):
        conn.sql("CREATE TABLE t2 (id INTEGER)").execute()
        conn.sql("INSERT INTO effects (version) VALUES (2)").execute()
        conn.sql("SELECT pg_sleep(%s)", (float(os.environ.get("CM_SLEEP", "0")),)).execute()


    def rollback(conn, environment):
        conn.sql("DROP TABLE t2").execute()
'''


def test_terminated_connection_mid_migration_fails_cleanly(pg_project: Project) -> None:
    import psycopg

    project = pg_project
    project.add("000_effects.sql", h.EFFECTS_SQL)
    project.add("001_first.sql", "CREATE TABLE t1 (id INTEGER);\n")
    project.add("002_sleeper.py", SLEEPING_PY)
    project.add("003_third.sql", "CREATE TABLE t3 (id INTEGER);\n")
    dbname = project.url.rsplit("/", 1)[1]
    process = h.spawn(project.config, "apply", env={"CM_SLEEP": "60"})
    with psycopg.connect(project.url, autocommit=True) as admin:
        def sleeping() -> list[tuple[int]]:
            return admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                "AND query LIKE 'SELECT pg_sleep%%'", (dbname,)).fetchall()

        h.wait_until(lambda: bool(sleeping()), 60, "002 to reach pg_sleep", process)
        (pid,) = sleeping()[0]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    result = h.finish(process, timeout=60)

    assert result.returncode == 1, result.output
    assert "Traceback" not in result.stderr, result.output
    assert "002_sleeper" in result.stderr, result.output
    assert "57P01" in result.stderr or "connection" in result.stderr.lower(), result.output
    assert "t2" not in project.tables() and "t3" not in project.tables()
    assert project.history() == [("000", "effects", "applied"), ("001", "first", "applied")]
    assert project.query("SELECT count(*) FROM effects") == [(0,)]
    assert h.status_states(project.config) == {
        "000": "applied", "001": "applied", "002": "pending", "003": "pending"}

    again = h.run(project.config, "apply", env={"CM_SLEEP": "0"})
    assert again.returncode == 0, again.output
    assert {"t1", "t2", "t3"} <= project.tables()
    assert set(h.status_states(project.config).values()) == {"applied"}


# ---------------------------------------------------------------------------------------
# lock_timeout, statement_timeout and --lock-wait


def _with_timeouts(project: Project, **settings: str) -> None:
    lines = "".join(f"            {key}: {value}\n" for key, value in settings.items())
    project.write_config(f"""
        environments:
          development:
            database: {project.url}
{lines}""")


def test_lock_timeout_fails_fast_and_leaves_migration_pending(pg_project: Project) -> None:
    import psycopg

    project = pg_project
    _with_timeouts(project, lock_timeout="500ms")
    project.add("001_target.sql", "CREATE TABLE target (id INTEGER);\n")
    assert h.run(project.config, "apply").returncode == 0
    project.add("002_alter_target.sql", "ALTER TABLE target ADD COLUMN note TEXT;\n")

    with psycopg.connect(project.url) as holder:  # holds the table lock until the block ends
        holder.execute("LOCK TABLE target IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = h.run(project.config, "apply", timeout=60)
        elapsed = time.monotonic() - started
        holder.rollback()

    assert result.returncode == 1, result.output
    assert elapsed < 15, f"lock_timeout 500ms took {elapsed:.1f}s to fire"
    assert "55P03" in result.stderr and "002_alter_target" in result.stderr, result.output
    assert "lock timeout" in result.stderr, result.output
    assert h.status_states(project.config) == {"001": "applied", "002": "pending"}
    assert project.query("SELECT count(*) FROM information_schema.columns "
                         "WHERE table_name = 'target' AND column_name = 'note'") == [(0,)]
    assert project.query("SELECT version, outcome FROM cryomigrate_history_journal "
                         "ORDER BY id") == [("001", "ok"), ("002", "failed")]


def test_statement_timeout_fails_and_leaves_migration_pending(pg_project: Project) -> None:
    project = pg_project
    _with_timeouts(project, statement_timeout="500ms")
    project.add("001_slow.sql", """
        CREATE TABLE slow (id INTEGER);
        SELECT pg_sleep(20);
    """)
    started = time.monotonic()
    result = h.run(project.config, "apply", timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.output
    assert elapsed < 15, f"statement_timeout 500ms took {elapsed:.1f}s to fire"
    assert "57014" in result.stderr and "001_slow" in result.stderr, result.output
    assert "slow" not in project.tables()
    assert h.status_states(project.config) == {"001": "pending"}


def test_lock_wait_expiry_exits_5_while_another_run_holds_the_lock(project: Project) -> None:
    project.add("000_effects.sql", h.EFFECTS_SQL)
    project.add("001_gated.py", textwrap.dedent(h.GATED_PY.format(n=1)))
    with h.run_held_inside_gate(project.config):
        started = time.monotonic()
        waiter = h.run(project.config, "apply", "--lock-wait", "1", timeout=60)
        elapsed = time.monotonic() - started
        assert waiter.returncode == 5, waiter.output
        assert "--lock-wait" in waiter.stderr, waiter.output
        assert "Traceback" not in waiter.stderr, waiter.output
        assert elapsed < 20, f"--lock-wait 1 took {elapsed:.1f}s"
    assert project.query("SELECT count(*) FROM effects") == [(1,)]
    assert set(h.status_states(project.config).values()) == {"applied"}


# ---------------------------------------------------------------------------------------
# Messages that name the fix


def test_transactional_create_index_concurrently_says_to_mark_no_transaction(
        pg_project: Project) -> None:
    project = pg_project
    project.add("001_table.sql", "CREATE TABLE things (id INTEGER);\n")
    project.add("002_index.sql", "CREATE INDEX CONCURRENTLY things_id_idx ON things (id);\n")
    result = h.run(project.config, "apply")
    assert result.returncode == 1, result.output
    assert "002_index" in result.stderr, result.output
    assert "25001" in result.stderr, result.output
    assert "-- cryomigrate:no-transaction" in result.stderr, result.output
    assert h.status_states(project.config) == {"001": "applied", "002": "pending"}


FAILING_THIRD = {
    # The third statement starts on line 14 and fails there (NOT NULL, no error position).
    "postgresql": """\
        -- three statements; the third one fails
        CREATE TABLE one (id INTEGER NOT NULL);

        DO $$
        BEGIN
          -- a semicolon; inside a body
          INSERT INTO one (id) VALUES (1);
          PERFORM 'not; a; statement';
        END
        $$;

        /* a block comment;
           with a semicolon */
        INSERT INTO one (id)
        VALUES (NULL);
        INSERT INTO one (id) VALUES (4);
    """,
    "sqlite": """\
        -- three statements; the third one fails
        CREATE TABLE one (id INTEGER NOT NULL);

        CREATE TRIGGER one_guard AFTER INSERT ON one
        BEGIN
          -- a semicolon; inside a trigger body
          SELECT 'not; a; statement';
          SELECT CASE WHEN NEW.id < 0 THEN RAISE(ABORT, 'negative') END;
        END;


        /* a block comment;
           with a semicolon */
        INSERT INTO one (id)
        VALUES (NULL);
        INSERT INTO one (id) VALUES (4);
    """,
}


def test_failing_statement_reports_sqlstate_and_file_line(project: Project) -> None:
    project.add("001_ok.sql", "CREATE TABLE ok (id INTEGER);\n")
    project.add("002_third_fails.sql", FAILING_THIRD[project.dialect])
    result = h.run(project.config, "apply")
    assert result.returncode == 1, result.output
    assert "002_third_fails.sql line 14" in result.stderr, result.output
    if project.dialect == "postgresql":
        assert "23502" in result.stderr, result.output
    else:
        assert "NOT NULL" in result.stderr, result.output
    assert "Traceback" not in result.stderr, result.output
    assert "one" not in project.tables()  # statements 1 and 2 were rolled back with it
    assert h.status_states(project.config) == {"001": "applied", "002": "pending"}
    failed = project.query("SELECT version, outcome, error FROM cryomigrate_history_journal "
                           "WHERE outcome = 'failed'")
    assert len(failed) == 1 and failed[0][0] == "002", failed
    assert "line 14" in failed[0][2], failed


@pytest.mark.parametrize("line_of_error", [3, 7])
def test_error_line_counts_from_the_apply_marker(pg_project: Project,
                                                 line_of_error: int) -> None:
    """Lines are the file's, not the section's: a rollback section or header shifts nothing."""
    project = pg_project
    body = ["-- cryomigrate:apply", "CREATE TABLE a (id INTEGER);"]
    while len(body) < line_of_error - 1:
        body.append("-- padding")
    body += ["SELECT * FROM missing_table;", "-- cryomigrate:rollback", "DROP TABLE a;", ""]
    project.add("001_lines.sql", "\n".join(body))
    result = h.run(project.config, "apply")
    assert result.returncode == 1, result.output
    assert f"001_lines.sql line {line_of_error}:" in result.stderr, result.output
    assert "42P01" in result.stderr, result.output


# ---------------------------------------------------------------------------------------
# Non-transactional migrations: racing runs, and a run killed inside one

# The same gated migration, run outside a transaction.
OUTSIDE_PY = h.GATED_PY.replace("ROOT = ", "transactional = False\nROOT = ", 1)


def test_concurrent_applies_wait_for_a_non_transactional_migration(project: Project) -> None:
    """Runs that start while another is inside a non-transactional migration wait for it
    (as for the lock, up to --lock-wait), then carry on; nothing is done twice."""
    count = 8
    _effect_migrations(project, count)
    (project.migrations / "004_effect_4.sql").unlink()
    project.add("004_outside.py", textwrap.dedent(OUTSIDE_PY.format(n=4)))
    gate = {"CM_GATE_SECONDS": "60"}
    first = h.spawn(project.config, "apply", "--lock-wait", "60", env=gate)
    try:
        h.wait_until((project.root / "inside_4").exists, 60, "the first run to enter 004",
                     first)
        # These plan while 004 is marked dirty by a run that is alive and inside it.
        others = [h.spawn(project.config, "apply", "--lock-wait", "60", env=gate)
                  for _ in range(3)]
        time.sleep(1.5)
    finally:
        (project.root / "release").touch()
    h.finish_all_ok([first, *others])
    h.assert_each_effect_once(project, count)
    assert set(h.status_states(project.config).values()) == {"applied"}


def test_sigkill_inside_a_non_transactional_migration_leaves_it_dirty(
        project: Project) -> None:
    project.add("000_effects.sql", h.EFFECTS_SQL)
    project.add("001_outside.py", textwrap.dedent(OUTSIDE_PY.format(n=1)))
    project.add("002_after.sql", "CREATE TABLE t2 (id INTEGER);\n")
    h.sigkill_inside_gate(project.config)

    # What it did outside a transaction stays; the history says so by "dirty".
    assert "t1" in project.tables() and "t2" not in project.tables()
    assert h.status_states(project.config) == {"000": "applied", "001": "dirty",
                                               "002": "pending"}
    started = time.monotonic()
    blocked = h.run(project.config, "apply", "--lock-wait", "5", timeout=60)
    assert blocked.returncode == 4, blocked.output
    assert time.monotonic() - started < 30
    assert "repair" in blocked.stderr and "001" in blocked.stderr, blocked.output
    assert "Traceback" not in blocked.stderr, blocked.output
    assert "t2" not in project.tables()

    repaired = h.run(project.config, "repair", "--mark-applied", "1")
    assert repaired.returncode == 0, repaired.output
    again = h.run(project.config, "apply")
    assert again.returncode == 0, again.output
    assert set(h.status_states(project.config).values()) == {"applied"}
    assert project.query("SELECT count(*) FROM effects") == [(1,)]


def test_non_transactional_failure_reports_line_and_marks_dirty(pg_project: Project) -> None:
    project = pg_project
    project.add("001_outside.sql", """\
        -- cryomigrate:no-transaction
        -- cryomigrate:apply
        CREATE TABLE a (id INTEGER);

        CREATE INDEX CONCURRENTLY a_id_idx
            ON a (missing_column);
        -- cryomigrate:rollback
        DROP TABLE a;
    """)
    result = h.run(project.config, "apply")
    assert result.returncode == 1, result.output
    # The error position is on line 6 (missing_column); the statement starts on line 5.
    assert re.search(r"001_outside\.sql line [56]:", result.stderr), result.output
    assert "42703" in result.stderr, result.output
    assert "repair" in result.stderr, result.output
    assert "a" in project.tables()
    assert h.status_states(project.config) == {"001": "dirty"}


# ---------------------------------------------------------------------------------------
# More races and what a failed run prints


def test_concurrent_rollbacks_roll_back_every_migration_exactly_once(project: Project) -> None:
    count, runs = 10, 4
    _effect_migrations(project, count)
    assert h.run(project.config, "apply").returncode == 0
    # Each must exit 0: a second rollback of one migration would fail on its DROP TABLE.
    h.run_at_once(project.config, runs, "rollback", "--target", "0", "--lock-wait", "120")
    assert project.query("SELECT count(*) FROM effects") == [(0,)]
    assert not {f"t{n}" for n in range(1, count + 1)} & project.tables()
    journal = project.query("SELECT version, count(*) FROM cryomigrate_history_journal "
                            "WHERE action = 'rollback' GROUP BY version ORDER BY version")
    assert journal == [(f"{n:03d}", 1) for n in range(1, count + 1)]
    assert h.status_states(project.config) == {
        "000": "applied", **{f"{n:03d}": "pending" for n in range(1, count + 1)}}


# A run plans before it takes the lock, migration by migration: another run may change
# the history in between. Each test lets that other run finish, in its own process, at
# the worst moment, between this run's plan and its first migration.

def _between_plan_and_run(monkeypatch: pytest.MonkeyPatch, other: Callable[[], None]) -> None:
    from cryomigrate.runner import Runner

    original = Runner.run

    def run(self: Runner, *args: Any, **kwargs: Any) -> Any:
        other()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Runner, "run", run)


_PENDING = {
    "sql": ("CREATE TABLE t{n} (id INTEGER);", "DROP TABLE t{n};", ""),
    "python": ("conn.sql('CREATE TABLE t{n} (id INTEGER)').execute()",
               "conn.sql('DROP TABLE t{n}').execute()", ""),
    "no-transaction": ("CREATE TABLE t{n} (id INTEGER);", "DROP TABLE t{n};",
                       "-- cryomigrate:no-transaction\n"),
}


def _add(project: Project, n: int, kind: str) -> None:
    apply, rollback, marker = _PENDING[kind]
    if kind == "python":
        project.add(f"{n:03d}_t{n}.py", f"def apply(conn, environment):\n    "
                                        f"{apply.format(n=n)}\n\n\ndef rollback(conn, "
                                        f"environment):\n    {rollback.format(n=n)}\n")
    else:
        project.add(f"{n:03d}_t{n}.sql", f"{marker}-- cryomigrate:apply\n{apply.format(n=n)}\n"
                                         f"-- cryomigrate:rollback\n{rollback.format(n=n)}\n")


@pytest.mark.parametrize("kind", list(_PENDING))
def test_apply_stops_when_another_run_rolled_back_what_it_planned_on(
        project: Project, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    for n in (1, 2):
        _add(project, n, "sql")
    assert_clean = h.run(project.config, "apply")
    assert assert_clean.returncode == 0, assert_clean.output
    for n in (3, 4):
        _add(project, n, kind)
    _between_plan_and_run(monkeypatch, lambda: h.run(project.config, "rollback", "--steps", "1"))
    result = project.cli("apply", "--format", "json")
    # 003 would have gone on top of a gap (002 pending), out of order, unasked.
    assert result.exit_code == 4, result.output
    message = json.loads(result.stdout)["error"]["message"]
    assert message.startswith("did not apply 003_t3") and "another run" in message, message
    assert h.status_states(project.config) == {"001": "applied", "002": "pending",
                                               "003": "pending", "004": "pending"}
    assert not {"t3", "t4"} & project.tables()


@pytest.mark.parametrize("kind", list(_PENDING))
def test_rollback_stops_when_another_run_applied_a_newer_one(
        project: Project, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    _add(project, 1, kind)
    _add(project, 2, "sql")
    assert h.run(project.config, "apply", "--target", "1").returncode == 0
    _between_plan_and_run(monkeypatch, lambda: h.run(project.config, "apply"))
    result = project.cli("rollback", "--steps", "1")  # planned: the newest one, 001
    assert result.exit_code == 4, result.output
    assert "did not roll back 001_t1" in result.stderr, result.output
    assert "no longer the newest" in result.stderr
    assert h.status_states(project.config) == {"001": "applied", "002": "applied"}
    journal = project.query("SELECT count(*) FROM cryomigrate_history_journal "
                            "WHERE action = 'rollback'")
    assert journal == [(0,)]  # nothing was attempted


@pytest.mark.parametrize("command", ["apply", "rollback"])
def test_a_run_that_another_run_did_the_same_work_for_still_skips_cleanly(
        project: Project, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    for n in (1, 2, 3):
        _add(project, n, "python" if n == 2 else "sql")
    if command == "rollback":
        assert h.run(project.config, "apply").returncode == 0
    args = ("rollback", "--steps", "2") if command == "rollback" else ("apply",)
    _between_plan_and_run(monkeypatch, lambda: h.run(project.config, *args))
    result = project.cli(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["applied" if command == "apply" else "rolled_back"] == []
    assert len(document["skipped"]) >= 1
    expected = {"001": "applied", "002": "applied", "003": "applied"}
    if command == "rollback":
        expected |= {"002": "pending", "003": "pending"}
    assert h.status_states(project.config) == expected


def test_a_failed_run_does_not_say_the_database_is_up_to_date(project: Project) -> None:
    project.add("001_ok.sql", "CREATE TABLE ok (id INTEGER);\n")
    assert h.run(project.config, "apply").returncode == 0
    project.add("002_broken.sql", "CREATE TABLE broken (id INTEGER);\nSELECT * FROM nowhere;\n")
    result = h.run(project.config, "apply")
    assert result.returncode == 1, result.output
    assert "002_broken" in result.stderr, result.output
    # 002 is pending and failed: "Nothing to do ... up to date" would be false.
    assert "up to date" not in result.stdout + result.stderr, result.output


def test_lock_wait_is_not_cut_short_by_a_server_statement_timeout(
        pg_project: Project, pg_database: PgDatabase) -> None:
    """Supabase-style databases and roles carry a default statement_timeout; waiting for
    another run's lock is governed by --lock-wait, not by that (exit 5, not exit 1)."""
    project = pg_project
    h.execute(pg_database.url,
              f"ALTER DATABASE {pg_database.name} SET statement_timeout = '1s'")
    project.add("000_effects.sql", h.EFFECTS_SQL)
    project.add("001_gated.py", textwrap.dedent(h.GATED_PY.format(n=1)))
    with h.run_held_inside_gate(project.config):
        started = time.monotonic()
        waiter = h.run(project.config, "apply", "--lock-wait", "3", timeout=60)
        elapsed = time.monotonic() - started
    assert waiter.returncode == 5, waiter.output
    assert elapsed >= 2.5, f"gave up after {elapsed:.1f}s although --lock-wait was 3"


AFTER_CONTROL = {
    # The user's own BEGIN/COMMIT is not sent; a BEGIN ATOMIC body is not transaction
    # control. The failing statement starts (and fails) on line 12.
    "postgresql": """\
        BEGIN;
        CREATE TABLE two (id INTEGER NOT NULL);
        CREATE FUNCTION add_one(i integer) RETURNS integer
        LANGUAGE SQL
        BEGIN ATOMIC
          SELECT i + 1;
        END;
        INSERT INTO two (id) VALUES (length(E'4\\';'));
        -- the user's COMMIT and a new BEGIN, mid-file
        COMMIT;
        START TRANSACTION;
        INSERT INTO two (id) VALUES (NULL);
        COMMIT;
    """,
    "sqlite": """\
        BEGIN;
        CREATE TABLE two (id INTEGER NOT NULL);
        CREATE TRIGGER two_guard BEFORE INSERT ON two
        BEGIN
          SELECT 1;
        END;
        INSERT INTO two (id) VALUES (length('4'';'));
        -- the user's COMMIT and a new BEGIN, mid-file

        COMMIT;
        BEGIN TRANSACTION;
        INSERT INTO two (id) VALUES (NULL);
        COMMIT;
    """,
}


def test_error_line_after_users_own_transaction_control(project: Project) -> None:
    project.add("001_wrapped.sql", AFTER_CONTROL[project.dialect])
    result = h.run(project.config, "apply")
    assert result.returncode == 1, result.output
    assert "001_wrapped.sql line 12" in result.stderr, result.output
    assert "two" not in project.tables()  # COMMIT was not sent: all of it rolled back
    assert h.status_states(project.config) == {"001": "pending"}
