"""libpq through ctypes: a PostgreSQL connection without importing psycopg.

Importing psycopg costs ~70 ms (its C extension, hundreds of exception classes, asyncio):
as much as the whole of a no-op ``apply`` should, and a third of a 200-migration deploy's
overhead. libpq itself loads in a few milliseconds. So cryomigrate drives the libpq that
psycopg-binary ships (or the system's) directly, and asks psycopg only to adapt values of
types other than text, integers and booleans (see postgres.py). Connection options, TLS,
pooler behaviour and error texts are libpq's own, exactly as under psycopg.

This module is the wire only: connect, send one simple-query message, collect every
result it produced. What the results mean is postgres.py's business.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from cryomigrate.backends.pgtext import one_line
from cryomigrate.errors import ConfigError, ConnectionFailed
from cryomigrate.redact import redact

_CONNECTION_OK = 0
TUPLES_OK, _BAD_RESPONSE, FATAL_ERROR = 2, 5, 7
_COPY_OUT, _COPY_IN, _COPY_BOTH = 3, 4, 8
_IDLE, _UNKNOWN = 0, 4
# PQresultErrorField codes, the one-letter field names of the protocol.
SQLSTATE, PRIMARY, DETAIL, HINT, POSITION = (ord(c) for c in "CMDHP")

_NoticeProcessor = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)
# Server notices ("relation ... already exists, skipping") are not for the user's terminal,
# where libpq's default processor would print them; dropped, as psycopg drops them.
_IGNORE_NOTICE = _NoticeProcessor(lambda arg, message: None)


def _find_library() -> str | None:
    spec = importlib.util.find_spec("psycopg_binary")
    if spec is not None and spec.origin:
        package = os.path.dirname(spec.origin)
        # Where the wheels bundle it: Linux (auditwheel), macOS (delocate). Not Windows:
        # waiting uses poll(), which Windows lacks.
        for pattern in (os.path.join(package + ".libs", "libpq-*.so*"),
                        os.path.join(package, ".dylibs", "libpq*.dylib")):
            bundled = sorted(glob.glob(pattern))
            if bundled:
                return bundled[0]
    import ctypes.util  # slow (it may run ldconfig); only without psycopg-binary

    return ctypes.util.find_library("pq")


def _load() -> Any:
    path = _find_library()
    if path is None:
        raise ConnectionFailed("cannot load libpq: install psycopg[binary] (or libpq5)")
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise ConnectionFailed(f"cannot load libpq from {path}: {exc}") from None
    p, c, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for name, restype, argtypes in (
        ("PQconnectdbParams", p, [ctypes.POINTER(c), ctypes.POINTER(c), i]),
        ("PQstatus", i, [p]), ("PQerrorMessage", c, [p]), ("PQfinish", None, [p]),
        ("PQhost", c, [p]), ("PQport", c, [p]), ("PQdb", c, [p]), ("PQuser", c, [p]),
        ("PQsendQuery", i, [p, c]), ("PQgetResult", p, [p]), ("PQconsumeInput", i, [p]),
        ("PQisBusy", i, [p]), ("PQsocket", i, [p]), ("PQtransactionStatus", i, [p]),
        ("PQresultStatus", i, [p]), ("PQresultErrorMessage", c, [p]),
        ("PQresultErrorField", c, [p, i]), ("PQntuples", i, [p]), ("PQnfields", i, [p]),
        ("PQfname", c, [p, i]), ("PQftype", ctypes.c_uint, [p, i]),
        ("PQgetvalue", c, [p, i, i]), ("PQgetisnull", i, [p, i, i]), ("PQcmdTuples", c, [p]),
        ("PQclear", None, [p]), ("PQconninfoParse", p, [c, ctypes.POINTER(p)]),
        ("PQconninfoFree", None, [p]), ("PQfreemem", None, [p]), ("PQgetCancel", p, [p]),
        ("PQcancel", i, [p, c, i]), ("PQfreeCancel", None, [p]),
        ("PQsetNoticeProcessor", p, [p, _NoticeProcessor, p]),
        ("PQparameterStatus", c, [p, c]), ("PQputCopyEnd", i, [p, c]),
        ("PQgetCopyData", i, [p, ctypes.POINTER(p), i]),
    ):
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


_LIB: Any = None


def _lib() -> Any:
    global _LIB
    if _LIB is None:
        _LIB = _load()
    return _LIB


class Result:
    """One statement's outcome, copied out of libpq's PGresult (which is freed at once)."""

    __slots__ = ("_errors", "command_tuples", "names", "rows", "status", "types")

    def __init__(self, res: int) -> None:
        lib = _LIB
        self.status: int = lib.PQresultStatus(res)
        self.names: list[str] = []
        self.types: list[int] = []
        self.rows: list[list[bytes | None]] = []
        self._errors: dict[int, str | None] = {}
        tuples = lib.PQcmdTuples(res)
        self.command_tuples = int(tuples) if tuples else None
        if self.status == TUPLES_OK:
            fields = range(lib.PQnfields(res))
            self.names = [_text(lib.PQfname(res, f)) for f in fields]
            self.types = [lib.PQftype(res, f) for f in fields]
            get, isnull = lib.PQgetvalue, lib.PQgetisnull
            # NULL reads as b"" too; only then is the isnull call needed.
            self.rows = [[get(res, r, f) or (None if isnull(res, r, f) else b"")
                          for f in fields] for r in range(lib.PQntuples(res))]
        elif self.status in (FATAL_ERROR, _BAD_RESPONSE):
            self.status = FATAL_ERROR  # a reply libpq could not understand fails the same way
            self._errors = {code: _text(lib.PQresultErrorField(res, code)) or None
                            for code in (SQLSTATE, PRIMARY, DETAIL, HINT, POSITION)}
            self._errors[0] = _text(lib.PQresultErrorMessage(res))

    @property
    def failed(self) -> bool:
        return self.status == FATAL_ERROR

    def error(self, code: int) -> str | None:
        """An error field (SQLSTATE, PRIMARY, ...); 0 is libpq's whole message."""
        return self._errors.get(code)

    @classmethod
    def local(cls, message: str) -> Result:
        """A failure with no result from the server: a broken connection, or SQL that
        cannot be sent."""
        result = cls.__new__(cls)
        result.status, result.names, result.types, result.rows = FATAL_ERROR, [], [], []
        result.command_tuples = None
        result._errors = {0: message, PRIMARY: one_line(message)}
        return result


class Connection:
    def __init__(self, conn: int) -> None:
        self._conn = conn

    @classmethod
    def open(cls, url: str) -> Connection:
        lib = _lib()
        _check_url(lib, url)
        # Defaults first: the URL's own settings override them. UTF-8 comes last because
        # scripts and history rows are sent as UTF-8 bytes whatever the URL says.
        pairs = [("application_name", "cryomigrate"), ("connect_timeout", "10"),
                 ("dbname", url), ("client_encoding", "UTF8")]
        keys = (ctypes.c_char_p * (len(pairs) + 1))(*[k.encode() for k, _ in pairs], None)
        values = (ctypes.c_char_p * (len(pairs) + 1))(*[v.encode() for _, v in pairs], None)
        conn = _interruptible(lambda: lib.PQconnectdbParams(keys, values, 1))
        if not conn:
            raise ConnectionFailed("cannot connect to PostgreSQL: out of memory")
        if lib.PQstatus(conn) != _CONNECTION_OK:
            host, port, dbname, user = _endpoint(conn)
            where = f"host {host}, port {port}, database {dbname}, user {user}"
            message = one_line(_text(lib.PQerrorMessage(conn)))
            lib.PQfinish(conn)
            raise ConnectionFailed(f"cannot connect to PostgreSQL at {where}: {message}")
        lib.PQsetNoticeProcessor(conn, _IGNORE_NOTICE, None)
        return cls(conn)

    def display_url(self) -> str:
        host, port, dbname, user = _endpoint(self._conn)
        return f"postgresql://{user}@{host}:{port}/{dbname}"

    def execute(self, sql: str) -> list[Result]:
        """Send ``sql`` (any number of statements) as one message; its results, in order.

        The server stops at the first failing statement, so a failure is the last result
        (what libpq adds after it, such as "server closed the connection", is dropped).
        Waiting happens in ``poll``, where Ctrl-C is delivered: it cancels the statement
        on the server before it propagates.
        """
        lib, conn = _LIB, self._conn
        if not conn:
            return [Result.local("the connection is closed")]
        if "\x00" in sql:
            return [Result.local("the SQL holds a NUL character, which PostgreSQL cannot take")]
        if not lib.PQsendQuery(conn, sql.encode()):
            return [Result.local(_text(lib.PQerrorMessage(conn)))]
        results: list[Result] = []
        try:
            while (res := self._next()) is not None:
                try:
                    results.append(Result(res))
                finally:
                    lib.PQclear(res)
        except BaseException:
            self._cancel()
            raise
        for index, result in enumerate(results):
            if result.failed:
                return results[:index + 1]
        return results

    def _next(self) -> int | None:
        """The next PGresult once it has arrived, or None after the last.

        A migration has no client-side stream for COPY: COPY FROM STDIN is refused and
        COPY TO STDOUT drained, where libpq would otherwise hand out COPY results forever.
        """
        lib, conn = _LIB, self._conn
        poller = None
        while lib.PQisBusy(conn):
            if poller is None:
                poller = select.poll()  # not select(): it cannot watch descriptors >= 1024
                poller.register(lib.PQsocket(conn), select.POLLIN)
            poller.poll()
            if not lib.PQconsumeInput(conn):
                break  # the connection broke: PQgetResult reports it
        res: int | None = lib.PQgetResult(conn)
        if not res:
            return None
        status = lib.PQresultStatus(res)
        if status in (_COPY_IN, _COPY_BOTH):
            lib.PQclear(res)
            lib.PQputCopyEnd(conn, b"cryomigrate sends no COPY data; load rows with INSERT, "
                                   b"or COPY from a file the server can read")
            return self._next()
        if status == _COPY_OUT:
            lib.PQclear(res)
            buffer = ctypes.c_void_p()
            while lib.PQgetCopyData(conn, ctypes.byref(buffer), 0) > 0:
                lib.PQfreemem(buffer)
            return self._next()
        return res

    def _cancel(self) -> None:
        """Stop the running statement and drain its results, so the connection is usable."""
        lib, conn = _LIB, self._conn
        cancel = lib.PQgetCancel(conn)
        if cancel:
            lib.PQcancel(cancel, ctypes.create_string_buffer(256), 256)
            lib.PQfreeCancel(cancel)
        while (res := self._next()) is not None:
            lib.PQclear(res)

    def parameter(self, name: str) -> str | None:
        """A setting the server reports to every client (TimeZone, DateStyle, ...)."""
        value = _LIB.PQparameterStatus(self._conn, name.encode()) if self._conn else None
        return _text(value) or None

    @property
    def idle(self) -> bool:
        """Connected and outside any transaction."""
        return bool(self._conn) and _LIB.PQtransactionStatus(self._conn) == _IDLE

    @property
    def broken(self) -> bool:
        return not self._conn or _LIB.PQtransactionStatus(self._conn) == _UNKNOWN

    def close(self) -> None:
        if self._conn:
            _LIB.PQfinish(self._conn)
            self._conn = 0


def _interruptible(connect: Callable[[], int]) -> int:
    """Run a blocking connect in a thread, so Ctrl-C is not held up until connect_timeout
    (libpq's non-blocking connect would leave that timeout to us, per host)."""
    done: list[int] = []
    abandoned: list[bool] = []
    lock = threading.Lock()  # the connection is closed once, by whichever side is last

    def run() -> None:
        conn = connect()
        with lock:
            if not abandoned:
                done.append(conn)
            elif conn:
                _LIB.PQfinish(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        thread.join()  # interruptible: Ctrl-C is delivered here
    except BaseException:
        with lock:
            abandoned.append(True)
            if done and done[0]:
                _LIB.PQfinish(done[0])
        raise
    return done[0]


def _endpoint(conn: int) -> tuple[str, str, str, str]:
    """Host, port, database and user as libpq resolved them (never the password)."""
    lib = _LIB
    return (_text(lib.PQhost(conn)), _text(lib.PQport(conn)), _text(lib.PQdb(conn)),
            _text(lib.PQuser(conn)))


def _check_url(lib: Any, url: str) -> None:
    """A URL libpq cannot parse is bad input (exit 2), not an unreachable server."""
    error = ctypes.c_void_p()
    parsed = lib.PQconninfoParse(url.encode(), ctypes.byref(error))
    if parsed:
        lib.PQconninfoFree(parsed)
        return
    message = ctypes.string_at(error.value).decode("utf-8", "replace") if error.value else ""
    if error.value:
        lib.PQfreemem(error)
    raise ConfigError(f"invalid PostgreSQL URL {redact(url)}: {one_line(message)}")


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""
