"""PostgreSQL (and Supabase) over libpq, with psycopg 3's adapters for rich values.

Safe behind a transaction pooler (pgbouncer, Supavisor): the run lock is a
transaction-scoped advisory lock, timeouts are ``SET LOCAL``, and only the simple-query
protocol is used (no prepared statements), so no session state outlives a transaction.
Transactions are opened explicitly, so a non-transactional migration really runs with no
transaction (and no lock) held open.

A script is sent as one simple-query message, one round trip however many statements it
has; when it fails, the results that came back before the error tell which statement
failed, and so the line of the file to report.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timezone, tzinfo
from typing import Any

from cryomigrate.backends import ConnectOptions, pgtext
from cryomigrate.backends.base import (
    Elapsed,
    Params,
    QueryError,
    QueryResult,
    Script,
    Transaction,
)
from cryomigrate.backends.libpq import (
    DETAIL,
    HINT,
    POSITION,
    PRIMARY,
    SQLSTATE,
    TUPLES_OK,
    Connection,
    Result,
)
from cryomigrate.backends.pgtext import bind, literal, one_line
from cryomigrate.errors import LockTimeout

_LOCK_NOT_AVAILABLE = "55P03"
_ACTIVE_SQL_TRANSACTION = "25001"
_SYNTAX_ERROR = "42601"
# Between a deferred script and the rows sent after it: a newline first, for a script that
# ends in a -- comment.
_AFTER_SCRIPT = "\n;\n"
# Column types read without psycopg: integers (int2, int4, int8, oid), bool, and text-like
# types (text, varchar, char, name). Anything else is loaded by psycopg's own loaders.
_INTS, _BOOL, _TEXTS = frozenset({20, 21, 23, 26}), 16, frozenset({25, 1043, 1042, 19})
_TIMESTAMPTZ = 1184


class PostgresBackend:
    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, connection: Connection, options: ConnectOptions) -> None:
        self._db = connection
        self._options = options
        self.display_url = connection.display_url()
        digest = hashlib.sha256(f"cryomigrate:{options.lock_name}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)

    @classmethod
    def connect(cls, url: str, options: ConnectOptions) -> PostgresBackend:
        return cls(Connection.open(url), options)

    def query(self, sql: str, params: Params = None) -> QueryResult:
        results = self._db.execute(_inline(sql, params))
        if results and results[-1].failed:
            raise _failure(self._db, results[-1], None)
        return _to_result(results[-1], self._db) if results else QueryResult()

    def run_script(self, script: Script) -> QueryResult:
        if self._db.idle:
            # Outside a transaction (a no-transaction migration): statement by statement,
            # because a multi-statement message is itself an implicit transaction block.
            result = QueryResult()
            for index, statement in enumerate(script.statements):
                result = self._send(statement, script, index)
            return result
        return self._send(script.text, script, 0)

    def _send(self, text: str, script: Script, first_index: int) -> QueryResult:
        results = self._db.execute(text)
        if results and results[-1].failed:
            res = results[-1]
            if res.error(SQLSTATE) is None:  # no answer from the server: connection trouble
                raise _failure(self._db, res, f"{script.origin} line "
                               f"{script.file_line(first_index)}")
            statement = min(first_index + len(results) - 1, len(script.statements) - 1)
            raise _result_error(res, script, statement, text)
        return _to_result(results[-1], self._db) if results else QueryResult()

    @contextmanager
    def transaction(self, *, lock: bool = True, first: tuple[str, Params] | None = None
                    ) -> Iterator[Transaction]:
        tx = Transaction(self._begin(lock, first))
        try:
            yield tx
        except BaseException:
            self._rollback()
            raise
        checked = any(check is not None for _, _, check in tx.deferred)
        try:
            statements = [_inline(sql, params) for sql, params, _ in tx.deferred]
            # Writes whose result must be checked are checked before COMMIT, so a failed
            # check still rolls back; unchecked writes ride along with the COMMIT itself.
            results = self._finish(tx.script, statements if checked else [*statements, "COMMIT"])
            for (_, _, check), result in zip(tx.deferred, results, strict=False):
                if check is not None:
                    check(_to_result(result))
            if checked:
                self._batch(["COMMIT"], "COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _finish(self, script: Script | None, statements: list[str]) -> list[Result]:
        """The deferred script and writes in one message; the writes' results."""
        if script is None:
            return self._batch(statements, "COMMIT")
        tail = _AFTER_SCRIPT + "; ".join(statements)
        results = self._db.execute(script.text + tail)
        written = len(results) - len(statements)
        failed = results[-1] if results and results[-1].failed else None
        if failed is None:
            return results[written:]
        sqlstate = failed.error(SQLSTATE)
        if sqlstate is None:  # no answer from the server: connection trouble
            raise _failure(self._db, failed, f"{script.origin} (sent with its history row: "
                           "both were committed or neither; `cryomigrate status` tells which)")
        position = failed.error(POSITION)
        if position and position.isdigit():
            # cryomigrate's own writes always parse: a syntax error past the script is the
            # script's, which never finished its last statement, string or comment.
            in_script = int(position) <= len(script.text) or sqlstate == _SYNTAX_ERROR
        else:
            in_script = len(results) <= len(script.statements)
        if in_script:
            raise _result_error(failed, script, len(results) - 1, script.text)
        raise _failure(self._db, failed, "COMMIT")

    def _batch(self, statements: list[str], where: str | None) -> list[Result]:
        """Several statements in one simple-query message: one round trip."""
        results = self._db.execute("; ".join(statements))
        if results and results[-1].failed:
            raise _failure(self._db, results[-1], where)
        return results

    def _begin(self, lock: bool, first: tuple[str, Params] | None) -> QueryResult:
        opts = self._options
        parts = ["BEGIN"]
        if lock:
            wait = max(1, opts.lock_wait_ms)
            # The wait is bounded by --lock-wait alone: a statement_timeout set on the
            # role or database (common on Supabase) must not cut it short.
            parts += [f"SET LOCAL lock_timeout = '{wait}ms'", "SET LOCAL statement_timeout = 0",
                      f"SELECT pg_advisory_xact_lock({self._lock_key})"]
            parts.append(_set_local("lock_timeout", opts.lock_timeout_ms))
            parts.append(_set_local("statement_timeout", opts.statement_timeout_ms))
        if first is not None:
            parts.append(_inline(*first))
        try:
            results = self._batch(parts, None)
        except QueryError as exc:
            self._rollback()
            if exc.sqlstate == _LOCK_NOT_AVAILABLE:
                raise LockTimeout.waited(
                    f"another cryomigrate run holds the lock on {self.display_url}",
                    opts.lock_wait_ms) from None
            raise
        except BaseException:  # Ctrl-C while waiting for the lock
            self._rollback()
            raise
        return _to_result(results[-1]) if first is not None else QueryResult()

    def _rollback(self) -> None:
        # If the connection is gone, the server has rolled back for us.
        if not self._db.idle and not self._db.broken:
            self._db.execute("ROLLBACK")

    def table_exists(self, table: str) -> bool:
        return bool(self.query(*pgtext.table_exists(table)).data[0]["found"])

    def quote_table(self, table: str) -> str:
        return pgtext.quote_table(table)

    def ensure_schema(self, table: str) -> None:
        if "." in table:
            schema = table.split(".", 1)[0]
            self.query(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    def close(self) -> None:
        self._db.close()


def _inline(sql: str, params: Params) -> str:
    """``sql`` with ``params`` bound client-side, so several statements go in one message."""
    return sql if params is None else bind(sql, params, _render)


def _render(value: Any) -> str:
    """cryomigrate's own rows hold only ints and strings, quoted here; other values (dates,
    UUIDs, decimals, JSON from a Python migration) are rendered by psycopg's adapters."""
    if value is None or type(value) in (int, str) or isinstance(value, Elapsed):
        return literal(value)
    from psycopg.sql import Literal

    return Literal(value).as_bytes(None).decode()


def _to_result(res: Result, db: Connection | None = None) -> QueryResult:
    if res.status != TUPLES_OK:
        return QueryResult([], res.command_tuples if res.command_tuples is not None else -1)
    names, load = res.names, _loader(res.types, db)
    return QueryResult([dict(zip(names, load(row), strict=False)) for row in res.rows],
                       len(res.rows))


Row = Sequence[bytes | None]


def _loader(types: list[int], db: Connection | None) -> Callable[[Row], Sequence[Any]]:
    """Turn a row of text values into Python values by column type."""
    if all(t in _INTS or t in _TEXTS or t == _BOOL for t in types):
        def plain(row: Row) -> list[Any]:
            return [None if raw is None else int(raw) if t in _INTS else raw == b"t"
                    if t == _BOOL else raw.decode() for t, raw in zip(types, row, strict=False)]
        return plain
    from psycopg.adapt import Transformer
    from psycopg.pq import Format

    transformer = Transformer()
    transformer.set_loader_types(types, Format.TEXT)
    zoned = [i for i, t in enumerate(types) if t == _TIMESTAMPTZ]
    if not zoned or db is None:
        return transformer.load_sequence
    # Without a connection psycopg gives timestamptz values in UTC; with one, in the
    # session's TimeZone, which is what .date() or .hour in a data migration expects.
    zone = _zone(db.parameter("TimeZone"))

    def in_session_zone(row: Row) -> list[Any]:
        values = list(transformer.load_sequence(row))
        for i in zoned:
            with contextlib.suppress(AttributeError, OverflowError):
                values[i] = values[i].astimezone(zone)
        return values
    return in_session_zone


def _zone(name: str | None) -> tzinfo:
    from zoneinfo import ZoneInfo

    try:
        return ZoneInfo(name) if name else timezone.utc
    except (KeyError, ValueError, OSError):  # a POSIX offset such as <+03>-03, as psycopg
        return timezone.utc


def _set_local(name: str, ms: int | None) -> str:
    return f"SET LOCAL {name} TO DEFAULT" if ms is None else f"SET LOCAL {name} = '{ms}ms'"


def _failure(db: Connection, res: Result, where: str | None) -> QueryError:
    sqlstate = res.error(SQLSTATE)
    message = _compose(sqlstate, res.error(PRIMARY) or one_line(res.error(0) or "error"),
                       res.error(DETAIL), res.error(HINT))
    if sqlstate is None and db.broken:
        message = f"lost the connection to the server: {one_line(res.error(0) or 'no reply')}"
    return QueryError(f"{where}: {message}" if where else message, sqlstate=sqlstate)


def _result_error(res: Result, script: Script, index: int, sent: str) -> QueryError:
    sqlstate = res.error(SQLSTATE)
    position = res.error(POSITION)
    offset = int(position) - 1 if position and position.isdigit() else None
    primary = res.error(PRIMARY) or "error"
    if _AFTER_SCRIPT in primary:  # "at or near" quoting the rest of the message
        primary = " ".join(primary[:primary.index(_AFTER_SCRIPT)].split()) + '..."'
    if offset is not None and offset >= len(sent.rstrip()):
        offset = max(0, len(sent.rstrip()) - 1)
        primary = (primary.split(" at or near ")[0] + " at the end of the script: it ends "
                   "inside an unfinished statement, string, quoted identifier or comment")
    if offset is not None and sent is script.text:
        index = script.index_at(offset)  # the server's position is the surest guide
    line = script.file_line(index) if script.statements else script.first_line
    where = f"line {line}"
    if offset is not None:
        # The statement starts at ``line``; the server also says where in it it failed.
        start = script.first_line if sent is script.text else line
        error_line = start + sent[:offset].count("\n")
        if error_line != line:
            where += f" (error at line {error_line})"
    message = _compose(sqlstate, primary, res.error(DETAIL), res.error(HINT))
    return QueryError(f"{script.origin} {where}: {message}", sqlstate=sqlstate, line=line)


def _compose(sqlstate: str | None, primary: str, detail: str | None, hint: str | None) -> str:
    text = f"{primary} (SQLSTATE {sqlstate})" if sqlstate else primary
    if detail:
        text += f"; DETAIL: {detail}"
    if hint:
        text += f"; HINT: {hint}"
    if sqlstate == _ACTIVE_SQL_TRANSACTION:
        text += ("; this statement cannot run inside a transaction: mark the migration "
                 "non-transactional with a `-- cryomigrate:no-transaction` line at the top "
                 "(SQL) or `transactional = False` (Python)")
    return text
