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

Nothing else: no tables (``/rest/v1/<table>``), no Prefer headers, no schema switching.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import sql

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
        url = urlsplit(self.path)
        self._rpc(url.path, dict(parse_qsl(url.query)), read_only=True)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._error(400, "PGRST102", "Empty or invalid json")
            return
        self._rpc(urlsplit(self.path).path, body, read_only=False)

    def _rpc(self, path: str, args: dict[str, Any], *, read_only: bool) -> None:
        self.server.requests.append((self.command, path))
        if not self.headers.get("apikey"):
            self._error(401, "", "No API key found in request")
            return
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip() \
            or self.headers["apikey"]
        claims = _claims(token)
        if claims is None:
            self._error(401, "PGRST301", "JWSError JWSInvalidSignature")
            return
        role = str(claims.get("role") or "anon")
        prefix = "/rest/v1/rpc/"
        if not path.startswith(prefix):
            self._error(404, "PGRST125", f"Invalid path specified in request URL: {path}")
            return
        name = path[len(prefix):]
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
            with db.transaction():
                if read_only:
                    db.execute("SET TRANSACTION READ ONLY")
                db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                db.execute("SELECT pg_catalog.set_config('request.jwt.claims', %s, true)",
                           (json.dumps(claims),))
                row = db.execute(call, values).fetchone()
        except psycopg.Error as exc:
            diag = exc.diag
            code = diag.sqlstate or "XX000"
            self._error(status_of(code, role != "anon"), code, diag.message_primary or str(exc),
                        details=diag.message_detail, hint=diag.message_hint)
            return
        assert row is not None
        if row[1] == "void":
            self.send_response(204)
            self.end_headers()
            return
        self._send(200, (row[0] if row[0] is not None else "null").encode())

    def _error(self, status: int, code: str, message: str, *, details: str | None = None,
               hint: str | None = None) -> None:
        body = {"code": code, "message": message, "details": details, "hint": hint}
        self._send(status, json.dumps(body).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
