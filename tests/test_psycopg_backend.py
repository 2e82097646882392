"""Issue 9: the PostgreSQL backend on psycopg 3. Values as psycopg reads and binds them
under any DateStyle, parameters that stay values, Ctrl-C cancelling the statement on the
server, errors placed at their file line, and round trips counted on the wire."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests import helpers_pg as h
from tests.conftest import Project
from tests.helpers_core import history_versions

# ---------------------------------------------------------------------------------------
# Values under any DateStyle, read and bound by psycopg

BIND_AND_READ = '''
"""Bind one value of each type, read them back, keep what was read as its repr."""
import datetime
import decimal
import uuid

from psycopg.types.json import Jsonb

VALUES = (datetime.date(2024, 3, 4),
          datetime.datetime(2024, 3, 4, 5, 6, 7, 890000, tzinfo=datetime.timezone.utc),
          uuid.UUID("12345678-1234-5678-1234-567812345678"),
          decimal.Decimal("12.340"),
          Jsonb({"a": [1, "x"], "b": None}))


def apply(conn, environment):
    conn.sql("CREATE TABLE vals (id int, d date, ts timestamptz, u uuid, n numeric, "
             "j jsonb)").execute()
    conn.sql("INSERT INTO vals VALUES (1, %s, %s, %s, %s, %s)", VALUES).execute()
    conn.sql("INSERT INTO vals VALUES (2, '2024-12-31', '1999-01-02 03:04:05+00', "
             "'00000000-0000-0000-0000-000000000001', -0.5, '[1, 2.5]')").execute()
    found = conn.sql("SELECT count(*) AS c FROM vals WHERE d = %s AND ts = %s AND u = %s "
                     "AND n = %s AND j = %s", VALUES).execute().data
    assert found == [{"c": 1}], found
    rows = conn.sql("SELECT id, d, u, n, j FROM vals ORDER BY id").execute().data
    conn.sql("CREATE TABLE seen (what text, r text)").execute()
    conn.sql("INSERT INTO seen VALUES ('rows', %s)", (repr(rows),)).execute()
'''

READ_TIMESTAMPTZ = '''
def apply(conn, environment):
    rows = conn.sql("SELECT id, ts FROM vals ORDER BY id").execute().data
    conn.sql("INSERT INTO seen VALUES ('ts', %s)", (repr(rows),)).execute()
'''


def _plain(url: str, query: str) -> tuple[str | None, str | None]:
    """What psycopg itself returns for ``query`` (as repr), or the error it raises."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        try:
            return repr(conn.execute(query).fetchall()), None  # type: ignore[arg-type]
        except (psycopg.Error, NotImplementedError, ValueError) as exc:
            return None, str(exc)


@pytest.mark.parametrize("datestyle", ["ISO, DMY", "SQL, DMY", "German", "Postgres, MDY"])
def test_values_read_and_bind_as_psycopg_does_under_any_datestyle(
        pg_project: Project, datestyle: str) -> None:
    import decimal
    import uuid

    h.alter_database(pg_project.url, f"datestyle = '{datestyle}'")
    pg_project.add("001_bind.py", BIND_AND_READ)
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output

    # What the migration read is exactly what psycopg reads on a plain connection.
    expected, error = _plain(pg_project.url, "SELECT id, d, u, n, j FROM vals ORDER BY id")
    assert error is None, error
    assert pg_project.query("SELECT r FROM seen WHERE what = 'rows'") == [(expected,)]
    # The values bound are the values stored: no day and month swapped by the DateStyle.
    assert pg_project.query(
        "SELECT to_char(d, 'YYYY-MM-DD'), "
        "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), u, n, j::text "
        "FROM vals WHERE id = 1") == [
        ("2024-03-04", "2024-03-04 05:06:07.890",
         uuid.UUID("12345678-1234-5678-1234-567812345678"), decimal.Decimal("12.340"),
         '{"a": [1, "x"], "b": null}')]
    assert "datetime.date(2024, 3, 4)" in expected and "datetime.date(2024, 12, 31)" in \
        expected, expected

    # timestamptz as text depends on the DateStyle; whatever psycopg does with it (a value,
    # or its own error), a migration sees the same.
    pg_project.add("002_read_ts.py", READ_TIMESTAMPTZ)
    expected, error = _plain(pg_project.url, "SELECT id, ts FROM vals ORDER BY id")
    result = pg_project.cli("apply")
    if error is None:
        assert result.exit_code == 0, result.output
        assert pg_project.query("SELECT r FROM seen WHERE what = 'ts'") == [(expected,)]
    else:
        assert result.exit_code == 1, result.output
        assert "002_read_ts.py" in result.stderr and error in result.stderr, (
            error, result.output)
        assert history_versions(pg_project) == ["001"]


def test_a_value_that_looks_like_sql_stays_a_value(pg_project: Project) -> None:
    nasty = "'); DROP TABLE x; --"
    pg_project.add("001_nasty.py", f'''
        NASTY = {nasty!r}


        def apply(conn, environment):
            conn.sql("CREATE TABLE x (id int)").execute()
            conn.sql("CREATE TABLE notes (how text, v text)").execute()
            conn.sql("INSERT INTO notes VALUES ('positional', %s)", (NASTY,)).execute()
            conn.sql("INSERT INTO notes VALUES ('named', %(v)s)", {{"v": NASTY}}).execute()
            conn.sql("INSERT INTO notes VALUES ('twice', %s || %s)", (NASTY, NASTY)).execute()
    ''')
    result = pg_project.cli("apply")
    assert result.exit_code == 0, result.output
    assert pg_project.query("SELECT how, v FROM notes ORDER BY how") == [
        ("named", nasty), ("positional", nasty), ("twice", nasty + nasty)]
    assert "x" in pg_project.tables()
    assert history_versions(pg_project) == ["001"]


# ---------------------------------------------------------------------------------------
# Ctrl-C during a long statement cancels it on the server


def _sleepers(project: Project) -> list[tuple[Any, ...]]:
    dbname = project.url.rsplit("/", 1)[1]
    return project.query(
        "SELECT pid, state FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
        f"AND pid <> pg_backend_pid() AND datname = '{dbname}'")


def test_ctrl_c_cancels_a_long_statement_on_the_server(pg_project: Project) -> None:
    pg_project.add("001_t.sql", "CREATE TABLE t (id int);\n")
    assert h.run(pg_project.config, "apply").returncode == 0
    pg_project.add("002_long.sql", "INSERT INTO t VALUES (2);\nSELECT pg_sleep(60);\n")
    process = h.spawn(pg_project.config, "apply")
    h.wait_until(lambda: any(state == "active" for _, state in _sleepers(pg_project)), 60,
                 "pg_sleep(60) to be running on the server", process)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    result = h.finish(process, timeout=20)
    assert time.monotonic() - started < 5, result.output
    assert result.returncode == 130, result.output
    assert "Traceback" not in result.stderr, result.output
    assert "002_long.sql" in result.stderr, result.output
    # Cancelled, not left running on the server after the client went away.
    h.wait_until(lambda: not any(state == "active" for _, state in _sleepers(pg_project)),
                 5, "the server to stop running pg_sleep(60)")
    assert history_versions(pg_project) == ["001"]
    assert pg_project.query("SELECT id FROM t") == []
    assert pg_project.journal() == [("001", "apply", "ok"), ("002", "apply", "failed")]


@pytest.mark.parametrize("how", ["query", "transaction"])
def test_ctrl_c_landing_while_a_notice_is_handled_still_stops_the_statement(
        pg_project: Project, how: str) -> None:
    """psycopg calls the notice handler from C, where a KeyboardInterrupt would only be
    logged ("Exception ignored") and the run would go on: here the handler itself meets
    it, as a Ctrl-C arriving at that moment would, and the statement must still stop."""
    from cryomigrate.backends import ConnectOptions
    from cryomigrate.backends.postgres import PostgresBackend

    backend = PostgresBackend.connect(pg_project.url, ConnectOptions(base_dir=pg_project.root))
    pressed = []

    def ctrl_c(text: str) -> None:
        if not pressed:
            pressed.append(text)
            raise KeyboardInterrupt

    backend.on_notice = ctrl_c
    sql = "DO $$ BEGIN RAISE NOTICE 'working'; PERFORM pg_sleep(60); END $$"
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            if how == "query":
                backend.query(sql)
            else:
                with backend.transaction(lock=True) as tx:
                    tx.defer(sql)
        assert time.monotonic() - started < 20
        assert pressed == ["NOTICE: working"]
        assert backend.query("SELECT 1 AS one").data == [{"one": 1}]  # usable again
    finally:
        backend.close()
    assert _sleepers(pg_project) == []  # cancelled on the server, not left running


def test_ctrl_c_among_migrations_sent_together_keeps_those_that_committed(
        pg_project: Project) -> None:
    pg_project.add("001_t.sql", "CREATE TABLE t (id int);\n")
    pg_project.add("002_u.sql", "CREATE TABLE u (id int);\n")
    pg_project.add("003_long.sql", "INSERT INTO t VALUES (3);\nSELECT pg_sleep(60);\n")
    pg_project.add("004_v.sql", "CREATE TABLE v (id int);\n")
    process = h.spawn(pg_project.config, "apply")
    h.wait_until(lambda: any(state == "active" for _, state in _sleepers(pg_project)), 60,
                 "pg_sleep(60) to be running on the server", process)
    process.send_signal(signal.SIGINT)
    result = h.finish(process, timeout=20)
    assert result.returncode == 130, result.output
    assert "Traceback" not in result.stderr, result.output
    assert "interrupted while running 003_long.sql" in result.stderr, result.output
    assert "applied  002_u " in result.stdout, result.output
    h.wait_until(lambda: not any(state == "active" for _, state in _sleepers(pg_project)),
                 5, "the server to stop running pg_sleep(60)")
    assert history_versions(pg_project) == ["001", "002"]
    assert "v" not in pg_project.tables()
    assert pg_project.journal() == [("001", "apply", "ok"), ("002", "apply", "ok"),
                                    ("003", "apply", "failed")]


@pytest.mark.parametrize("kind", ["sql", "py"])
def test_ctrl_c_while_waiting_for_the_run_lock_says_so_and_journals_nothing(
        pg_project: Project, kind: str) -> None:
    """Another run holds the lock: a Ctrl-C then stops a migration that never started,
    which is neither "rolled back" nor an attempt to journal."""
    import psycopg

    from cryomigrate.backends import ConnectOptions
    from cryomigrate.backends.postgres import PostgresBackend

    pg_project.add("001_t.sql", "CREATE TABLE t (id int);\n")
    assert h.run(pg_project.config, "apply").returncode == 0
    if kind == "sql":
        pg_project.add("002_u.sql", "CREATE TABLE u (id int);\n")
    else:
        pg_project.add("002_u.py", "def apply(conn, environment):\n"
                       "    conn.sql('CREATE TABLE u (id int)').execute()\n")
    backend = PostgresBackend.connect(pg_project.url, ConnectOptions(
        base_dir=pg_project.root, lock_name="cryomigrate_history"))
    key = backend._lock_key
    backend.close()
    with psycopg.connect(pg_project.url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        process = h.spawn(pg_project.config, "apply", "--lock-wait", "60")

        def waiting() -> bool:
            return bool(holder.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() "  # not another test's run
                "AND query LIKE '%pg_advisory_xact_lock%'").fetchall())

        h.wait_until(waiting, 60, "the run to wait for the run lock", process)
        process.send_signal(signal.SIGINT)
        result = h.finish(process, timeout=20)
    assert result.returncode == 130, result.output
    assert "Traceback" not in result.stderr, result.output
    assert (f"interrupted while waiting for the run lock (another run holds it), before "
            f"002_u.{kind} started; nothing of it ran") in result.stderr, result.output
    assert history_versions(pg_project) == ["001"]
    assert pg_project.journal() == [("001", "apply", "ok")]


# ---------------------------------------------------------------------------------------
# Errors at the line of the file the user edits


def test_an_error_without_a_position_names_the_line_of_its_statement(
        pg_project: Project) -> None:
    pg_project.add("001_nulls.sql", (
        "-- cryomigrate:apply\n"              # 1
        "CREATE TABLE t (id int NOT NULL);\n"  # 2
        "INSERT INTO t VALUES (1);\n"          # 3
        "\n"                                   # 4
        "-- the third statement\n"             # 5
        "INSERT INTO t\n"                      # 6
        "  VALUES (NULL);\n"                   # 7
        "-- cryomigrate:rollback\n"
        "DROP TABLE t;\n"))
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "001_nulls.sql line 6:" in result.stderr, result.stderr
    assert "23502" in result.stderr and "error at line" not in result.stderr, result.stderr
    assert "t" not in pg_project.tables()


def test_a_syntax_error_inside_a_long_statement_names_its_own_line(
        pg_project: Project) -> None:
    pg_project.add("001_typo.sql", (
        "-- cryomigrate:apply\n"          # 1
        "CREATE TABLE t (id int);\n"       # 2
        "SELECT id,\n"                     # 3
        "       id + 1\n"                  # 4
        "  FROM t\n"                       # 5
        " WHERE id = = 1;\n"               # 6
        "-- cryomigrate:rollback\n"
        "DROP TABLE t;\n"))
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "001_typo.sql line 3 (error at line 6):" in result.stderr, result.stderr
    assert "42601" in result.stderr, result.stderr
    assert "t" not in pg_project.tables()


def test_sql_failing_in_a_python_migration_names_the_line_of_the_call(
        pg_project: Project) -> None:
    pg_project.add("001_t.py", (
        "def apply(conn, environment):\n"                           # 1
        "    conn.sql('CREATE TABLE t (id int)').execute()\n"        # 2
        "    conn.sql('INSERT INTO nowhere VALUES (1)').execute()\n"  # 3
    ))
    pg_project.add("002_bound.py", (
        "def _insert(conn, value):\n"                                     # 1
        "    conn.sql('INSERT INTO t VALUES (%s)', (value,)).execute()\n"  # 2
        "\n"                                                              # 3
        "\n"                                                              # 4
        "def apply(conn, environment):\n"                                 # 5
        "    _insert(conn, 1)\n"                                          # 6
        "    _insert(conn, 'not a number')\n"                             # 7
    ))
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "001_t.py line 3" in result.stderr and "nowhere" in result.stderr, result.stderr
    pg_project.add("001_t.py", (
        "def apply(conn, environment):\n"
        "    conn.sql('CREATE TABLE t (id int)').execute()\n"))
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    # The line that ran the SQL: inside the helper, not where apply called it.
    assert "002_bound.py line 2" in result.stderr and "22P02" in result.stderr, result.stderr
    assert history_versions(pg_project) == ["001"]


# ---------------------------------------------------------------------------------------
# Round trips, counted on the wire (bench/delayproxy.py)


def _proxy() -> Any:
    bench = Path(__file__).resolve().parents[1] / "bench"
    if str(bench) not in sys.path:
        sys.path.insert(0, str(bench))
    import delayproxy

    return delayproxy


def _through(project: Project, port: int) -> None:
    dbname = project.url.rsplit("/", 1)[1]
    project.write_config(f"""
        environments:
          development:
            database: postgresql://postgres@127.0.0.1:{port}/{dbname}?sslmode=disable
    """)


def _round_trips(proxy: Any, project: Project, *args: str) -> int:
    proxy.reset()
    result = project.cli(*args)
    assert result.exit_code == 0, result.output
    return int(proxy.counters().round_trips)


def test_rolling_back_sql_migrations_in_a_row_costs_one_round_trip(pg_project: Project) -> None:
    delayproxy = _proxy()
    for i in range(1, 8):
        pg_project.add(f"00{i}_t{i}.sql", f"-- cryomigrate:apply\nCREATE TABLE t{i} (id int);\n"
                       f"CREATE INDEX ON t{i} (id);\n-- cryomigrate:rollback\n"
                       f"DROP INDEX IF EXISTS t{i}_id_idx;\nDROP TABLE t{i};\n")
    assert pg_project.cli("apply").exit_code == 0
    # Long enough that a message queued statement by statement reaches the proxy before
    # its first reply does, even on a loaded machine (the proxy counts a reply that
    # comes between two sends as a round trip).
    with delayproxy.DelayProxy(target_port=5432, delay=0.05) as proxy:
        _through(pg_project, proxy.port)
        cold = _round_trips(proxy, pg_project, "rollback", "--target", "1", "--yes")
        noop = _round_trips(proxy, pg_project, "rollback", "--target", "1", "--yes")
    assert cold - noop == 1, (cold, noop)  # six migrations rolled back, sent together
    assert history_versions(pg_project) == ["001"]
    assert pg_project.tables() == {"t1", "cryomigrate_history", "cryomigrate_history_journal"}
    assert pg_project.query("SELECT count(*) FROM cryomigrate_history_journal "
                            "WHERE action = 'rollback' AND outcome = 'ok'") == [(6,)]


def test_python_migrations_cost_their_own_statements_plus_one_each_and_a_commit(
        pg_project: Project) -> None:
    # Each needs its run lock and guard back before its code runs (one round trip, which
    # also carries the previous migration's COMMIT); the last COMMIT travels alone.
    delayproxy = _proxy()
    pg_project.add("001_first.sql", "CREATE TABLE first (id int);\n")
    assert pg_project.cli("apply").exit_code == 0  # the history tables exist from here on
    statements = {2: 1, 3: 2, 4: 3}
    for version, count in statements.items():
        calls = "".join(f"    conn.sql('INSERT INTO first VALUES ({n})').execute()\n"
                        for n in range(count))
        pg_project.add(f"00{version}_py{version}.py",
                       f"def apply(conn, environment):\n{calls}")
    with delayproxy.DelayProxy(target_port=5432, delay=0.005) as proxy:
        _through(pg_project, proxy.port)
        cold = _round_trips(proxy, pg_project, "apply")
        noop = _round_trips(proxy, pg_project, "apply")
    expected = sum(count + 1 for count in statements.values()) + 1
    assert cold - noop == expected, (cold, noop, expected)
    assert history_versions(pg_project) == ["001", "002", "003", "004"]
    assert pg_project.query("SELECT count(*) FROM first") == [(6,)]


# ---------------------------------------------------------------------------------------
# The run lock's wait is bounded by --lock-wait alone, in every transaction of a session


def _held_lock_wait(url: str, root: Path, lock_wait_ms: int, between: str = "") -> float:
    """How long a second locking transaction in one session waits for the run lock held
    by another session before it gives up (LockTimeout); ``between``: a session setting
    made after the first transaction, as another client's SET behind a transaction
    pooler nobody declared would be."""
    import psycopg

    from cryomigrate.backends import ConnectOptions
    from cryomigrate.backends.postgres import PostgresBackend
    from cryomigrate.errors import LockTimeout

    backend = PostgresBackend.connect(url, ConnectOptions(base_dir=root,
                                                          lock_wait_ms=lock_wait_ms))
    try:
        with backend.transaction(lock=True) as tx:
            tx.defer("SELECT 1")
        if between:
            backend.query(between)
        with psycopg.connect(url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (backend._lock_key,))
            started = time.monotonic()
            with pytest.raises(LockTimeout), backend.transaction(lock=True) as tx:
                tx.defer("SELECT 1")
            waited = time.monotonic() - started
        with backend.transaction(lock=True) as tx:  # released: usable again
            tx.defer("SELECT 1")
    finally:
        backend.close()
    return waited


def test_a_later_transaction_waits_for_the_run_lock_as_long_as_lock_wait(
        pg_project: Project) -> None:
    waited = _held_lock_wait(pg_project.url, pg_project.root, 1500)
    assert 1.4 <= waited < 10, waited


def test_a_later_transaction_is_not_cut_short_by_a_statement_timeout_of_the_database(
        pg_project: Project) -> None:
    h.alter_database(pg_project.url, "statement_timeout = '500ms'")
    waited = _held_lock_wait(pg_project.url, pg_project.root, 2000)
    assert 1.9 <= waited < 10, waited  # --lock-wait, not the 500 ms statement_timeout


def test_a_statement_timeout_set_on_the_session_since_its_last_transaction_does_not_cut_it(
        pg_project: Project) -> None:
    waited = _held_lock_wait(pg_project.url, pg_project.root, 2000,
                             between="SET statement_timeout = '500ms'")
    assert 1.9 <= waited < 10, waited


def test_a_sql_migrations_history_and_journal_rows_are_one_statement(
        pg_project: Project) -> None:
    # Every statement costs the client and the server per migration: counted on the wire,
    # each migration sent with others parses one statement for its history and journal
    # rows, besides its script and cryomigrate's own other statements (listed below).
    delayproxy = _proxy()
    pg_project.add("001_first.sql", "CREATE TABLE first (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    with delayproxy.DelayProxy(target_port=5432, delay=0.001) as proxy:
        _through(pg_project, proxy.port)
        parsed = {}
        for count in (2, 4):
            for n in range(2, 2 + count):
                pg_project.add(f"{n:03d}_t{n}_{count}.sql", f"INSERT INTO first VALUES ({n});\n")
            proxy.reset()
            assert pg_project.cli("apply").exit_code == 0
            parsed[count] = proxy.counters().messages.get("P", 0)
            for path in (pg_project.root / "migrations").glob("0*_t*"):
                path.unlink()
            h.execute(pg_project.url, "DELETE FROM cryomigrate_history WHERE version > 1")
    # Per migration sent with others: BEGIN, marker, keep timeouts, lock, guard, script,
    # RESET ALL, SET SESSION AUTHORIZATION, history and journal, COMMIT.
    assert (parsed[4] - parsed[2]) / 2 == 10, parsed
