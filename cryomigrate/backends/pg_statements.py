"""The SQL the PostgreSQL backend sends of its own, around a migration's: the run lock's
wait and the timeouts, the guard, the session reset, and the notices that mark where one
transaction of a message ends. Plain strings and expressions; the backend decides when.
"""

from __future__ import annotations

from cryomigrate.backends.base import PLAN_OUTDATED_SETTING, Expect

# A transaction's guard (``guard_expression``) fails with this when another run got there
# first: a skip, not an error. The setting is never defined, so reading it fails.
GUARD_SETTING = "cryomigrate.another_run_got_there_first"
UNDEFINED_SETTING = "42704"
IN_FAILED_TRANSACTION = "25P02"
# What a script may have set for the session, undone before cryomigrate writes anything;
# the session authorization also undoes a SET ROLE.
RESET_SESSION = ("RESET ALL", "SET SESSION AUTHORIZATION DEFAULT")
# See ``PostgresBackend.transaction``: the session's timeouts kept in settings of
# cryomigrate's own, then the wait for the lock bounded by --lock-wait alone.
KEEP_TIMEOUTS_AND_WAIT = (
    "SELECT pg_catalog.set_config('cryomigrate.lock_timeout', "
    "pg_catalog.current_setting('lock_timeout'), true), "
    "pg_catalog.set_config('cryomigrate.statement_timeout', "
    "pg_catalog.current_setting('statement_timeout'), true), "
    "pg_catalog.set_config('lock_timeout', %s, true), "
    "pg_catalog.set_config('statement_timeout', '0', true), "
    "pg_catalog.current_setting('client_min_messages') AS shown")
# The environment's timeouts, or where it sets none the session's own, kept above.
ENVIRONMENT_TIMEOUTS = (
    "SELECT pg_catalog.set_config('lock_timeout', COALESCE(%s::pg_catalog.text, "
    "pg_catalog.current_setting('cryomigrate.lock_timeout')), true), "
    "pg_catalog.set_config('statement_timeout', COALESCE(%s::pg_catalog.text, "
    "pg_catalog.current_setting('cryomigrate.statement_timeout')), true)")
# A marker (see ``PostgresBackend._marked``): a notice. Where client_min_messages may
# hide notices, the longer one shows it anyway and then puts the setting back for the
# rest of the transaction; once a transaction has told the setting
# (``KEEP_TIMEOUTS_AND_WAIT``), the short one does when notices are shown.
MARK = "DO $cryomigrate$ BEGIN RAISE NOTICE '{marker}{number}'; END $cryomigrate$"
MARK_SHOWN = ("DO $cryomigrate$ DECLARE shown pg_catalog.text := "
              "pg_catalog.current_setting('client_min_messages'); BEGIN "
              "PERFORM pg_catalog.set_config('client_min_messages', 'notice', true); "
              "RAISE NOTICE '{marker}{number}'; "
              "PERFORM pg_catalog.set_config('client_min_messages', shown, true); "
              "END $cryomigrate$")
# client_min_messages values at which a NOTICE reaches the client.
NOTICES_SHOWN = {"debug5", "debug4", "debug3", "debug2", "debug1", "debug", "log", "notice"}


def guard_expression(expect: Expect) -> str:
    """An expression that fails exactly when ``expect`` does, so that everything queued
    after it is skipped. Plain SQL: a plpgsql DO block would be compiled anew on every call.
    ``current_setting`` of a setting that does not exist raises (42704), and, being STABLE
    rather than IMMUTABLE, only when evaluated, never while planning."""
    negation = "NOT " if expect.present else ""
    # A stale plan in the same CASE, after the skip (which comes first): one call, one
    # expression to plan, on every migration's hot path.
    stale = "" if expect.stale is None else \
        f"WHEN {expect.stale} THEN '{PLAN_OUTDATED_SETTING}' "
    return (f"pg_catalog.current_setting(CASE WHEN {negation}EXISTS ({expect.query}) "
            f"THEN '{GUARD_SETTING}' {stale}ELSE 'lock_timeout' END)")


def ms(value: int | None) -> str | None:
    return None if value is None else f"{value}ms"


def session_setting(name: str, ms: int | None) -> str:
    """A session-level setting (outside any transaction) of the environment's timeout."""
    return f"SET {name} TO DEFAULT" if ms is None else f"SET {name} = '{ms}ms'"
