"""PostgreSQL (and Supabase) through psycopg 3.

Safe behind a transaction pooler (pgbouncer, Supavisor): the run lock is a
transaction-scoped advisory lock, timeouts are ``SET LOCAL``, and prepared statements are
disabled, so no session state outlives a transaction. The connection is in autocommit
mode and transactions are opened explicitly, so a non-transactional migration really
runs with no transaction (and no lock) held open.

A script is sent as one simple-query message, one round trip however many statements it
has; when it fails, the results that came back before the error tell which statement
failed, and so the line of the file to report.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import generators, pq
from psycopg.adapt import Transformer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from cryomigrate.backends import ConnectOptions, pgtext
from cryomigrate.backends.base import Params, QueryError, QueryResult, Script, Transaction
from cryomigrate.backends.pgtext import bind, bindable, one_line
from cryomigrate.errors import ConfigError, ConnectionFailed, LockTimeout
from cryomigrate.redact import redact

_LOCK_NOT_AVAILABLE = "55P03"
_ACTIVE_SQL_TRANSACTION = "25001"
_F = pq.DiagnosticField


class PostgresBackend:
    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, connection: psycopg.Connection[Any], options: ConnectOptions,
                 display_url: str) -> None:
        self._db = connection
        self._options = options
        self.display_url = display_url
        digest = hashlib.sha256(f"cryomigrate:{options.lock_name}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)

    @classmethod
    def connect(cls, url: str, options: ConnectOptions) -> PostgresBackend:
        try:
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise ConfigError(f"invalid PostgreSQL URL {redact(url)}: {exc}") from None
        params.setdefault("application_name", "cryomigrate")
        # libpq waits forever by default; a deploy job should fail in seconds instead.
        params.setdefault("connect_timeout", 10)
        # Scripts and history rows are sent as UTF-8 bytes; the session must read them so.
        params["client_encoding"] = "UTF8"
        try:
            db = psycopg.connect(make_conninfo("", **params), autocommit=True,
                                 prepare_threshold=None)
        except psycopg.Error as exc:
            raise ConnectionFailed(
                f"cannot connect to PostgreSQL at {_describe(params)}: {one_line(str(exc))}"
            ) from None
        return cls(db, options, _display(params))

    def query(self, sql: str, params: Params = None) -> QueryResult:
        try:
            with self._db.cursor(row_factory=dict_row) as cursor:
                cursor.execute(sql, params)
                data = cursor.fetchall() if cursor.description else []
                return QueryResult(list(data), cursor.rowcount)
        except psycopg.Error as exc:
            raise _query_error(exc, None) from exc

    def run_script(self, script: Script) -> QueryResult:
        if self._db.info.transaction_status == pq.TransactionStatus.IDLE:
            # Outside a transaction (a no-transaction migration): statement by statement,
            # because a multi-statement message is itself an implicit transaction block.
            result = QueryResult()
            for index, statement in enumerate(script.statements):
                result = self._send(statement, script, index)
            return result
        return self._send(script.text, script, 0)

    def _send(self, text: str, script: Script, first_index: int) -> QueryResult:
        pgconn = self._db.pgconn
        try:
            pgconn.send_query(text.encode())
            results = self._db.wait(generators.fetch_many(pgconn))
        except psycopg.Error as exc:
            raise _query_error(exc, f"{script.origin} line {script.file_line(first_index)}") \
                from exc
        for index, res in enumerate(results):
            if res.status == pq.ExecStatus.FATAL_ERROR:
                statement = min(first_index + index, len(script.statements) - 1)
                raise _result_error(res, script, statement, text)
        return self._to_result(results[-1]) if results else QueryResult()

    def _to_result(self, res: pq.abc.PGresult) -> QueryResult:
        if res.status != pq.ExecStatus.TUPLES_OK:
            return QueryResult([], res.command_tuples or 0)
        transformer = Transformer(self._db)
        transformer.set_pgresult(res)
        names = [(res.fname(i) or b"").decode() for i in range(res.nfields)]
        rows = transformer.load_rows(0, res.ntuples, tuple)
        return QueryResult([dict(zip(names, row, strict=False)) for row in rows], res.ntuples)

    @contextmanager
    def transaction(self, *, lock: bool = True, first: tuple[str, Params] | None = None
                    ) -> Iterator[Transaction]:
        tx = Transaction(self._begin(lock, first))
        try:
            yield tx
        except BaseException:
            self._rollback()
            raise
        statements = [self._inline(sql, params) for sql, params, _ in tx.deferred]
        checked = any(check is not None for _, _, check in tx.deferred)
        try:
            # Writes whose result must be checked are checked before COMMIT, so a failed
            # check still rolls back; unchecked writes ride along with the COMMIT itself.
            results = self._batch(statements if checked else [*statements, "COMMIT"])
            for (_, _, check), result in zip(tx.deferred, results, strict=False):
                if check is not None:
                    check(self._to_result(result))
            if checked:
                self._batch(["COMMIT"])
        except psycopg.Error as exc:
            self._rollback()
            raise _query_error(exc, "COMMIT") from exc
        except BaseException:
            self._rollback()
            raise

    def _inline(self, sql: str, params: Params) -> str:
        """``sql`` with ``params`` bound client-side, so several go in one message."""
        if params is None:
            return sql
        if bindable(params):
            # The tracker's own rows: quoting them here is ~10x cheaper than a ClientCursor.
            return bind(sql, params)
        return psycopg.ClientCursor(self._db).mogrify(sql, params)

    def _batch(self, statements: list[str]) -> list[pq.abc.PGresult]:
        """Several statements in one simple-query message: one round trip."""
        pgconn = self._db.pgconn
        pgconn.send_query("; ".join(statements).encode())
        results: list[pq.abc.PGresult] = self._db.wait(generators.fetch_many(pgconn))
        for res in results:
            if res.status == pq.ExecStatus.FATAL_ERROR:
                raise psycopg.errors.error_from_result(res, encoding=self._db.info.encoding)
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
            parts.append(self._inline(*first))
        try:
            results = self._batch(parts)
        except psycopg.Error as exc:
            self._rollback()
            if exc.sqlstate == _LOCK_NOT_AVAILABLE:
                raise LockTimeout(
                    f"another cryomigrate run holds the lock on {self.display_url}; gave up "
                    f"after {opts.lock_wait_ms / 1000:g}s (raise --lock-wait to wait longer)"
                ) from None
            raise _query_error(exc, None) from exc
        return self._to_result(results[-1]) if first is not None else QueryResult()

    def _rollback(self) -> None:
        if self._db.closed or self._db.info.transaction_status == pq.TransactionStatus.IDLE:
            return
        # If the connection is gone, the server has rolled back for us.
        with contextlib.suppress(psycopg.Error):
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


def _set_local(name: str, ms: int | None) -> str:
    return f"SET LOCAL {name} TO DEFAULT" if ms is None else f"SET LOCAL {name} = '{ms}ms'"


def _describe(params: dict[str, Any]) -> str:
    import getpass
    import os

    host = params.get("host") or os.environ.get("PGHOST") or "localhost (socket)"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER") or getpass.getuser()
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return f"host {host}, port {port}, database {dbname}, user {user}"


def _display(params: dict[str, Any]) -> str:
    host = params.get("host", "")
    port = f":{params['port']}" if params.get("port") else ""
    user = f"{params['user']}@" if params.get("user") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def _query_error(exc: psycopg.Error, where: str | None) -> QueryError:
    diag = exc.diag
    message = _compose(exc.sqlstate, diag.message_primary or _first_line(exc),
                       diag.message_detail, diag.message_hint)
    if exc.sqlstate is None and isinstance(exc, psycopg.OperationalError):
        message = f"lost the connection to the server: {_first_line(exc)}"
    return QueryError(f"{where}: {message}" if where else message, sqlstate=exc.sqlstate)


def _result_error(res: pq.abc.PGresult, script: Script, index: int, sent: str) -> QueryError:
    def field(f: pq.DiagnosticField) -> str | None:
        value = res.error_field(f)
        return value.decode("utf-8", "replace") if value else None

    sqlstate = field(_F.SQLSTATE)
    position = field(_F.STATEMENT_POSITION)
    offset = int(position) - 1 if position and position.isdigit() else None
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
    message = _compose(sqlstate, field(_F.MESSAGE_PRIMARY) or "error", field(_F.MESSAGE_DETAIL),
                       field(_F.MESSAGE_HINT))
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
