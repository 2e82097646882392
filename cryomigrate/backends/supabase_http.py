"""Supabase over its HTTP API (PostgREST), through the ``supabase`` client (DESIGN 8.1).

No database password: the project URL and the service-role key. PostgREST runs only
functions, one request = one transaction, so each call goes to cryomigrate's own function
(``supabase_functions``) with a list of statements. A queued ``Transaction`` is one call:
a SQL migration's lock, guard, script, history and journal rows commit together, exactly
as over a direct connection. What a call cannot do is stay open while Python code looks
at results, so ``calls_are_transactions`` tells the runner to treat a Python migration
like a non-transactional one (marked dirty while it runs).

A call that times out may still commit on the server. ``commit`` then re-reads, under the
run lock (so after that call's transaction ended), whether the guarded work is recorded,
and never sends it again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from cryomigrate.backends import ConnectOptions
from cryomigrate.backends.base import (
    Expect,
    Params,
    QueryError,
    QueryResult,
    is_plan_outdated,
    plan_check,
)
from cryomigrate.backends.supabase_functions import EXEC_FUNCTION, ITEM_MARK, READ_FUNCTION
from cryomigrate.errors import (
    ConnectionFailed,
    CryomigrateError,
    DatabaseError,
    InputError,
    LockTimeout,
    PlanOutdated,
)
from cryomigrate.sqlscript import Script
from cryomigrate.sqlsplit import code_only, regions

EXTRA_ADVICE = "pip install 'cryomigrate[supabase]'"
_SETUP_ADVICE = ("run `cryomigrate supabase-setup` and execute its SQL once in the project's "
                 "SQL editor (or pipe it into psql)")
# How long a call may take before the client stops waiting for its answer: the client's
# own default. A test shortens it to see a call answered only after it committed.
CALL_TIMEOUT_S: float = 120
_PLACEHOLDER = re.compile(r"%(.)", re.S)
# Statements that return rows at top level (conn.sql(...).execute().data), read in the
# statement's code only (strings, comments and dollar bodies blanked): its first keyword
# (SELECT, VALUES, TABLE, WITH ... SELECT, but not SELECT ... INTO), or a RETURNING.
_FIRST_WORD = re.compile(r"\s*\(*\s*([A-Za-z]+)\b")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|[()]")
_NOT_FOUND = "PGRST202"
_LOCK_NOT_AVAILABLE = "55P03"
_INSUFFICIENT_PRIVILEGE = "42501"

Item = dict[str, Any]


def _import_client() -> Any:
    try:
        import httpx
        from supabase import ClientOptions, create_client
    except ImportError:
        raise InputError(
            "this environment's database is an https:// URL (the Supabase HTTP API), which "
            f"needs the supabase client: {EXTRA_ADVICE}") from None
    return create_client, ClientOptions, httpx


class SupabaseHttpBackend:
    dialect = "postgresql"
    placeholder = "%s"
    elapsed_ms = ("(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() "
                  "OPERATOR(pg_catalog.-) pg_catalog.now()) OPERATOR(pg_catalog.*) 1000)"
                  "::pg_catalog.int4")
    calls_are_transactions = True

    def __init__(self, client: Any, httpx: Any, url: str, options: ConnectOptions) -> None:
        self.client = client  # the supabase client: conn.rpc() and conn.table() use it
        self._httpx = httpx
        self._options = options
        self.display_url = url
        self.writable = not options.read_only
        self.on_notice: Callable[[str], None] | None = None  # the API relays no notices
        # The direct backend's key (postgres.py), so direct and HTTP runs exclude each other.
        digest = hashlib.sha256(f"cryomigrate:{options.lock_name}".encode()).digest()
        self.lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self._pending: list[Item] = []

    @classmethod
    def connect(cls, url: str, options: ConnectOptions) -> SupabaseHttpBackend:
        create_client, client_options, httpx = _import_client()
        if not options.service_key:
            raise InputError("the Supabase HTTP API needs the environment's service_key "
                             "(e.g. service_key: ${SUPABASE_SERVICE_ROLE_KEY})")
        try:
            # No retries: a POST that timed out may have committed; see the module docstring.
            client = create_client(url, options.service_key,
                                   options=client_options(postgrest_client_retry=False,
                                                          postgrest_client_timeout=CALL_TIMEOUT_S))
        except Exception as exc:  # the client's own validation of URL and key
            raise ConnectionFailed(f"cannot use the Supabase HTTP API at {url}: "
                                   f"{type(exc).__name__}: {exc}") from None
        return cls(client, httpx, url, options)

    # -- calls ------------------------------------------------------------------------

    def _api_error(self, exc: Any, items: list[Item]) -> CryomigrateError:
        code = str(exc.code or "")
        message = str(exc.message or exc)
        if code == _NOT_FOUND:
            return ConnectionFailed(
                f"{self.display_url} has no cryomigrate functions (PostgREST: {message}); "
                f"{_SETUP_ADVICE}")
        index, _, message = _split_mark(message)
        if index is None and (code == _INSUFFICIENT_PRIVILEGE or code.startswith("PGRST3")):
            return ConnectionFailed(
                f"the Supabase HTTP API at {self.display_url} refused the key ({code}: "
                f"{message}); service_key must be the project's service_role key, and the "
                f"functions need EXECUTE for service_role: {_SETUP_ADVICE}")
        item = items[index - 1] if index is not None and 0 < index <= len(items) else {}
        if is_plan_outdated(code, message):
            return PlanOutdated("another run changed the history meanwhile")
        if code == _LOCK_NOT_AVAILABLE and "lock" in item:
            return LockTimeout.waited(
                f"another cryomigrate run holds the lock on {self.display_url}",
                self._options.lock_wait_ms)
        reason = f"{message} (SQLSTATE {code})" if code else message
        if exc.details:
            reason += f"; DETAIL: {exc.details}"
        if exc.hint:
            reason += f"; HINT: {exc.hint}"
        script: Script | None = item.get("_script")
        if script is not None:
            line = script.file_line(item["_index"])
            return QueryError(f"{script.origin} line {line}: {reason}", sqlstate=code,
                              line=line, script=script)
        where = item.get("_where")
        return QueryError(f"{where}: {reason}" if where else reason, sqlstate=code)

    # -- the Backend protocol ------------------------------------------------------------

    def query(self, sql: str, params: Params = None) -> QueryResult:
        items, self._pending = self._pending, []
        items.append(_statement(sql, params, rows=True))
        return _result(self._checked(items))

    def run_script(self, script: Script) -> QueryResult:
        items, self._pending = self._pending, []
        items += _script_items(script)
        return _result(self._checked(items))

    def _checked(self, items: list[Item]) -> dict[str, Any]:
        try:
            return self._call_items(items)
        except self._httpx.TimeoutException as exc:
            raise DatabaseError(
                f"the Supabase HTTP API at {self.display_url} did not answer in time "
                f"({type(exc).__name__}); the call may still have committed, so it is not "
                "repeated: run `cryomigrate status` to see what the database holds") from None

    def _call_items(self, items: list[Item]) -> dict[str, Any]:
        from postgrest.exceptions import APIError

        name = READ_FUNCTION if self._options.read_only else EXEC_FUNCTION
        wire = [{k: v for k, v in i.items() if not k.startswith("_")} for i in items]
        try:
            # GET carries arguments in the query string, which PostgREST casts from text.
            args = {"items": json.dumps(wire) if self._options.read_only else wire}
            response = self.client.rpc(name, args, get=self._options.read_only).execute()
        except APIError as exc:
            raise self._api_error(exc, items) from None
        except self._httpx.TimeoutException:
            raise
        except self._httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach the Supabase HTTP API at {self.display_url}: "
                                   f"{type(exc).__name__}: {exc}") from None
        data = response.data
        return data if isinstance(data, dict) else {}

    def outside_transaction(self) -> Any:
        """Every call is its own transaction; timeouts go with each call's lock item."""
        return nullcontext()

    @contextmanager
    def transaction(self, *, lock: bool = True, expect: Expect | None = None
                    ) -> Iterator[HttpTransaction]:
        tx = HttpTransaction(self, expect)
        if lock:
            opts = self._options
            self._pending.append({"lock": self.lock_key, "wait_ms": max(1, opts.lock_wait_ms),
                                  "lock_timeout_ms": opts.lock_timeout_ms,
                                  "statement_timeout_ms": opts.statement_timeout_ms})
        if expect is not None:
            self._pending.append({"guard": expect.query, "present": expect.present})
            check = plan_check(expect)
            if check is not None:  # after the guard, which skips first
                self._pending.append(_statement(f"SELECT {check}", None,
                                                where="checking the history"))
        try:
            yield tx
            if not tx.done:
                tx.commit()
        finally:
            self._pending.clear()

    def recorded(self, expect: Expect) -> bool:
        """Whether the work ``expect`` guarded is now recorded, read under the run lock so
        that a call still running on the server has ended first."""
        items = [{"lock": self.lock_key, "wait_ms": max(1, self._options.lock_wait_ms)},
                 _statement(f"SELECT EXISTS ({expect.query}) AS found", None, rows=True)]
        rows = self._checked(items).get("rows") or [{}]
        return bool(rows[0].get("found")) != expect.present

    def table_exists(self, table: str) -> bool:
        found = self.query("SELECT pg_catalog.to_regclass(%s) IS NOT NULL AS found",
                           (self.quote_table(table),))
        return bool(found.data[0]["found"])

    def quote_table(self, table: str) -> str:
        """Always schema-qualified: the functions run with an empty search_path."""
        parts = table.split(".") if "." in table else ["public", table]
        return ".".join('"' + part + '"' for part in parts)

    def ensure_schema(self, table: str) -> None:
        if "." in table:
            self.query(f'CREATE SCHEMA IF NOT EXISTS "{table.split(".", 1)[0]}"')

    def close(self) -> None:
        self._pending.clear()


class HttpTransaction:
    """The queue of one call; see ``base.Transaction``."""

    def __init__(self, backend: SupabaseHttpBackend, expect: Expect | None) -> None:
        self._backend = backend
        self._expect = expect
        self.done = False

    def defer(self, sql: str, params: Params = None, *, where: str = "") -> None:
        self._backend._pending.append(_statement(sql, params, where=where or "COMMIT"))

    def defer_script(self, script: Script) -> None:
        # A queued migration script's rows are never read: nothing is wrapped.
        self._backend._pending.extend(_script_items(script, rows=False))

    def reset_session(self) -> None:
        # Inside a SECURITY DEFINER function a script cannot SET ROLE; its search_path is
        # set back to the function's own.
        self.defer("SELECT pg_catalog.set_config('search_path', '', true)",
                   where="resetting the session")

    def flush(self) -> bool:
        raise DatabaseError("internal: a call over the Supabase HTTP API cannot stay open "
                            "between statements")

    def commit(self) -> bool:
        backend = self._backend
        items, backend._pending = backend._pending, []
        self.done = True
        if not items:
            return True
        try:
            return not backend._call_items(items).get("skipped", False)
        except backend._httpx.TimeoutException as exc:
            if self._expect is not None and backend.recorded(self._expect):
                return True  # it committed after all
            raise DatabaseError(timed_out_message(backend.display_url, type(exc).__name__,
                                                  guarded=self._expect is not None)) from None


def timed_out_message(url: str, error: str, *, guarded: bool) -> str:
    """What a call that timed out left behind. With a guard, the history was re-read under
    the lock and shows the call did not commit; without one nothing tells."""
    if guarded:
        return (f"the Supabase HTTP API at {url} did not answer in time ({error}); re-read "
                "under the lock, the history shows that call did not commit, so nothing was "
                "applied")
    return (f"the Supabase HTTP API at {url} did not answer in time ({error}); the call may "
            "or may not have committed, so it is not repeated: run `cryomigrate status` to "
            "see what the database holds")


def _split_mark(message: str) -> tuple[int | None, str, str]:
    """``msg [cryomigrate item 3]`` -> (3, '', 'msg')."""
    at = message.rfind(ITEM_MARK)
    if at < 0 or not message.endswith("]"):
        return None, "", message
    number = message[at + len(ITEM_MARK):-1]
    return (int(number) if number.isdigit() else None), "", message[:at]


def _statement(sql: str, params: Params, *, rows: bool = False, where: str = "") -> Item:
    item: Item = {"sql": sql, "_where": where}
    if rows and returns_rows(sql):
        item["sql"] = sql.rstrip().rstrip(";")
        item["rows"] = True
    if params is not None:
        item["sql"], item["params"] = _bind(item["sql"], params)
    return item


def _top_level(sql: str) -> tuple[str | None, list[str]]:
    """The first keyword of ``sql`` and its words outside parentheses, strings, comments
    and dollar-quoted bodies, all in lower case."""
    code = code_only(sql, regions(sql))
    first = _FIRST_WORD.match(code)
    depth = 0
    top: list[str] = []
    for token in _WORD.findall(code):
        if token == "(":
            depth += 1
        elif token == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            top.append(token.lower())
    return (first[1].lower() if first else None), top


def _selects_into(sql: str) -> bool:
    """``SELECT ... INTO new_table`` (also after WITH): the one statement EXECUTE refuses."""
    keyword, top = _top_level(sql)
    if keyword not in ("select", "with"):
        return False
    # After WITH, the main statement is the first top-level verb (INSERT INTO is no SELECT).
    main = next((i for i, w in enumerate(top)
                 if w in ("select", "insert", "update", "delete", "merge")), None)
    return main is not None and top[main] == "select" and "into" in top[main:]


def returns_rows(sql: str) -> bool:
    """Whether ``sql`` is a statement that returns rows at its top level, so that it can be
    wrapped in ``WITH cryomigrate_rows AS (...)``."""
    keyword, top = _top_level(sql)
    if keyword is None:
        return False
    if "returning" in top:
        return True
    if keyword in ("values", "table"):
        return True
    if keyword == "select":
        return "into" not in top
    if keyword == "with":  # WITH ... SELECT: the main statement follows the CTEs
        main = next((w for w in top if w in ("select", "insert", "update", "delete",
                                              "merge", "values", "table")), None)
        return main in ("select", "values", "table") and "into" not in top
    return False


def _bind(sql: str, params: Params) -> tuple[str, list[str | None]]:
    """The driver's ``%s`` placeholders as ``format``'s ``%L``: the server quotes each value
    as a literal. Values travel as text (JSON for lists and mappings)."""
    if not isinstance(params, (list, tuple)):
        raise QueryError("over the Supabase HTTP API, parameters must be a sequence for %s "
                         "placeholders (named %(name)s placeholders are not supported)")

    def placeholder(match: re.Match[str]) -> str:
        if match[1] == "%":
            return "%%"
        if match[1] in "sbt":
            return "%L"
        raise QueryError(f"unsupported placeholder %{match[1]}: use %s for values and %% "
                         "for a literal %")

    converted = _PLACEHOLDER.sub(placeholder, sql)
    if converted.count("%L") != len(params):
        raise QueryError(f"the query has {converted.count('%L')} placeholders but "
                         f"{len(params)} parameters were given")
    return converted, [_text(value) for value in params]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):  # an array, as psycopg adapts a list
        return "{" + ",".join("NULL" if v is None else '"' + str(_text(v)).replace(
            "\\", "\\\\").replace('"', '\\"') + '"' for v in value) + "}"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


# The function runs with an empty search_path (it is SECURITY DEFINER); a migration's SQL
# gets the one Supabase's SQL editor has, so unqualified names mean what they mean there.
# ``reset_session`` empties it again before cryomigrate's own (qualified) statements.
SCRIPT_SEARCH_PATH = '"$user", public, extensions'


def _script_items(script: Script, *, rows: bool = True) -> list[Item]:
    statements = script.statements
    items: list[Item] = [
        {"sql": "SELECT pg_catalog.set_config('search_path', %L, true)",
         "params": [SCRIPT_SEARCH_PATH], "_where": "setting the script's search_path"}]
    for index, text in enumerate(statements):
        if _selects_into(text):
            # PL/pgSQL's EXECUTE, which runs each statement inside cryomigrate_exec, refuses
            # SELECT ... INTO (0A000): said before anything is sent, with the equivalent.
            raise QueryError(
                f"{script.origin} line {script.file_line(index)}: SELECT ... INTO cannot run "
                "over the Supabase HTTP API (cryomigrate's function runs each statement with "
                "PL/pgSQL's EXECUTE, which refuses it); write CREATE TABLE ... AS SELECT "
                "instead. Nothing was sent")
        last = index == len(statements) - 1
        item = _statement(text, None, rows=rows and last)
        item.update(_script=script, _index=index)  # item numbers count the search_path one
        items.append(item)
    return items


def _result(data: dict[str, Any]) -> QueryResult:
    rows = data.get("rows")
    return QueryResult(list(rows) if isinstance(rows, list) else [],
                       int(data.get("rowcount", -1)))
