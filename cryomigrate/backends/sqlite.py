"""SQLite through the stdlib ``sqlite3``: the embedded default, no server needed.

The connection runs in autocommit mode (``isolation_level=None``) so that cryomigrate,
not the ``sqlite3`` module, decides where transactions begin and end. The run lock is
SQLite's own write lock, taken with ``BEGIN IMMEDIATE`` and waited for through the busy
timeout. Scripts are executed statement by statement and never through
``executescript``, which would commit the migration's transaction first.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cryomigrate.backends import ConnectOptions
from cryomigrate.backends.base import UNDEFINED_COLUMN, Expect, Params, QueryError, QueryResult
from cryomigrate.errors import ConfigError, ConnectionFailed, LockTimeout, PlanOutdated

if TYPE_CHECKING:  # a status or a no-op run never parses a script
    from cryomigrate.sqlscript import Script

# Milliseconds since the current transaction began, as SQL: the duration of a history row
# written at the end of its migration's transaction.
_ELAPSED_FUNCTION = "cryomigrate_elapsed_ms"


class SqliteBackend:
    dialect = "sqlite"
    placeholder = "?"
    elapsed_ms = f"{_ELAPSED_FUNCTION}()"

    def __init__(self, connection: sqlite3.Connection, path: str, lock_wait_ms: int,
                 writable: bool) -> None:
        self._db = connection
        self._path = path
        self._lock_wait_ms = lock_wait_ms
        self._began = time.perf_counter()
        self._elapsed: int | None = None
        self._pending: list[Callable[[], object]] = []  # an open transaction's queue
        self.writable = writable
        self.on_notice: Callable[[str], None] | None = None  # SQLite raises no notices
        self.display_url = f"sqlite:///{path}"
        connection.create_function(_ELAPSED_FUNCTION, 0, self._elapsed_ms)

    def _elapsed_ms(self) -> int:
        """Measured once per transaction, at its first use: the history and journal rows
        written one after the other at its end carry the same duration."""
        if self._elapsed is None:
            self._elapsed = round((time.perf_counter() - self._began) * 1000)
        return self._elapsed

    @classmethod
    def connect(cls, url: str, options: ConnectOptions) -> SqliteBackend:
        path = _path_from_url(url, options.base_dir)
        timeout = options.lock_wait_ms / 1000
        try:
            if path == ":memory:":
                db = sqlite3.connect(path, isolation_level=None)
            elif options.read_only:
                # status and --dry-run must not create the database file as a side effect.
                if Path(path).exists():
                    uri = Path(path).resolve().as_uri() + "?mode=ro"
                    db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
                else:
                    db = sqlite3.connect(":memory:", isolation_level=None)
            else:
                if not Path(path).parent.is_dir():
                    raise ConnectionFailed(
                        f"cannot open SQLite database {path}: folder {Path(path).parent} "
                        "does not exist"
                    )
                db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise ConnectionFailed(f"cannot open SQLite database {path}: {exc}") from exc
        return cls(db, path, options.lock_wait_ms, writable=not options.read_only)

    def _drain(self) -> None:
        """Run what an open transaction queued, so work runs in the order it was written."""
        pending = list(self._pending)
        self._pending.clear()  # in place: the open transaction holds this very list
        for work in pending:
            work()

    def query(self, sql: str, params: Params = None) -> QueryResult:
        self._drain()
        try:
            cursor = self._db.execute(sql, params or ())
            return _result(cursor)
        except sqlite3.Error as exc:
            raise QueryError(f"SQLite error: {exc}", sqlstate=_sqlstate(exc)) from exc

    def run_script(self, script: Script) -> QueryResult:
        self._drain()
        result = QueryResult()
        for index, statement in enumerate(script.statements):
            try:
                result = _result(self._db.execute(statement))
            except sqlite3.Error as exc:
                line = script.file_line(index)
                raise QueryError(f"{script.origin} line {line}: SQLite error: {exc}",
                                 line=line, script=script) from exc
        return result

    @contextmanager
    def outside_transaction(self) -> Iterator[None]:
        yield  # SQLite has no lock or statement timeouts to apply, nor session state

    @contextmanager
    def transaction(self, *, lock: bool = True, expect: Expect | None = None
                    ) -> Iterator[SqliteTransaction]:
        self._began = time.perf_counter()  # durations include the lock wait, as on PostgreSQL
        self._elapsed = None
        try:
            self._db.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LockTimeout.waited(f"another run holds the write lock on {self._path}",
                                         self._lock_wait_ms) from exc
            raise QueryError(f"SQLite error: {exc}") from exc
        try:
            passed = expect is None or bool(self.query(expect.query).data) == expect.present
            if passed and expect is not None and expect.stale is not None \
                    and self.query(f"SELECT 1 WHERE {expect.stale}").data:
                raise PlanOutdated("another run changed the history meanwhile")
            tx = SqliteTransaction(self, passed)
            yield tx
            if not tx.done:
                tx.commit()
        except BaseException:
            self._pending.clear()
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise QueryError(f"SQLite error on COMMIT: {exc}") from exc

    def table_exists(self, table: str) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        return found is not None

    def quote_table(self, table: str) -> str:
        if "." in table:
            raise ConfigError(
                f"history_table '{table}' is schema-qualified, which only PostgreSQL supports; "
                "use a plain table name for SQLite"
            )
        return '"' + table + '"'

    def ensure_schema(self, table: str) -> None:
        self.quote_table(table)

    def close(self) -> None:
        self._db.close()

    def cancel(self) -> None:
        """Abort what this connection runs; callable from any thread (a fleet's Ctrl-C)."""
        with contextlib.suppress(sqlite3.ProgrammingError):
            self._db.interrupt()


def _path_from_url(url: str, base_dir: Path) -> str:
    rest = url.split("://", 1)[1] if "://" in url else ""
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(
            f"'{url}' is not a SQLite URL; write sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    path = rest[1:].split("?", 1)[0]
    if path == ":memory:" or Path(path).is_absolute():
        return path
    return str(base_dir / path)


class SqliteTransaction:
    """In-process, so queued work costs nothing to send: it runs at ``flush``/``commit``,
    exactly as the PostgreSQL backend's would, after the guard was checked at BEGIN."""

    def __init__(self, backend: SqliteBackend, passed: bool) -> None:
        self._backend = backend
        self._passed = passed
        self._queue = backend._pending
        self.done = False

    def defer(self, sql: str, params: Params = None, *, where: str = "") -> None:
        def run() -> None:
            try:
                self._backend.query(sql, params)
            except QueryError as exc:
                raise QueryError(f"{where}: {exc}" if where else str(exc)) from exc
        self._queue.append(run)

    def defer_script(self, script: Script) -> None:
        self._queue.append(lambda: self._backend.run_script(script))

    def reset_session(self) -> None:
        # The one connection setting a script can make that would stop cryomigrate's own
        # writes; SQLite has no role or search path.
        self.defer("PRAGMA query_only = OFF", where="resetting the connection")

    def flush(self) -> bool:
        if not self._passed:
            self._queue.clear()
            self._backend._db.execute("ROLLBACK")
            self.done = True
            return False
        self._backend._drain()
        return True

    def commit(self) -> bool:
        passed = self.flush()
        if passed:
            self._backend._commit()
        self.done = True
        return passed


def _sqlstate(exc: sqlite3.Error) -> str | None:
    """SQLite has no SQLSTATE; the one PostgreSQL gives the same error, where callers
    above the backend tell errors apart (a table that is not what was expected)."""
    return UNDEFINED_COLUMN if str(exc).startswith("no such column") else None


def _result(cursor: sqlite3.Cursor) -> QueryResult:
    if not cursor.description:
        return QueryResult([], cursor.rowcount)
    names = [column[0] for column in cursor.description]
    return QueryResult([dict(zip(names, row, strict=False)) for row in cursor.fetchall()],
                       cursor.rowcount)
