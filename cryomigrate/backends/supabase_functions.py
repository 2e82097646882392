"""The SQL of cryomigrate's functions for the Supabase HTTP API (``cryomigrate supabase-setup``).

PostgREST runs no raw SQL, only functions, and each request is one transaction. So one
function runs a list of statements (``items``) in the request's transaction: the run
lock, a guard, a script's statements, cryomigrate's history and journal rows, in order,
committed together or not at all. That is the queued ``Transaction`` of the direct
backend, sent as one call instead of one pipeline.

- ``cryomigrate_exec`` (VOLATILE, called with POST) writes; ``cryomigrate_read`` (STABLE,
  called with GET, which PostgREST runs in a read-only transaction) is what ``status``,
  ``history``, ``validate`` and ``--dry-run`` use, so they cannot write even by mistake: a
  STABLE plpgsql function refuses INSERT, UPDATE, DELETE and DDL.
- Items are ``{"sql", "params"?, "rows"?}``, ``{"lock": key, "wait_ms", "lock_timeout_ms"?,
  "statement_timeout_ms"?}``
  or ``{"guard": query, "present": bool}``. A failed guard returns ``{"skipped": true}``
  before anything else ran (another run got there first).
- ``params`` are bound by the server: the client turns the driver-style ``%s`` into
  ``format``'s ``%L``, which quotes each value as a literal (NULL stays NULL).
- Statements are split client-side (cryomigrate's own splitter), one item each, so an
  error names its statement: the message gets `` [cryomigrate item N]``.
- SECURITY DEFINER with an empty ``search_path``: every name in cryomigrate's own SQL is
  qualified, and a caller's search path cannot redirect it. EXECUTE goes to
  ``service_role`` only: Supabase grants new functions in ``public`` to ``anon`` by
  default, and a leaked anon key must not be able to run DDL.
"""

from __future__ import annotations

EXEC_FUNCTION = "cryomigrate_exec"
READ_FUNCTION = "cryomigrate_read"
ITEM_MARK = " [cryomigrate item "

_BODY = r"""
CREATE OR REPLACE FUNCTION public.{name}(items jsonb)
RETURNS jsonb
LANGUAGE plpgsql
{volatility}
SECURITY DEFINER
SET search_path = ''
AS $cryomigrate$
DECLARE
    item jsonb;
    item_no integer := 0;
    statement text;
    matched boolean;
    data jsonb := '[]'::jsonb;
    affected bigint := 0;
    state text;
    message text;
    detail text;
    hint text;
    lock_timeout_was text;
BEGIN
    FOR item IN SELECT value FROM pg_catalog.jsonb_array_elements(items) LOOP
        item_no := item_no + 1;
        data := '[]'::jsonb;
        affected := 0;
        IF item ? 'lock' THEN
            -- The session's own values (the role's), kept where the environment sets none.
            lock_timeout_was := pg_catalog.current_setting('lock_timeout');
            PERFORM pg_catalog.set_config('lock_timeout', (item->>'wait_ms') || 'ms', true);
            PERFORM pg_catalog.pg_advisory_xact_lock((item->>'lock')::bigint);
            PERFORM pg_catalog.set_config('lock_timeout',
                coalesce((item->>'lock_timeout_ms') || 'ms', lock_timeout_was), true);
            -- Set for completeness; it cannot limit this call, whose timeout PostgreSQL
            -- armed when the call's statement started (README, Supabase).
            PERFORM pg_catalog.set_config('statement_timeout',
                coalesce((item->>'statement_timeout_ms') || 'ms',
                         pg_catalog.current_setting('statement_timeout')), true);
        ELSIF item ? 'guard' THEN
            EXECUTE 'SELECT EXISTS (' || (item->>'guard') || E'\n)' INTO matched;
            IF matched IS DISTINCT FROM (item->>'present')::boolean THEN
                RETURN pg_catalog.jsonb_build_object('skipped', true);
            END IF;
        ELSE
            statement := item->>'sql';
            IF item ? 'params' THEN
                statement := pg_catalog.format(statement, VARIADIC ARRAY(
                    SELECT pg_catalog.jsonb_array_elements_text(item->'params')));
            END IF;
            IF (item->>'rows')::boolean THEN
                EXECUTE 'WITH cryomigrate_rows AS (' || statement || E'\n) SELECT '
                    'coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r)), ''[]''), '
                    'pg_catalog.count(*) FROM cryomigrate_rows r' INTO data, affected;
            ELSE
                EXECUTE statement;
                GET DIAGNOSTICS affected = ROW_COUNT;
            END IF;
        END IF;
    END LOOP;
    RETURN pg_catalog.jsonb_build_object('skipped', false, 'rows', data, 'rowcount', affected);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RAISE EXCEPTION USING ERRCODE = state,
        MESSAGE = message || '{mark}' || item_no || ']',
        DETAIL = coalesce(detail, ''), HINT = coalesce(hint, '');
END
$cryomigrate$;

REVOKE ALL ON FUNCTION public.{name}(jsonb) FROM PUBLIC;
DO $cryomigrate$ BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        REVOKE ALL ON FUNCTION public.{name}(jsonb) FROM anon;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        REVOKE ALL ON FUNCTION public.{name}(jsonb) FROM authenticated;
    END IF;
END $cryomigrate$;
GRANT EXECUTE ON FUNCTION public.{name}(jsonb) TO service_role;
"""

SETUP_SQL = (
    "-- cryomigrate's functions for the Supabase HTTP API (DESIGN 8.1).\n"
    "-- Run once per database, as the postgres role (the SQL editor, or psql).\n"
    "-- Running it again is harmless: it replaces the functions and their grants.\n"
    "BEGIN;\n"
    + _BODY.format(name=EXEC_FUNCTION, volatility="VOLATILE", mark=ITEM_MARK)
    + _BODY.format(name=READ_FUNCTION, volatility="STABLE", mark=ITEM_MARK)
    + "\n-- PostgREST caches the functions it knows; tell it about these.\n"
    "NOTIFY pgrst, 'reload schema';\n"
    "COMMIT;\n"
)
