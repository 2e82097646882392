"""Read-only PostgreSQL access through libpq directly, for the paths that only look.

``status``, ``history`` and the planning step of ``apply``/``rollback`` read one small
table. Importing psycopg costs ~150 ms, more than the whole budget of a no-op ``apply``
that CI runs on every deploy, while libpq itself loads in a few milliseconds. So those
reads use the very libpq psycopg-binary ships (or the system's), through ctypes, and
psycopg is imported only when something is to be written. Connection options, TLS and
error texts are libpq's in both cases. If no libpq can be loaded, the caller falls back
to the psycopg backend.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from cryomigrate.backends import ConnectOptions, pgtext
from cryomigrate.backends.base import Params, QueryError, QueryResult, Script, Transaction
from cryomigrate.backends.pgtext import bind, one_line
from cryomigrate.errors import ConfigError, ConnectionFailed, DatabaseError
from cryomigrate.redact import redact

_CONNECTION_OK = 0
_TUPLES_OK, _COMMAND_OK = 2, 1
_INTEGER_OIDS = {20, 21, 23}  # int8, int2, int4
_BOOL_OID = 16


def _find_library() -> str | None:
    spec = importlib.util.find_spec("psycopg_binary")
    if spec is not None and spec.origin:
        libs = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "psycopg_binary.libs")
        bundled = sorted(glob.glob(os.path.join(libs, "libpq-*.so*")))
        if bundled:
            return bundled[0]
    return ctypes.util.find_library("pq")


def _load() -> Any:
    path = _find_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    p, c, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for name, restype, argtypes in (
        ("PQconnectdbParams", p, [ctypes.POINTER(c), ctypes.POINTER(c), i]),
        ("PQstatus", i, [p]), ("PQerrorMessage", c, [p]), ("PQfinish", None, [p]),
        ("PQhost", c, [p]), ("PQport", c, [p]), ("PQdb", c, [p]), ("PQuser", c, [p]),
        ("PQexec", p, [p, c]), ("PQresultStatus", i, [p]), ("PQresultErrorMessage", c, [p]),
        ("PQntuples", i, [p]), ("PQnfields", i, [p]), ("PQfname", c, [p, i]),
        ("PQftype", ctypes.c_uint, [p, i]), ("PQgetvalue", c, [p, i, i]),
        ("PQgetisnull", i, [p, i, i]), ("PQcmdTuples", c, [p]), ("PQclear", None, [p]),
        ("PQconninfoParse", p, [c, ctypes.POINTER(p)]), ("PQconninfoFree", None, [p]),
        ("PQfreemem", None, [p]),
    ):
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


_LIB: Any = None


def available() -> bool:
    global _LIB
    if _LIB is None:
        _LIB = _load() or False
    return bool(_LIB)


class LibpqReader:
    """A read-only backend: queries, no transactions, no scripts."""

    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, conn: int) -> None:
        self._conn = conn
        lib = _LIB
        self.display_url = (f"postgresql://{_text(lib.PQuser(conn))}@{_text(lib.PQhost(conn))}:"
                            f"{_text(lib.PQport(conn))}/{_text(lib.PQdb(conn))}")

    @classmethod
    def connect(cls, url: str, options: ConnectOptions) -> LibpqReader:
        _check_url(url)
        # Defaults first: the URL's own settings override them; UTF-8 is always wanted.
        pairs = [("application_name", "cryomigrate"), ("connect_timeout", "10"),
                 ("dbname", url), ("client_encoding", "UTF8")]
        keys = (ctypes.c_char_p * (len(pairs) + 1))(*[k.encode() for k, _ in pairs], None)
        values = (ctypes.c_char_p * (len(pairs) + 1))(*[v.encode() for _, v in pairs], None)
        conn = _LIB.PQconnectdbParams(keys, values, 1)
        if not conn:
            raise ConnectionFailed("cannot connect to PostgreSQL: out of memory")
        if _LIB.PQstatus(conn) != _CONNECTION_OK:
            where = (f"host {_text(_LIB.PQhost(conn))}, port {_text(_LIB.PQport(conn))}, "
                     f"database {_text(_LIB.PQdb(conn))}, user {_text(_LIB.PQuser(conn))}")
            message = one_line(_text(_LIB.PQerrorMessage(conn)))
            _LIB.PQfinish(conn)
            raise ConnectionFailed(f"cannot connect to PostgreSQL at {where}: {message}")
        return cls(conn)

    def query(self, sql: str, params: Params = None) -> QueryResult:
        if params is not None:
            sql = bind(sql, params)
        if sql.lstrip()[:6].upper() == "SELECT":
            # The server hands back all rows as one JSON value: one ctypes call instead of
            # two per value (a thousand history rows cost ~30 ms the other way).
            rows = self._rows_of(f"SELECT coalesce(json_agg(q), '[]') AS rows FROM ({sql}) q")
            data = json.loads(rows[0]["rows"])
            return QueryResult(data, len(data))
        res = _LIB.PQexec(self._conn, sql.encode())
        try:
            status = _LIB.PQresultStatus(res)
            if status not in (_TUPLES_OK, _COMMAND_OK):
                raise QueryError(one_line(_text(_LIB.PQresultErrorMessage(res))
                                            or _text(_LIB.PQerrorMessage(self._conn))))
            return QueryResult(list(_rows(res)), int(_text(_LIB.PQcmdTuples(res)) or -1))
        finally:
            _LIB.PQclear(res)

    def _rows_of(self, sql: str) -> list[dict[str, Any]]:
        res = _LIB.PQexec(self._conn, sql.encode())
        try:
            if _LIB.PQresultStatus(res) != _TUPLES_OK:
                raise QueryError(one_line(_text(_LIB.PQresultErrorMessage(res))
                                          or _text(_LIB.PQerrorMessage(self._conn))))
            return list(_rows(res))
        finally:
            _LIB.PQclear(res)

    def run_script(self, script: Script) -> QueryResult:
        raise DatabaseError("internal: a read-only connection cannot run migrations")

    def transaction(self, *, lock: bool = True, first: tuple[str, Params] | None = None
                    ) -> AbstractContextManager[Transaction]:
        raise DatabaseError("internal: a read-only connection cannot open transactions")

    def table_exists(self, table: str) -> bool:
        return bool(self.query(*pgtext.table_exists(table)).data[0]["found"])

    def quote_table(self, table: str) -> str:
        return pgtext.quote_table(table)

    def ensure_schema(self, table: str) -> None:
        raise DatabaseError("internal: a read-only connection cannot create schemas")

    def close(self) -> None:
        if self._conn:
            _LIB.PQfinish(self._conn)
            self._conn = 0


def _check_url(url: str) -> None:
    """A URL libpq cannot parse is bad input (exit 2), not an unreachable server."""
    error = ctypes.c_void_p()
    parsed = _LIB.PQconninfoParse(url.encode(), ctypes.byref(error))
    if parsed:
        _LIB.PQconninfoFree(parsed)
        return
    message = ctypes.string_at(error.value).decode("utf-8", "replace") if error.value else ""
    if error.value:
        _LIB.PQfreemem(error)
    raise ConfigError(f"invalid PostgreSQL URL {redact(url)}: {one_line(message)}")


def _rows(res: int) -> Iterator[dict[str, Any]]:
    lib = _LIB
    get, isnull = lib.PQgetvalue, lib.PQgetisnull
    fields = range(lib.PQnfields(res))
    names = [_text(lib.PQfname(res, f)) for f in fields]
    types = [lib.PQftype(res, f) for f in fields]
    for row in range(lib.PQntuples(res)):
        values: dict[str, Any] = {}
        for f in fields:
            raw = get(res, row, f)
            # NULL reads as b"" too; only then is the extra isnull call needed.
            if not raw and isnull(res, row, f):
                values[names[f]] = None
            elif types[f] in _INTEGER_OIDS:
                values[names[f]] = int(raw)
            elif types[f] == _BOOL_OID:
                values[names[f]] = raw == b"t"
            else:
                values[names[f]] = raw.decode("utf-8", "replace")
        yield values


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""
