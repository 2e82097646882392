"""cryomigrate behind a real pgbouncer in transaction pool mode (DESIGN 5: ``pooler: transaction``).

In transaction pooling, consecutive transactions of one client may run on different server
connections and a server connection serves many clients. A migration tool that relies on
session state (a session advisory lock, ``SET`` without ``LOCAL``, prepared statements,
a transaction left open) breaks there or leaks into other clients; these tests run every
command through the pooler and then inspect every pooled server connection.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from tests import helpers_pg as h
from tests.conftest import PgDatabase, Project
from tests.pgbouncer import POOL_SIZE, Bouncer, bouncer_fixture  # noqa: F401


@pytest.fixture
def pooled(bouncer: Bouncer, pg_project: Project) -> Project:
    """A PostgreSQL project whose database URL goes through the transaction pooler."""
    pg_project.write_config(f"""
        environments:
          development:
            database: {bouncer.url}
            pooler: transaction
            lock_timeout: 5s
            statement_timeout: 1min
    """)
    return pg_project


def _pooled_connect(bouncer: Bouncer) -> Any:
    import psycopg

    # prepare_threshold=None: a transaction pooler cannot keep prepared statements.
    return psycopg.connect(bouncer.url, autocommit=True, prepare_threshold=None,
                           connect_timeout=5)


def assert_no_session_state(bouncer: Bouncer, database: PgDatabase) -> None:
    """No advisory lock, no open transaction, and every pooled server connection clean."""
    import psycopg

    with psycopg.connect(database.url, autocommit=True) as direct:
        me = direct.info.backend_pid
        locks = direct.execute(
            "SELECT l.pid, l.objid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = %s", (database.name,)).fetchall()
        assert locks == [], f"advisory locks left behind: {locks}"
        idle_in_tx = direct.execute(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
            "AND state LIKE 'idle in transaction%%'", (database.name, me)).fetchall()
        assert idle_in_tx == [], f"server connections left in a transaction: {idle_in_tx}"
        servers = {row[0] for row in direct.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
            "AND backend_type = 'client backend'", (database.name, me)).fetchall()}
    assert len(servers) <= POOL_SIZE, f"more server connections than the pool allows: {servers}"

    # Hold POOL_SIZE transactions open at once, so that every pooled server connection is
    # handed to one of them, and look at each one's session.
    clients = [_pooled_connect(bouncer) for _ in range(POOL_SIZE)]
    seen: dict[int, tuple[Any, ...]] = {}
    try:
        for client in clients:
            client.execute("BEGIN")
            row = client.execute(
                "SELECT pg_backend_pid(), current_setting('lock_timeout'), "
                "current_setting('statement_timeout'), "
                "(SELECT count(*) FROM pg_prepared_statements), "
                "current_setting('idle_in_transaction_session_timeout')").fetchone()
            seen[row[0]] = tuple(row[1:])
    finally:
        for client in clients:
            client.execute("COMMIT")
            client.close()
    assert servers <= set(seen), f"did not reach every server connection: {servers} vs {seen}"
    for pid, (lock_timeout, statement_timeout, prepared, idle_timeout) in seen.items():
        assert (lock_timeout, statement_timeout, prepared) == ("0", "0", 0), (
            f"server connection {pid} kept session state from a run: "
            f"lock_timeout={lock_timeout} statement_timeout={statement_timeout} "
            f"prepared statements={prepared} idle_in_transaction_timeout={idle_timeout}")


def test_probe_detects_leaked_session_state(bouncer: Bouncer, pg_database: PgDatabase) -> None:
    """The check above is itself tested: a plain SET through the pooler must be caught."""
    with _pooled_connect(bouncer) as client:
        client.execute("SET lock_timeout = '7s'")
    with pytest.raises(AssertionError, match="kept session state"):
        assert_no_session_state(bouncer, pg_database)


CREATE_ITEMS = """
    -- cryomigrate:apply
    CREATE TABLE items (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label TEXT NOT NULL);
    INSERT INTO items (label) VALUES ('one; two'), ($$it's$$);
    -- cryomigrate:rollback
    DROP TABLE items;
"""

SEED_PY = '''
    """Seed items with bound parameters."""


    def apply(conn, environment):
        for label in ("alpha", "beta"):
            conn.sql("INSERT INTO items (label) VALUES (%s)", (label,)).execute()
        count = conn.sql("SELECT count(*) AS n FROM items").execute().data[0]["n"]
        assert count == 4, count


    def rollback(conn, environment):
        conn.sql("DELETE FROM items WHERE label IN (%s, %s)", ("alpha", "beta")).execute()
'''


def test_apply_status_rollback_through_pooler(pooled: Project, bouncer: Bouncer,
                                              pg_database: PgDatabase) -> None:
    pooled.add("001_create_items.sql", CREATE_ITEMS)
    pooled.add("002_seed_items.py", SEED_PY)

    applied = h.run(pooled.config, "apply")
    assert applied.returncode == 0, applied.output
    assert h.status_states(pooled.config) == {"001": "applied", "002": "applied"}
    assert sorted(r[0] for r in pooled.query("SELECT label FROM items")) == [
        "alpha", "beta", "it's", "one; two"]
    assert_no_session_state(bouncer, pg_database)

    rolled = h.run(pooled.config, "rollback", "--steps", "1")
    assert rolled.returncode == 0, rolled.output
    assert h.status_states(pooled.config) == {"001": "applied", "002": "pending"}
    rolled = h.run(pooled.config, "rollback")
    assert rolled.returncode == 0, rolled.output
    assert h.status_states(pooled.config) == {"001": "pending", "002": "pending"}
    assert "items" not in pooled.tables()
    assert [r[1:] for r in pooled.journal()] == [("apply", "ok")] * 2 + [("rollback", "ok")] * 2
    assert_no_session_state(bouncer, pg_database)


def test_concurrent_applies_through_pooler_never_apply_twice(
        pooled: Project, bouncer: Bouncer, pg_database: PgDatabase) -> None:
    count, runs = 15, 6
    pooled.add("000_effects.sql", h.EFFECTS_SQL)
    for n in range(1, count + 1):
        pooled.add(f"{n:03d}_effect_{n}.sql", f"""
            -- cryomigrate:apply
            INSERT INTO effects (version) VALUES ({n});
            SELECT pg_sleep(0.01);
            -- cryomigrate:rollback
            DELETE FROM effects WHERE version = {n};
        """)
    h.run_at_once(pooled.config, runs, "apply", "--lock-wait", "120")

    h.assert_each_effect_once(pooled, count)
    journal = pooled.query("SELECT version, count(*) FROM cryomigrate_history_journal "
                           "WHERE action = 'apply' GROUP BY version ORDER BY version")
    assert journal == [(f"{n:03d}", 1) for n in range(count + 1)]
    assert set(h.status_states(pooled.config).values()) == {"applied"}
    assert_no_session_state(bouncer, pg_database)


def test_create_index_concurrently_through_pooler(pooled: Project, bouncer: Bouncer,
                                                  pg_database: PgDatabase) -> None:
    pooled.add("001_create_events.sql", """
        -- cryomigrate:apply
        CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT NOT NULL);
        INSERT INTO events SELECT g, 'k' || (g % 7) FROM generate_series(1, 2000) g;
        -- cryomigrate:rollback
        DROP TABLE events;
    """)
    pooled.add("002_index_events.sql", """
        -- cryomigrate:no-transaction
        -- cryomigrate:apply
        CREATE INDEX CONCURRENTLY IF NOT EXISTS events_kind_idx ON events (kind);
        CREATE UNIQUE INDEX CONCURRENTLY events_kind_id_idx ON events (kind, id);
        -- cryomigrate:rollback
        DROP INDEX CONCURRENTLY IF EXISTS events_kind_id_idx;
        DROP INDEX CONCURRENTLY IF EXISTS events_kind_idx;
    """)
    applied = h.run(pooled.config, "apply")
    assert applied.returncode == 0, applied.output
    indexes = pooled.query(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname LIKE 'events_kind%' ORDER BY 1")
    assert indexes == [("events_kind_id_idx", True), ("events_kind_idx", True)]
    assert h.status_states(pooled.config) == {"001": "applied", "002": "applied"}
    assert_no_session_state(bouncer, pg_database)

    rolled = h.run(pooled.config, "rollback", "--steps", "1")
    assert rolled.returncode == 0, rolled.output
    assert pooled.query("SELECT relname FROM pg_class WHERE relname LIKE 'events_kind%'") == []
    assert h.status_states(pooled.config) == {"001": "applied", "002": "pending"}
    assert_no_session_state(bouncer, pg_database)


def test_lock_wait_expiry_through_pooler(pooled: Project, bouncer: Bouncer) -> None:
    """A run blocked behind another through the pooler still gives up with exit 5."""
    pooled.add("000_effects.sql", h.EFFECTS_SQL)
    pooled.add("001_gated.py", textwrap.dedent(h.GATED_PY.format(n=1)))
    with h.run_held_inside_gate(pooled.config):
        waiter = h.run(pooled.config, "apply", "--lock-wait", "1", timeout=60)
        assert waiter.returncode == 5, waiter.output
        assert "--lock-wait" in waiter.stderr
    assert pooled.query("SELECT count(*) FROM effects") == [(1,)]



def test_sigkill_through_pooler_leaves_no_lock_or_open_transaction(
        pooled: Project, bouncer: Bouncer, pg_database: PgDatabase) -> None:
    """A run killed inside a migration: pgbouncer drops or resets the server connection,
    so its transaction, table and lock are gone and a later run completes."""
    pooled.add("000_effects.sql", h.EFFECTS_SQL)
    pooled.add("001_gated.py", textwrap.dedent(h.GATED_PY.format(n=1)))
    h.sigkill_inside_gate(pooled.config)

    def settled() -> bool:
        try:
            assert_no_session_state(bouncer, pg_database)
            return True
        except AssertionError:
            return False

    h.wait_until(settled, 15, "the pooler to release the killed run's server connection")
    assert "t1" not in pooled.tables()
    assert h.status_states(pooled.config) == {"000": "applied", "001": "pending"}
    again = h.run(pooled.config, "apply", "--lock-wait", "30")
    assert again.returncode == 0, again.output
    assert pooled.query("SELECT count(*) FROM effects") == [(1,)]
    assert_no_session_state(bouncer, pg_database)
