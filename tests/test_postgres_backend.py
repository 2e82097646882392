"""PostgreSQL specifics of the backend: psycopg binding, round trips, notices, Ctrl-C."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests import helpers_pg as h
from tests.conftest import Project
from tests.helpers_core import add_python_tables


def test_journal_keeps_quotes_and_backslashes_of_an_error(pg_project: Project) -> None:
    # Journal rows are sent with the COMMIT as inline literals; a quote or a backslash
    # in the server's message must arrive unchanged (and must not break the SQL).
    pg_project.add("001_fails.sql", r"""
        DO $$ BEGIN RAISE EXCEPTION 'it''s a \ test'; END $$;
    """)
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    errors = pg_project.query("SELECT error FROM cryomigrate_history_journal")
    assert len(errors) == 1 and "it's a \\ test" in errors[0][0]


def test_history_rows_round_trip_through_inline_literals(pg_project: Project) -> None:
    pg_project.add("001_o_reilly.sql", "CREATE TABLE t (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    assert pg_project.query(
        "SELECT version, version_text, name, state, duration_ms >= 0 FROM cryomigrate_history"
    ) == [(1, "001", "o_reilly", "applied", True)]


def test_python_migrations_read_and_bind_rich_values(pg_project: Project) -> None:
    # Rows come back as psycopg would load them (datetime, UUID, Decimal, dict, list),
    # and such values can be bound as parameters, positionally or by name.
    pg_project.add("001_rich.py", """
import datetime, decimal, uuid

def apply(conn, environment):
    conn.sql("CREATE TABLE rich (at timestamptz, id uuid, price numeric, doc jsonb, "
             "tags int[], day date, note text)").execute()
    conn.sql("INSERT INTO rich VALUES (%s, %s, %s, '{\\"a\\": 1}', '{1,2}', %s, %s)",
             (datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
              uuid.UUID(int=7), decimal.Decimal("1.50"), datetime.date(2026, 3, 4),
              "it's 100%")).execute()
    row = conn.sql("SELECT * FROM rich").execute().data[0]
    assert row["at"] == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert row["id"] == uuid.UUID(int=7) and row["price"] == decimal.Decimal("1.50")
    assert row["doc"] == {"a": 1} and row["tags"] == [1, 2], row
    assert row["day"] == datetime.date(2026, 3, 4) and row["note"] == "it's 100%"
    conn.sql("UPDATE rich SET note = %(note)s WHERE id = %(id)s",
             {"note": "by name", "id": row["id"]}).execute()

def rollback(conn, environment):
    conn.sql("DROP TABLE rich").execute()
""")
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output
    assert pg_project.query("SELECT note, price::text FROM rich") == [("by name", "1.50")]


def test_python_migrations_see_times_in_the_session_time_zone(pg_project: Project) -> None:
    import psycopg

    dbname = pg_project.url.rsplit("/", 1)[1]
    with psycopg.connect(pg_project.url, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE postgres IN DATABASE {dbname} "  # type: ignore[arg-type]
                     "SET TimeZone = 'America/New_York'")
    pg_project.add("001_tz.py", """
def apply(conn, environment):
    at = conn.sql("SELECT '2024-01-01 02:00+00'::timestamptz AS at").execute().data[0]["at"]
    assert (at.date().isoformat(), at.hour, at.utcoffset().total_seconds()) == (
        "2023-12-31", 21, -5 * 3600), at
""")
    pg_project.add("002_posix_offset.py", """
def apply(conn, environment):
    conn.sql("SET LOCAL TIME ZONE INTERVAL '+03:00' HOUR TO MINUTE").execute()
    at = conn.sql("SELECT '2024-01-01 02:00+00'::timestamptz AS at").execute().data[0]["at"]
    assert at.timestamp() == 1704074400, at  # zoneinfo cannot read <+03>-03: UTC, as psycopg
""")
    pg_project.add("003_str_params.py", """
def apply(conn, environment):
    conn.sql("SELECT %s", "not a tuple").execute()
""")
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "003_str_params.py" in result.output and "parameters must be a sequence" in \
        result.output, result.output
    assert [row[0] for row in pg_project.history()] == ["001", "002"]


def test_history_times_read_the_same_whatever_the_session_settings(pg_project: Project) -> None:
    # applied_at is read back as UTC text, so a role with another DateStyle or TimeZone
    # (set by a DBA, or by Supabase) sees the same status and history as everyone else.
    pg_project.add("001_a.sql", "CREATE TABLE a (id bigint);\n")  # nothing for lint to say
    assert pg_project.cli("apply").exit_code == 0
    plain = pg_project.cli("status", "--format", "json")
    import psycopg

    dbname = pg_project.url.rsplit("/", 1)[1]
    with psycopg.connect(pg_project.url, autocommit=True) as conn:
        for setting in ("DateStyle = 'SQL, DMY'", "TimeZone = 'Asia/Kolkata'"):
            conn.execute(f"ALTER ROLE postgres IN DATABASE {dbname} SET {setting}")  # type: ignore[arg-type]
    odd = pg_project.cli("status", "--format", "json")
    assert plain.exit_code == odd.exit_code == 0, odd.output
    assert plain.output == odd.output
    assert '"applied_at": "20' in odd.output


def test_help_and_sqlite_runs_never_import_psycopg(sqlite_project: Project) -> None:
    # psycopg is imported only on PostgreSQL paths: --help and the embedded default must
    # work (and start fast) where no PostgreSQL driver is installed at all.
    import subprocess
    import sys

    sqlite_project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    sqlite_project.add("002_b.py", "def apply(conn, environment):\n"
                       "    conn.sql('INSERT INTO a VALUES (1)').execute()\n")
    code = ("import sys\nfrom cryomigrate.cli import main\ntry:\n    main()\nexcept SystemExit "
            "as e:\n    assert e.code == 0, e.code\nassert 'psycopg' not in sys.modules\n")
    for args, expected in ((("--help",), "Usage"), (("apply",), "Applied 2"),
                           (("apply",), "Nothing to do"), (("status",), "2 applied")):
        done = subprocess.run([sys.executable, "-c", code, "--config",
                               str(sqlite_project.config), *args], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert expected in done.stdout, done.stdout
    assert sqlite_project.query("SELECT count(*) FROM a") == [(1,)]


def _proxy() -> Any:
    """bench/delayproxy.py: a loopback TCP proxy that counts round trips and messages."""
    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    import delayproxy

    return delayproxy


def _through(project: Project, url: str, port: int) -> None:
    host_db = url.split("@", 1)[1].split("/", 1)[1]
    project.write_config(f"""
        environments:
          development:
            database: postgresql://postgres@127.0.0.1:{port}/{host_db}?sslmode=disable
    """)


def _six_more(project: Project) -> None:
    for i in range(2, 8):
        project.add(f"00{i}_t{i}.sql", f"CREATE TABLE t{i} (id int);\n"
                    f"CREATE INDEX ON t{i} (id); -- a comment, no newline")


def _apply_round_trips(project: Project) -> int:
    """Round trips of the pending migrations: an apply's minus a no-op apply's."""
    delayproxy = _proxy()
    # Long enough that a message queued statement by statement reaches the proxy before
    # its first reply does, even on a loaded machine (the proxy counts a reply that
    # comes between two sends as a round trip).
    with delayproxy.DelayProxy(target_port=5432, delay=0.05) as proxy:
        _through(project, project.url, proxy.port)
        proxy.reset()
        result = project.cli("apply")
        assert result.exit_code == 0, result.output
        cold = proxy.counters().round_trips
        proxy.reset()
        assert project.cli("apply").exit_code == 0
        return cold - proxy.counters().round_trips


def test_sql_migrations_in_a_row_cost_one_round_trip_together(pg_project: Project) -> None:
    # Each migration's lock, guard against a concurrent run, script, history and journal
    # rows and COMMIT are one transaction, and the transactions of migrations in a row
    # travel together: one round trip for all six, counted on the wire.
    pg_project.add("001_first.sql", "CREATE TABLE first (id int);\n")
    assert pg_project.cli("apply").exit_code == 0  # the history tables exist from here on
    _six_more(pg_project)
    assert _apply_round_trips(pg_project) == 1
    assert pg_project.history() == [("001", "first", "applied")] + [
        (f"00{i}", f"t{i}", "applied") for i in range(2, 8)]
    assert pg_project.query("SELECT count(*) FROM cryomigrate_history_journal") == [(7,)]
    durations = pg_project.query("SELECT duration_ms >= 0 FROM cryomigrate_history_journal")
    assert durations == [(True,)] * 7


def test_with_lock_retries_each_sql_migration_is_one_round_trip(pg_project: Project) -> None:
    # A migration to be retried on lock_timeout runs alone, after a pause: then each
    # migration is still exactly one round trip (a regression to two would show here).
    pg_project.add("001_first.sql", "CREATE TABLE first (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    _six_more(pg_project)
    url = pg_project.url
    delayproxy = _proxy()
    with delayproxy.DelayProxy(target_port=5432, delay=0.005) as proxy:
        host_db = url.split("@", 1)[1].split("/", 1)[1]
        pg_project.write_config(f"""
            environments:
              development:
                database: postgresql://postgres@127.0.0.1:{proxy.port}/{host_db}?sslmode=disable
                lock_retries: 2
        """)
        proxy.reset()
        assert pg_project.cli("apply").exit_code == 0
        cold = proxy.counters().round_trips
        proxy.reset()
        assert pg_project.cli("apply").exit_code == 0
        noop = proxy.counters().round_trips
    assert cold - noop == 6, (cold, noop)
    assert len(pg_project.history()) == 7


def test_a_python_migration_splits_the_sql_ones_sent_together(pg_project: Project) -> None:
    pg_project.add("001_first.sql", "CREATE TABLE first (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    pg_project.add("002_a.sql", "CREATE TABLE a (id int);\n")
    pg_project.add("003_b.sql", "CREATE TABLE b (id int);\n")
    pg_project.add("004_py.py", "def apply(conn, environment):\n"
                   "    conn.sql('INSERT INTO a VALUES (1)').execute()\n")
    pg_project.add("005_c.sql", "CREATE TABLE c (id int);\n")
    pg_project.add("006_d.sql", "CREATE TABLE d (id int);\n")
    # 002+003 together, the Python migration its statement plus two, 005+006 together.
    assert _apply_round_trips(pg_project) == 1 + 3 + 1
    assert [row[0] for row in pg_project.history()] == ["001", "002", "003", "004", "005",
                                                         "006"]
    assert pg_project.query("SELECT id FROM a") == [(1,)]


# ---------------------------------------------------------------------------------------
# Migrations sent together stop, skip and report exactly as migrations sent one by one


def _five(project: Project, third: str) -> None:
    project.add("001_t1.sql", "CREATE TABLE t1 (id int NOT NULL);\n")
    project.add("002_t2.sql", "CREATE TABLE t2 (id int);\n")
    project.add("003_t3.sql", third)
    project.add("004_t4.sql", "CREATE TABLE t4 (id int);\n")
    project.add("005_t5.sql", "CREATE TABLE t5 (id int);\n")


def test_a_failure_among_migrations_sent_together_stops_the_run_there(
        pg_project: Project) -> None:
    _five(pg_project, "CREATE TABLE t3 (id int);\n"
                      "INSERT INTO t1 VALUES (NULL);\n"  # line 2: NOT NULL, no position
                      "CREATE TABLE t3b (id int);\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "003_t3.sql line 2" in result.output, result.output
    assert "not-null" in result.output, result.output
    assert [row[0] for row in pg_project.history()] == ["001", "002"]
    assert pg_project.tables() == {"t1", "t2", "cryomigrate_history",
                                   "cryomigrate_history_journal"}
    assert pg_project.journal() == [("001", "apply", "ok"), ("002", "apply", "ok"),
                                    ("003", "apply", "failed")]
    assert "Applied 2 migrations" in result.output or "001_t1" in result.output


def test_a_failure_at_commit_stops_the_migrations_sent_after_it(pg_project: Project) -> None:
    # A deferred constraint fails at COMMIT, after which the server would be out of any
    # transaction: the migrations sent after it must still not run.
    pg_project.add("001_parent.sql", "CREATE TABLE parent (id int PRIMARY KEY);\n"
                   "CREATE TABLE child (parent_id int REFERENCES parent "
                   "DEFERRABLE INITIALLY DEFERRED);\n")
    pg_project.add("002_orphan.sql", "INSERT INTO child VALUES (42);\n")
    pg_project.add("003_after.sql", "CREATE TABLE after_it (id int);\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "002_orphan.sql" in result.output and "foreign key" in result.output, \
        result.output
    assert [row[0] for row in pg_project.history()] == ["001"]
    assert "after_it" not in pg_project.tables()
    assert pg_project.query("SELECT count(*) FROM child") == [(0,)]


def test_a_migration_another_run_did_while_these_waited_is_skipped_and_the_rest_run(
        pg_project: Project) -> None:
    # This run plans 001-003 and sends them together, then waits for the run lock, which
    # another run holds while it applies 002. 002 is then skipped; 003 still runs.
    import subprocess

    from tests.helpers_core import hold_run_lock

    pg_project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    pg_project.add("002_b.sql", "CREATE TABLE b (id int);\n")
    pg_project.add("003_c.sql", "CREATE TABLE c (id int);\n")
    pg_project.add("004_d.sql", "CREATE TABLE d (id int);\n")
    with hold_run_lock(pg_project):
        run = subprocess.Popen([sys.executable, "-m", "cryomigrate", "--config",
                                str(pg_project.config), "apply"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_lock_waiter(pg_project, run)
        # What the other run does while it holds the lock: 002, recorded.
        import psycopg

        with psycopg.connect(pg_project.url, autocommit=True) as other:
            other.execute("CREATE TABLE b (id int)")
            other.execute(
                "INSERT INTO cryomigrate_history (version, version_text, name, kind, "
                "checksum, applied_at, applied_by) "
                "VALUES (2, '002', 'b', 'sql', 'sha256:x', now(), 'x')")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, out + err
    assert "skipped  002_b.sql: another run did it first" in out, out
    assert [row[0] for row in pg_project.history()] == ["001", "002", "003", "004"]
    assert {"c", "d"} <= pg_project.tables()


def _wait_for_lock_waiter(project: Project, run: Any) -> None:
    import time

    dbname = project.url.rsplit("/", 1)[1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()
        waiting = project.query(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            f"WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = '{dbname}'")
        if waiting[0][0]:
            return
        time.sleep(0.05)
    raise AssertionError("the run never waited for the run lock")


def test_notices_of_migrations_sent_together_name_their_own_migration(
        pg_project: Project) -> None:
    pg_project.add("001_a.sql", "DO $$ BEGIN RAISE NOTICE 'from a'; END $$;\n"
                   "CREATE TABLE a (id int);\n")
    pg_project.add("002_b.sql", "CREATE TABLE b (id int);\n"
                   "DO $$ BEGIN RAISE NOTICE 'from b'; END $$;\n")
    pg_project.add("003_c.sql", "DROP TABLE IF EXISTS nothing_here;\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output
    assert "001_a.sql: NOTICE: from a" in result.output, result.output
    assert "002_b.sql: NOTICE: from b" in result.output, result.output
    assert 'notice: 003_c.sql: NOTICE: table "nothing_here" does not exist, skipping' \
        in result.output, result.output


_SAYS_AT_COMMIT = """CREATE TABLE {t} (id int);
CREATE FUNCTION {t}_says() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE '{t} commits'; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER {t}_says AFTER INSERT ON {t} DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION {t}_says();
INSERT INTO {t} VALUES (1);
"""


@pytest.mark.parametrize("setting", ["", "pooler: transaction", "notices hidden"])
def test_a_notice_raised_at_commit_names_the_migration_that_commits(
        pg_project: Project, setting: str) -> None:
    # A migration's COMMIT travels with the next one's lock and guard (Python) or with the
    # next ones' scripts (SQL): what a deferred trigger says at that COMMIT is still the
    # committing migration's, and what the next one says is its own. Behind a transaction
    # pooler the session reset comes first in each transaction; where client_min_messages
    # hides notices, warnings still name theirs.
    level = "NOTICE"
    if setting == "notices hidden":
        h.alter_database(pg_project.url, "client_min_messages = warning")
        level = "WARNING"
    elif setting:
        pg_project.write_config(f"environments:\n  development:\n    database: {pg_project.url}\n"
                                f"    {setting}\n")
    says = _SAYS_AT_COMMIT.replace("NOTICE", level)
    for version, table in (("001", "a"), ("003", "c")):
        pg_project.add(f"{version}_{table}.py",
                       f"def apply(conn, environment):\n"
                       f"    conn.sql({says.format(t=table)!r}).execute()\n")
    pg_project.add("002_b.py", "def apply(conn, environment):\n"
                   f"    conn.sql(\"DO $$ BEGIN RAISE {level} 'b runs'; END $$\").execute()\n")
    pg_project.add("004_d.sql", says.format(t="d"))
    pg_project.add("005_e.sql", f"DO $$ BEGIN RAISE {level} 'e runs'; END $$;\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output
    said = [line for line in result.output.splitlines() if level in line]
    assert said == [f"notice: {label}: {level}: {text}" for label, text in (
        ("001_a.py", "a commits"), ("002_b.py", "b runs"), ("003_c.py", "c commits"),
        ("004_d.sql", "d commits"), ("005_e.sql", "e runs"))], result.output
    assert "cryomigrate " not in result.output  # no marker shown


def test_a_concurrent_run_that_got_there_first_is_skipped_cleanly(pg_project: Project) -> None:
    # The guard travels with the script: when another run applied the migration between
    # this run's plan and its turn, the script is never executed and nothing fails.
    from cryomigrate.backends import ConnectOptions
    from cryomigrate.backends.postgres import PostgresBackend
    from cryomigrate.tracker import Tracker

    pg_project.add("001_t.sql", "CREATE TABLE t (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    backend = PostgresBackend.connect(pg_project.url, ConnectOptions(base_dir=pg_project.root))
    try:
        tracker = Tracker(backend, "cryomigrate_history", "development")
        with backend.transaction(lock=True, expect=tracker.guard(1, applied=False)) as tx:
            from cryomigrate.sqlscript import Script

            tx.defer_script(Script("001_t.sql", "CREATE TABLE t (id int);\n"))
            assert tx.commit() is False
        assert backend.query("SELECT 1 AS one").data == [{"one": 1}]  # still usable
    finally:
        backend.close()
    assert pg_project.history() == [("001", "t", "applied")]


def test_copy_to_stdout_fails_cleanly(pg_project: Project) -> None:
    # A migration has no terminal to copy rows to: the run fails with a message, never
    # hangs, and nothing of the migration stays.
    import subprocess
    import sys

    pg_project.add("001_t.sql", "CREATE TABLE t (id int);\n")
    pg_project.add("002_copy.sql", "INSERT INTO t VALUES (2);\nCOPY (SELECT 1) TO STDOUT;\n")
    done = subprocess.run([sys.executable, "-m", "cryomigrate", "--config",
                           str(pg_project.config), "apply"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "002_copy.sql line 2" in done.stderr and "COPY" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert pg_project.history() == [("001", "t", "applied")]
    assert pg_project.query("SELECT count(*) FROM t") == [(0,)]


def test_python_parameters_bind_as_psycopg_would(pg_project: Project) -> None:
    # A negative number after a minus sign must not start a -- comment; placeholders are
    # psycopg's (%s, %(name)s, %%), and anything else fails instead of being rewritten.
    pg_project.add("001_acct.py", """
def apply(conn, environment):
    conn.sql("CREATE TABLE acct (id int, balance int)").execute()
    conn.sql("INSERT INTO acct VALUES (1, 10), (2, 10)").execute()
    done = conn.sql("UPDATE acct SET balance = balance-%s WHERE id = %s", (-5, 1)).execute()
    assert done.rowcount == 1, done.rowcount
    assert conn.sql("SELECT '100%%' AS p, %(n)s AS n", {"n": -1}).execute().data == [
        {"p": "100%", "n": -1}]
""")
    pg_project.add("002_bad.py", """
def apply(conn, environment):
    conn.sql("SELECT '50% sure', %s", (1,)).execute()
""")
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "002_bad.py" in result.output and "unsupported placeholder" in result.output
    assert pg_project.query("SELECT id, balance FROM acct ORDER BY id") == [(1, 15), (2, 10)]


def test_ctrl_c_stops_a_connect_that_hangs(tmp_path: Path) -> None:
    # A server that accepts the connection but never answers: libpq would wait out
    # connect_timeout (here 30 s) inside one C call. Ctrl-C must end the run at once.
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        port = silent.getsockname()[1]
        (tmp_path / "migrations").mkdir()
        (tmp_path / "migrations" / "001_a.sql").write_text("SELECT 1;\n")
        (tmp_path / "environments.yaml").write_text(
            "environments:\n  development:\n    database: postgresql://postgres@127.0.0.1:"
            f"{port}/x?connect_timeout=30&sslmode=disable\n")
        run = subprocess.Popen([sys.executable, "-m", "cryomigrate", "--config",
                                str(tmp_path / "environments.yaml"), "apply"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        started = time.monotonic()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=20)
    assert time.monotonic() - started < 5, err
    assert run.returncode != 0 and "Traceback" not in err, err


@pytest.mark.parametrize(("ending", "phrase"), [
    ("INSERT INTO t VALUES ('never closed);\n", "unfinished statement, string"),
    ("SELECT 1 +\n", "unfinished statement, string"),
    ('SELECT "never closed;\n', "unfinished statement, string"),
    ("SELECT 1; /* never closed\n", 'unterminated /* comment at or near "/* never closed..."'),
    ("SELECT $$ never closed;\n", "unterminated dollar-quoted string"),
])
def test_a_script_that_never_finishes_is_reported_at_its_end(pg_project: Project,
                                                            ending: str, phrase: str) -> None:
    # The script travels with its history row and COMMIT; a string or statement it leaves
    # open swallows them, and the error must still name the script, not the COMMIT.
    pg_project.add("001_t.sql", "CREATE TABLE t (v text);\n")
    pg_project.add("002_open.sql", "INSERT INTO t VALUES ('fine');\n" + ending)
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "002_open.sql line 2" in result.output, result.output
    assert phrase in result.output, result.output
    assert "COMMIT" not in result.output and "INSERT INTO" not in result.output.split(
        "002_open.sql line 2")[1], result.output
    assert pg_project.history() == [("001", "t", "applied")]
    assert pg_project.query("SELECT count(*) FROM t") == [(0,)]


def test_a_migrations_notices_reach_stderr_and_json(pg_project: Project) -> None:
    # RAISE NOTICE in a backfill is for the user to see, named by its migration; stdout
    # stays one JSON document. cryomigrate's own statements raise none that are shown.
    import json
    import subprocess
    import sys

    pg_project.add("001_a.sql", "CREATE TABLE a (id bigint);\n")  # nothing for lint to say
    pg_project.add("002_b.sql", "DO $$ BEGIN RAISE NOTICE 'backfilled % rows', 42; END $$;\n")
    pg_project.add("003_c.py", "def apply(conn, environment):\n    conn.sql(\"DO $$ BEGIN "
                   "RAISE WARNING 'careful'; END $$\").execute()\n")
    done = subprocess.run([sys.executable, "-m", "cryomigrate", "--config",
                           str(pg_project.config), "apply", "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["notices"] == ["002_b.sql: NOTICE: backfilled 42 rows",
                                   "003_c.py: WARNING: careful"], document
    assert done.stderr.splitlines() == ["notice: 002_b.sql: NOTICE: backfilled 42 rows",
                                        "notice: 003_c.py: WARNING: careful"], done.stderr


def test_scripts_reach_the_server_as_utf8_whatever_the_url_says(pg_project: Project) -> None:
    pg_project.write_config(f"""
        environments:
          development:
            database: {pg_project.url}?client_encoding=latin1
    """)
    pg_project.add("001_cafe.sql", "CREATE TABLE t (v text);\nINSERT INTO t VALUES ('café');\n")
    assert pg_project.cli("apply").exit_code == 0
    assert pg_project.query("SELECT v, length(v) FROM t") == [("café", 4)]


def test_a_malformed_url_is_bad_input_not_a_connection_failure(pg_project: Project) -> None:
    pg_project.write_config("""
        environments:
          development:
            database: postgresql://postgres:s3cr%zzet@127.0.0.1:5432/x
    """)
    for command in ("status", "apply"):
        result = pg_project.cli(command)
        assert result.exit_code == 2, result.output
        assert "percent-encode" in result.stderr and "s3cr" not in result.output


def test_a_failure_at_commit_is_journaled_and_nothing_stays(pg_project: Project) -> None:
    # A deferred foreign key fails only when the migration's transaction commits.
    pg_project.add("001_deferred.sql", """
        CREATE TABLE p (id int PRIMARY KEY);
        CREATE TABLE c (pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED);
        INSERT INTO c VALUES (1);
    """)
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "001_deferred.sql" in result.stderr and "Traceback" not in result.stderr
    assert not {"p", "c"} & pg_project.tables()
    assert pg_project.query("SELECT count(*) FROM cryomigrate_history") == [(0,)]
    assert pg_project.journal() == [("001", "apply", "failed")]


# ---------------------------------------------------------------------------------------
# A Python migration's COMMIT travels with the next one's lock and guard


def test_a_python_migrations_failing_commit_stops_the_next_before_its_code_runs(
        pg_project: Project) -> None:
    pg_project.add("001_parent.sql", "CREATE TABLE parent (id int PRIMARY KEY);\n"
                   "CREATE TABLE child (parent_id int REFERENCES parent "
                   "DEFERRABLE INITIALLY DEFERRED);\n")
    assert pg_project.cli("apply").exit_code == 0
    marker = pg_project.root / "second-ran"
    pg_project.add("002_orphan.py", "def apply(conn, environment):\n"
                   "    conn.sql('INSERT INTO child VALUES (42)').execute()\n")
    pg_project.add("003_next.py", "def apply(conn, environment):\n"
                   f"    open({str(marker)!r}, 'w').close()\n"
                   "    conn.sql('CREATE TABLE next_one (id int)').execute()\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "002_orphan.py" in result.output and "foreign key" in result.output, \
        result.output
    assert not marker.exists()  # 003's code never ran
    assert [row[0] for row in pg_project.history()] == ["001"]
    assert "next_one" not in pg_project.tables()
    assert pg_project.journal()[-1:] == [("002", "apply", "failed")]


def test_python_migrations_in_a_row_report_each_as_it_commits(pg_project: Project) -> None:
    for version in (1, 2, 3):
        pg_project.add(f"00{version}_p{version}.py", "def apply(conn, environment):\n"
                       f"    conn.sql('CREATE TABLE p{version} (id int)').execute()\n"
                       f"    conn.sql(\"DO $$ BEGIN RAISE NOTICE 'in {version}'; END $$\")"
                       ".execute()\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output
    lines = [line.split()[1] for line in result.stdout.splitlines()
             if line.startswith("  applied")]
    assert lines == ["001_p1", "002_p2", "003_p3"], result.output
    for version in (1, 2, 3):
        assert f"00{version}_p{version}.py: NOTICE: in {version}" in result.output
    assert [row[0] for row in pg_project.history()] == ["001", "002", "003"]
    durations = pg_project.query("SELECT duration_ms >= 0 FROM cryomigrate_history")
    assert durations == [(True,)] * 3


def test_ctrl_c_in_a_python_migration_keeps_the_one_before_it(pg_project: Project) -> None:
    add_python_tables(pg_project, "001_a")
    pg_project.add("002_stop.py", "def apply(conn, environment):\n"
                   "    raise KeyboardInterrupt\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 130, result.output
    assert "applied  001_a" in result.stdout, result.output
    assert "interrupted while running 002_stop.py" in result.output, result.output
    assert [row[0] for row in pg_project.history()] == ["001"]
    assert pg_project.journal() == [("001", "apply", "ok"), ("002", "apply", "failed")]


def test_migrations_sent_together_under_a_repeatable_read_default(pg_project: Project) -> None:
    # Each transaction is READ COMMITTED whatever the database's default: nothing of
    # cryomigrate's may run before its BEGIN and take a snapshot first.
    h.alter_database(pg_project.url, "default_transaction_isolation = 'repeatable read'")
    pg_project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    pg_project.add("002_b.sql", "CREATE TABLE b (id int);\n")
    add_python_tables(pg_project, "003_c", "004_d")
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output
    assert [row[0] for row in pg_project.history()] == ["001", "002", "003", "004"]


def test_warnings_of_migrations_sent_together_name_theirs_when_notices_are_hidden(
        pg_project: Project) -> None:
    h.alter_database(pg_project.url, "client_min_messages = warning")
    pg_project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    pg_project.add("002_b.sql", "DO $$ BEGIN RAISE NOTICE 'hidden'; "
                   "RAISE WARNING 'said by b'; END $$;\n")
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output
    assert "notice: 002_b.sql: WARNING: said by b" in result.output, result.output
    assert "hidden" not in result.output and "cryomigrate " not in result.output


def test_ctrl_c_before_a_python_migration_sends_anything_commits_the_one_before(
        pg_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first migration's COMMIT waits to travel with the second one's lock and guard;
    # stopped before that message, the second one must still leave the first committed
    # and reported, never rolled back with it or recorded without its changes.
    from cryomigrate.runner import Runner

    first_flush = Runner._first_flush
    calls = []

    def interrupted_second(self: Runner, state: Any, tx: Any) -> bool:
        calls.append(tx)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return first_flush(self, state, tx)

    monkeypatch.setattr(Runner, "_first_flush", interrupted_second)
    add_python_tables(pg_project, "001_a", "002_b")
    result = pg_project.cli("apply")
    assert result.exit_code == 130, result.output
    assert "applied  001_a" in result.stdout, result.output
    assert "interrupted while running 002_b.py" in result.output, result.output
    assert [row[0] for row in pg_project.history()] == ["001"]
    assert {"a"} <= pg_project.tables() and "b" not in pg_project.tables()
    assert pg_project.journal() == [("001", "apply", "ok"), ("002", "apply", "failed")]
