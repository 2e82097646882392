"""SQLite through the stdlib ``sqlite3``: the embedded default, no server needed.

The connection runs in autocommit mode (``isolation_level=None``) so that cryomigrate,
not the ``sqlite3`` module, decides where transactions begin and end. The run lock is
SQLite's own write lock, taken with ``BEGIN IMMEDIATE`` and waited for through the busy
timeout. Scripts are executed statement by statement and never through
``executescript``, which would commit the migration's transaction first.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryomigrate.backends import ConnectOptions
from cryomigrate.backends.base import (
    ELAPSED_MS,
    Params,
    QueryError,
    QueryResult,
    Script,
    Transaction,
    rows_as_dicts,
)
from cryomigrate.errors import ConfigError, ConnectionFailed, LockTimeout


class SqliteBackend:
    dialect = "sqlite"
    placeholder = "?"

    def __init__(self, connection: sqlite3.Connection, path: str, lock_wait_ms: int) -> None:
        self._db = connection
        self._path = path
        self._lock_wait_ms = lock_wait_ms
        self.display_url = f"sqlite:///{path}"

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
        return cls(db, path, options.lock_wait_ms)

    def query(self, sql: str, params: Params = None) -> QueryResult:
        try:
            cursor = self._db.execute(sql, params or ())
            return QueryResult(rows_as_dicts(cursor.description, cursor.fetchall()),
                               cursor.rowcount)
        except sqlite3.Error as exc:
            raise QueryError(f"SQLite error: {exc}") from exc

    def run_script(self, script: Script) -> QueryResult:
        result = QueryResult()
        for index, statement in enumerate(script.statements):
            try:
                cursor = self._db.execute(statement)
                result = QueryResult(rows_as_dicts(cursor.description, cursor.fetchall()),
                                     cursor.rowcount)
            except sqlite3.Error as exc:
                line = script.file_line(index)
                raise QueryError(f"{script.origin} line {line}: SQLite error: {exc}",
                                 line=line) from exc
        return result

    @contextmanager
    def transaction(self, *, lock: bool = True, first: tuple[str, Params] | None = None
                    ) -> Iterator[Transaction]:
        started = time.perf_counter()  # durations include the lock wait, as on PostgreSQL
        try:
            self._db.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LockTimeout.waited(f"another run holds the write lock on {self._path}",
                                         self._lock_wait_ms) from exc
            raise QueryError(f"SQLite error: {exc}") from exc
        try:
            tx = Transaction(self.query(*first) if first else QueryResult())
            yield tx
            # In-process, so deferred work costs no round trip: run it, and the checks,
            # before COMMIT, where a failed check still rolls everything back.
            if tx.script is not None:
                self.run_script(tx.script)
            elapsed = round((time.perf_counter() - started) * 1000)
            for sql, params, check in tx.deferred:
                if isinstance(params, (list, tuple)):
                    params = [elapsed if value is ELAPSED_MS else value for value in params]
                result = self.query(sql, params)
                if check is not None:
                    check(result)
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
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
