"""A loopback stand-in for the RPC endpoint of PostgREST behind Supabase's API gateway.

PostgREST cannot be installed from the registries these machines reach, so the tests of
the Supabase HTTP transport talk to this instead, through the real ``supabase`` client.
It reproduces exactly these documented behaviours, and is no more permissive:

- ``POST /rest/v1/rpc/<fn>`` calls ``public.<fn>`` with the JSON body's keys as named
  arguments, in a read-write transaction; ``GET /rest/v1/rpc/<fn>?arg=value`` calls it in
  a read-only transaction ("Functions as RPC"; GET is "executed in a read-only
  transaction").
- Every request is one transaction: committed when the function returns, rolled back
  when it raises.
- The JWT (``Authorization: Bearer``, else the ``apikey``) is verified as HS256 with the
  project's secret; its ``role`` claim becomes the transaction's role with ``SET LOCAL
  ROLE`` (``anon`` without one), and the claims are in ``request.jwt.claims`` ("JWT
  role"). A bad signature is 401 ``PGRST301``.
- A request without an ``apikey`` header is 401, as Supabase's gateway answers.
- Errors are ``{code, message, details, hint}`` with PostgREST's status mapping
  ("Errors": 42501 is 401 for anon and 403 otherwise, 25006 405, 23503/23505 409,
  42883/42P01 404, P0001 400, 08* and 53* 503, the other listed classes 500, the rest
  400).
- A function returning ``void`` is 204 with no body; an unknown function (name and
  argument names) is 404 ``PGRST202``.

- Tables ("Tables and Views"), only as far as a migration's ``conn.table(name)`` uses
  them: ``GET /rest/v1/<table>?select=*`` (or a list of column names) reads the rows of
  ``public.<table>`` in a read-only transaction, as a JSON array; ``POST
  /rest/v1/<table>`` inserts a JSON object or array of objects (the ``columns`` parameter
  naming the keys, when given) with ``json_populate_recordset`` as PostgREST does, and
  answers 201 with the inserted rows under ``Prefer: return=representation``, with no body
  under ``return=minimal``. Same transaction, role and error rules as RPC; a table not in
  ``public`` is 404 ``PGRST205``. Filters, ordering, embedding, counts, upserts and any
  other ``Prefer`` are refused (400), never ignored. There is no schema cache: a table is
  visible as soon as it is committed, as on Supabase once its DDL watch has reloaded.

One test-only switch, which PostgREST lacks: ``server.slow_after_commit`` (a string)
makes a request whose body contains it commit as usual and then hold its response for
``server.slow_seconds``, the way a response can be lost after the server committed.

Nothing else: no other table verbs, no schema switching.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import sql

_RPC = "/rest/v1/rpc/"
_REST = "/rest/v1/"
JWT_SECRET = "cryomigrate-test-jwt-secret-not-a-real-one-0123456789"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(role: str, secret: str = JWT_SECRET) -> str:
    """A Supabase-style API key: an HS256 JWT whose ``role`` claim PostgREST applies."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"iss": "supabase", "role": role, "exp": 4102444800}).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def _claims(token: str) -> dict[str, Any] | None:
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(),
                            hashlib.sha256).digest()
        given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        if not hmac.compare_digest(expected, given):
            return None
        claims: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return claims
    except (ValueError, json.JSONDecodeError):
        return None


def status_of(code: str, authenticated: bool) -> int:
    """PostgREST's mapping of a SQLSTATE to an HTTP status ("Errors")."""
    exact = {"23503": 409, "23505": 409, "25006": 405, "42883": 404, "42P01": 404,
             "42P17": 500, "P0001": 400, "53400": 500}
    if code in exact:
        return exact[code]
    if code == "42501":
        return 403 if authenticated else 401
    prefixes = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500,
                "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 500, "55": 500,
                "57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return prefixes.get(code[:2], 400)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._raw_body = b""  # a connection kept alive may have carried a POST before
        url = urlsplit(self.path)
        self._route(url.path, parse_qsl(url.query), None, read_only=True)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        self._raw_body = raw
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._error(400, "PGRST102", "Empty or invalid json")
            return
        url = urlsplit(self.path)
        self._route(url.path, parse_qsl(url.query), body, read_only=False)

    def _route(self, path: str, query: list[tuple[str, str]], body: Any, *,
               read_only: bool) -> None:
        self.server.requests.append((self.command, path))
        auth = self._authorize()
        if auth is None:
            return
        if path.startswith(_RPC):
            args = dict(query) if read_only else body
            if not isinstance(args, dict):
                self._error(400, "PGRST102", "Empty or invalid json")
                return
            self._rpc(path[len(_RPC):], args, *auth, read_only=read_only)
        elif path.startswith(_REST) and "/" not in path[len(_REST):] and path != _REST:
            self._table(path[len(_REST):], dict(query), body, *auth)
        else:
            self._error(404, "PGRST125", f"Invalid path specified in request URL: {path}")

    def _authorize(self) -> tuple[str, dict[str, Any]] | None:
        """The JWT's role and claims; None when the request was answered with 401."""
        if not self.headers.get("apikey"):
            self._error(401, "", "No API key found in request")
            return None
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip() \
            or self.headers["apikey"]
        claims = _claims(token)
        if claims is None:
            self._error(401, "PGRST301", "JWSError JWSInvalidSignature")
            return None
        return str(claims.get("role") or "anon"), claims

    def _rpc(self, name: str, args: dict[str, Any], role: str, claims: dict[str, Any], *,
             read_only: bool) -> None:
        with psycopg.connect(self.server.dsn, autocommit=True) as db:
            types = _signature(db, name, sorted(args))
            if types is None:
                self._error(404, "PGRST202", f"Could not find the function public.{name}"
                            f"({', '.join(sorted(args))}) in the schema cache",
                            hint="If a new function was created in the database with this "
                            "name and parameters, try reloading the schema cache.")
                return
            self._call(db, name, args, types, role, claims, read_only)

    def _call(self, db: psycopg.Connection[Any], name: str, args: dict[str, Any],
              types: dict[str, str], role: str, claims: dict[str, Any],
              read_only: bool) -> None:
        call = sql.SQL("SELECT public.{}({})::text AS result, {} AS returns").format(
            sql.Identifier(name),
            sql.SQL(", ").join(sql.SQL("{} => %s::{}").format(
                sql.Identifier(arg), sql.SQL(types[arg])) for arg in sorted(args)),
            sql.Literal(types["$returns"]))
        values = [a if isinstance(a, str) else json.dumps(a) for _, a in sorted(args.items())]
        try:
            with _request_transaction(db, role, claims, read_only):
                row = db.execute(call, values).fetchone()
        except psycopg.Error as exc:
            self._db_error(exc, role)
            return
        self._hold_if_slow()
        assert row is not None
        if row[1] == "void":
            self.send_response(204)
            self.end_headers()
            return
        self._send(200, (row[0] if row[0] is not None else "null").encode())

    def _table(self, name: str, query: dict[str, str], body: Any, role: str,
               claims: dict[str, Any]) -> None:
        insert = body is not None
        allowed = {"columns"} if insert else {"select"}
        prefer = [p.strip() for p in (self.headers.get("Prefer") or "").split(",") if p.strip()]
        if set(query) - allowed or set(prefer) - {"return=representation", "return=minimal"}:
            self._error(400, "STANDIN", f"not reproduced by the PostgREST stand-in: {query} "
                        f"Prefer {prefer}")
            return
        with psycopg.connect(self.server.dsn, autocommit=True) as db:
            if db.execute("SELECT pg_catalog.to_regclass(%s)",
                          (f'public."{name}"',)).fetchone() in (None, (None,)):
                self._error(404, "PGRST205", f"Could not find the table 'public.{name}' in the "
                            "schema cache")
                return
            table = sql.Identifier("public", name)
            try:
                with _request_transaction(db, role, claims, not insert):
                    if insert:
                        rows = _insert(db, table, body, query.get("columns"))
                    else:
                        rows = _select(db, table, query.get("select", "*"))
            except (psycopg.Error, ValueError) as exc:
                if isinstance(exc, ValueError):
                    self._error(400, "PGRST100", str(exc))
                else:
                    self._db_error(exc, role)
                return
        self._hold_if_slow()
        if insert and "return=representation" not in prefer:
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(201 if insert else 200, json.dumps(rows).encode())

    def _hold_if_slow(self) -> None:
        """The test-only switch: the request has committed; its answer comes too late."""
        marker = self.server.slow_after_commit
        if marker and marker.encode() in getattr(self, "_raw_body", b""):
            time.sleep(self.server.slow_seconds)

    def _db_error(self, exc: psycopg.Error, role: str) -> None:
        diag = exc.diag
        code = diag.sqlstate or "XX000"
        self._error(status_of(code, role != "anon"), code, diag.message_primary or str(exc),
                    details=diag.message_detail, hint=diag.message_hint)

    def _error(self, status: int, code: str, message: str, *, details: str | None = None,
               hint: str | None = None) -> None:
        body = {"code": code, "message": message, "details": details, "hint": hint}
        self._send(status, json.dumps(body).encode())

    def _send(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up waiting (slow_after_commit)


@contextmanager
def _request_transaction(db: psycopg.Connection[Any], role: str, claims: dict[str, Any],
                         read_only: bool) -> Iterator[None]:
    """One request's transaction: read-only for GET, the JWT's role and claims set local."""
    with db.transaction():
        if read_only:
            db.execute("SET TRANSACTION READ ONLY")
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        db.execute("SELECT pg_catalog.set_config('request.jwt.claims', %s, true)",
                   (json.dumps(claims),))
        yield


def _select(db: psycopg.Connection[Any], table: sql.Identifier, select: str
            ) -> list[Any]:
    columns = [c.strip() for c in select.split(",")]
    if columns == ["*"]:
        chosen: sql.Composable = sql.SQL("*")
    elif all(c.isidentifier() for c in columns):
        chosen = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    else:
        raise ValueError(f"select={select}: only * or plain column names are reproduced")
    query = sql.SQL("SELECT coalesce(pg_catalog.json_agg(r), '[]') FROM (SELECT {} FROM {}) r"
                    ).format(chosen, table)
    row = db.execute(query).fetchone()
    return list(row[0]) if row else []


def _insert(db: psycopg.Connection[Any], table: sql.Identifier, body: Any,
            columns: str | None) -> list[Any]:
    rows = body if isinstance(body, list) else [body]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise ValueError("the body must be a JSON object or an array of objects")
    names = [c.strip().strip('"') for c in columns.split(",")] if columns else list(rows[0])
    if not names or any(set(r) != set(names) for r in rows if not columns):
        raise ValueError("All object keys must match")
    query = sql.SQL(
        "WITH inserted AS (INSERT INTO {table} ({cols}) SELECT {cols} FROM "
        "pg_catalog.json_populate_recordset(NULL::{table}, %s) RETURNING *) "
        "SELECT coalesce(pg_catalog.json_agg(inserted), '[]') FROM inserted").format(
        table=table, cols=sql.SQL(", ").join(sql.Identifier(n) for n in names))
    row = db.execute(query, (json.dumps(rows),)).fetchone()
    return list(row[0]) if row else []


def _signature(db: psycopg.Connection[Any], name: str, args: list[str]
               ) -> dict[str, str] | None:
    """The argument types of ``public.<name>`` taking exactly ``args``, by name."""
    rows = db.execute(
        "SELECT p.proargnames, pg_catalog.oidvectortypes(p.proargtypes), "
        "pg_catalog.format_type(p.prorettype, NULL) FROM pg_catalog.pg_proc p "
        "WHERE p.pronamespace = 'public'::regnamespace AND p.proname = %s", (name,)).fetchall()
    for names, types, returns in rows:
        names = list(names or [])
        if sorted(names) == args:
            found = dict(zip(names, [t.strip() for t in types.split(",")] if types else [],
                             strict=True))
            found["$returns"] = returns
            return found
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, dsn: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dsn = dsn
        self.requests: list[tuple[str, str]] = []
        self.slow_after_commit: str | None = None  # the test-only switch (module docstring)
        self.slow_seconds = 0.0


@contextmanager
def serving(dsn: str) -> Iterator[_Server]:
    """The stand-in on a free loopback port for ``dsn``; ``server.url`` is the project URL."""
    server = _Server(dsn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def project_url(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"
