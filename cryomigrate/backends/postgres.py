"""PostgreSQL (and Supabase) through psycopg 3's public API.

Safe behind a transaction pooler (pgbouncer, Supavisor): the run lock is a
transaction-scoped advisory lock, timeouts are ``SET LOCAL``, no prepared statement is
kept (``prepare_threshold=None``), and cryomigrate's transactions reset the session state
a script may set, so nothing of cryomigrate's outlives a transaction.

At network distance the cost of a migration is its round trips. A transaction's
statements are queued and sent together in psycopg's pipeline mode: a SQL migration's
BEGIN, run lock, guard against a concurrent run, script, history and journal rows and
COMMIT make one round trip, and the transactions of several SQL migrations may share it
(``commit_later`` and ``send_queued``). The extended protocol takes one statement at a
time, so the script goes as its statements, each exactly as written; when one fails,
psycopg tells which, and the error names the file line where it starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from cryomigrate.backends import ConnectOptions, pg_errors
from cryomigrate.backends.base import (
    Expect,
    Outcome,
    Params,
    QueryError,
    QueryResult,
    is_plan_outdated,
)
from cryomigrate.backends.pg_errors import LOCK_NOT_AVAILABLE
from cryomigrate.backends.pg_statements import (
    ENVIRONMENT_TIMEOUTS,
    GUARD_SETTING,
    IN_FAILED_TRANSACTION,
    KEEP_TIMEOUTS_AND_WAIT,
    MARK,
    MARK_SHOWN,
    NOTICES_SHOWN,
    RESET_SESSION,
    UNDEFINED_SETTING,
    guard_expression,
    ms,
    session_setting,
)
from cryomigrate.errors import (
    CryomigrateError,
    DatabaseError,
    InputError,
    InterruptedWaitingForLock,
    LockTimeout,
    PlanOutdated,
)

if TYPE_CHECKING:  # a status or a no-op run never parses a script
    from cryomigrate.sqlscript import Script

_COPY_WITH_CLIENT = re.compile(r"(?is)\s*COPY\b.*\b(STDIN|STDOUT)\b")


@dataclass(frozen=True)
class _Item:
    """A queued statement and what to say if it fails."""

    sql: str
    params: Params = None
    where: str = ""  # cryomigrate's own statements: what it was doing
    script: Script | None = None  # a script's statements: the script and its index
    index: int = 0
    lock: bool = False
    guard: bool = False
    owner: PgTransaction | None = None  # the transaction it belongs to, if any
    tells_level: bool = False  # returns client_min_messages as ``shown`` (see ``MARK``)
    quiet: bool = False  # cryomigrate's own and runs no code of the user's: no notice


class PostgresBackend:
    dialect = "postgresql"
    placeholder = "%s"
    elapsed_ms = ("(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() "
                  "OPERATOR(pg_catalog.-) pg_catalog.now()) OPERATOR(pg_catalog.*) 1000)"
                  "::pg_catalog.int4")
    writable = True

    def __init__(self, connection: psycopg.Connection[Any], options: ConnectOptions) -> None:
        self._db = connection
        self._options = options
        self._pending: list[_Item] = []
        self._flushes = 0  # flushes so far: tells a transaction whether its queue was sent
        # Transactions sent together: where the notices go since the last marker (see
        # ``_marked``), and what tells a marker from a notice of the user's.
        self._notice_to: Callable[[str], None] | None = None
        self._marker = f"cryomigrate {os.urandom(8).hex()} transaction "
        self._marked_owners: list[PgTransaction] = []
        self._notices_shown = False  # by this session, as its last transaction said
        self._ctrl_c = False  # pressed while a notice was being handled (see ``_notice``)
        self._open = 0  # transaction() blocks open, the runner's migration's among them
        # The statement that failed inside an open transaction, which the server keeps
        # aborted (see ``_flush``): what a later "transaction is aborted" is reported as.
        self._aborted_by: CryomigrateError | None = None
        self._pipelined = psycopg.Pipeline.is_supported()
        self.on_notice: Callable[[str], None] | None = None
        info = connection.info
        self.display_url = f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"
        digest = hashlib.sha256(f"cryomigrate:{options.lock_name}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        connection.add_notice_handler(self._notice)

    @classmethod
    def connect(cls, url: str, options: ConnectOptions) -> PostgresBackend:
        from cryomigrate.errors import ConnectionFailed

        try:
            # client_encoding: scripts are read as UTF-8 and must reach the server as such,
            # whatever the URL asks for.
            db = psycopg.connect(url, autocommit=True, prepare_threshold=None,
                                 client_encoding="utf8")
        except psycopg.ProgrammingError as exc:  # the URL does not parse
            complaint = pg_errors.without_password(str(exc), url)
            raise InputError(f"invalid PostgreSQL URL: {complaint}; check its syntax, and "
                             "percent-encode special characters in the user name and "
                             "password") from None
        except psycopg.Error as exc:
            raise ConnectionFailed("cannot connect to PostgreSQL: "
                                   f"{pg_errors.one_line(str(exc))}") from None
        return cls(db, options)

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        try:
            message = diag.message_primary or ""
            if message.startswith(self._marker):  # a transaction sent with others starts
                self._notice_to = self._marked_owners[int(message[len(self._marker):])
                                                      ].on_notice
                return
            handler = self._notice_to or self.on_notice
            if handler is not None:
                handler(f"{diag.severity}: {message}")
        except KeyboardInterrupt:
            # A Ctrl-C landing while psycopg calls this from C would only be logged there
            # ("Exception ignored") and the run would go on: the statement is cancelled
            # instead, and the interrupt raised once psycopg is back (``_stop_if_asked``):
            # at its error, or, had the statement finished all the same, before anything
            # more is sent, so that what committed is reported as done.
            self._ctrl_c = True
            self.cancel()

    def _stop_if_asked(self) -> None:
        """Raise the Ctrl-C that landed in ``_notice``, if one did."""
        if self._ctrl_c:
            self._ctrl_c = False
            raise KeyboardInterrupt

    # -- running now ----------------------------------------------------------------

    def query(self, sql: str, params: Params = None) -> QueryResult:
        self._flush_all()
        cursor = self._db.cursor(row_factory=dict_row)
        try:
            cursor.execute(sql, params)
        except (psycopg.Error, TypeError, ValueError) as exc:
            self._stop_if_asked()
            error = self._error(exc, _Item(sql, params))
            if self._open and _server_said(exc):  # the transaction stays aborted (_flush)
                self._aborted_by = error
            raise error from None
        self._aborted_by = None  # (a ROLLBACK TO SAVEPOINT brought the transaction back)
        return _result(cursor)

    def run_script(self, script: Script) -> QueryResult:
        if not self._pending and self._db.info.transaction_status == TransactionStatus.IDLE:
            # Outside a transaction (a non-transactional migration): one statement at a
            # time, since statements sent together would form one implicit transaction.
            result = QueryResult()
            for item in _script_items(script):
                self._pending.append(item)
                result = self._flush_all()
            return result
        self._pending.extend(_script_items(script))
        return self._flush_all()

    @contextmanager
    def outside_transaction(self) -> Iterator[None]:
        """Session-level timeouts for a non-transactional migration, and a reset after.

        Behind a transaction pooler a session setting may land on another client's server
        connection, so none is made there: timeouts then cannot be guaranteed.
        """
        pooled = self._options.pooler == "transaction"
        if not pooled:
            settings = [session_setting("lock_timeout", self._options.lock_timeout_ms),
                        session_setting("statement_timeout", self._options.statement_timeout_ms)]
            self._simple("; ".join(settings), "setting the session's timeouts")
        try:
            yield
        finally:
            if not pooled and not self._db.broken:
                self._simple("; ".join(RESET_SESSION), "resetting the session")

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self, *, lock: bool = True, expect: Expect | None = None
                    ) -> Iterator[PgTransaction]:
        tx = PgTransaction(self)
        start, flushes = len(self._pending), self._flushes
        self._open += 1
        # READ COMMITTED whatever the role's default: the guard must see, in a snapshot
        # taken after the lock was granted, what a concurrent run committed meanwhile.
        self._pending.append(_Item("BEGIN ISOLATION LEVEL READ COMMITTED", where="BEGIN",
                                   owner=tx, quiet=True))
        if self._options.pooler == "transaction":
            # Another client's session state may be on this server connection; ours is
            # reset after every script (``PgTransaction.reset_session``).
            tx.reset_session()
        guard = guard_expression(expect) if expect is not None else None
        if lock:
            opts = self._options
            # Three statements, each costing the pipeline the same: the session's own
            # timeouts kept aside and the wait bounded by --lock-wait alone (a
            # statement_timeout set on the role, common on Supabase, must not cut it
            # short; a statement's timeout is armed when it starts, hence a statement of
            # its own); the lock; the environment's timeouts (or the session's back) and
            # the guard, in a snapshot taken after the lock. A target list is evaluated
            # in order. The first two stay apart even where the session's last
            # transaction had no statement_timeout: a setting made since (a configuration
            # reload, another client's SET behind a transaction pooler nobody declared)
            # would cut the wait short.
            self._pending += [
                _Item(KEEP_TIMEOUTS_AND_WAIT, (f"{max(1, opts.lock_wait_ms)}ms",), owner=tx,
                      tells_level=True, quiet=True),
                _Item(f"SELECT pg_catalog.pg_advisory_xact_lock({self._lock_key})", lock=True,
                      owner=tx, quiet=True),
                _Item(ENVIRONMENT_TIMEOUTS + (f", {guard}" if guard else ""),
                      (ms(opts.lock_timeout_ms), ms(opts.statement_timeout_ms)),
                      guard=guard is not None, where="checking the history", owner=tx,
                      quiet=True),
            ]
        elif guard is not None:
            self._pending.append(_Item(f"SELECT {guard}", guard=True,
                                       where="checking the history", owner=tx, quiet=True))
        try:
            yield tx
            if not tx.done:
                tx.commit()
        except BaseException:
            if start and flushes == self._flushes:
                # Nothing of this one reached the server. Those queued before it (see
                # ``commit_later``) stay queued, and one still open on the server (its
                # COMMIT queued) stays open: the next message commits it.
                del self._pending[start:]
            else:
                self._pending.clear()
                self._rollback()
            raise
        finally:
            self._open -= 1

    def send_queued(self) -> None:
        """Send every transaction queued with ``commit_later`` in one message, with one
        sync point at its end: the first failure makes the server skip everything after
        it, so a failed migration stops the run exactly as if each had been sent alone.
        Each transaction's ``outcome`` then tells what became of it."""
        self._flush(queued=True)

    def _flush_all(self) -> QueryResult:
        """Send the queue; outside the runner's guarded transactions a guard never fails."""
        result = self._flush()
        if result is None:
            raise DatabaseError("internal: a guarded transaction was flushed implicitly")
        return result

    def _flush(self, *, queued: bool = False) -> QueryResult | None:
        """Send every queued statement in one pipeline; the last one's result, or None when
        the transaction's guard failed (then it is rolled back). With ``queued``, a
        transaction's failure is left in its ``outcome`` rather than raised."""
        self._stop_if_asked()  # before anything is taken from the queue
        items, self._pending = self._pending, []
        self._flushes += 1
        if not items:
            return QueryResult()
        items = self._marked(items)
        # A cursor per statement: after a failure, the first one without a status message
        # is exactly the statement that failed, which psycopg's public API tells no other
        # way; a cursor costs little next to executing its statement.
        cursors: list[psycopg.Cursor[dict[str, Any]]] = []
        first: psycopg.Error | TypeError | ValueError | None = None
        try:
            with self._db.pipeline() if self._pipelined and len(items) > 1 else nullcontext():
                for item in items:
                    cursor = self._db.cursor(row_factory=dict_row)
                    cursors.append(cursor)
                    try:
                        cursor.execute(item.sql, item.params)
                    except (psycopg.Error, TypeError, ValueError) as refused:
                        # Left here, the pipeline ends without an error in flight: psycopg
                        # then raises what closing it met rather than logging it to stderr.
                        first = refused
                        break
            if first is not None:
                raise first
        except (psycopg.Error, TypeError, ValueError) as raised:
            if self._ctrl_c:  # the statement was cancelled for it
                self._rollback()
                _settle(items, cursors, None, None)
                self._stop_if_asked()
            exc = first or raised  # the statement's own error, not the pipeline's after it
            failed = next((i for i, c in enumerate(cursors) if c.statusmessage is None),
                          len(cursors) - 1)
            item = items[failed]
            skipped = item.guard and getattr(exc, "sqlstate", None) == UNDEFINED_SETTING \
                and GUARD_SETTING in str(exc)
            error = None if skipped else self._error(exc, item)
            if error is not None and self._open and not queued and item.owner is None \
                    and _server_said(exc):
                # A statement of the migration's own (conn.sql), which it may catch: the
                # server keeps the transaction aborted, so nothing after it runs, nor
                # commits, outside it. The block rolls back as it ends. One of ours (a
                # queued COMMIT, say) failing is rolled back now, so that its failure can
                # still be journaled.
                self._aborted_by = error
            else:
                self._rollback()
            _settle(items, cursors, item.owner, error)
            if error is None or (queued and item.owner is not None):
                return None
            raise error from None
        except BaseException as stop:  # Ctrl-C: psycopg has cancelled it on the server
            self._rollback()
            _settle(items, cursors, None, None)
            # The first statement without a status is the one the server was running.
            at = next((item for item, cursor in zip(items, cursors, strict=False)
                       if cursor.statusmessage is None), None)
            if isinstance(stop, KeyboardInterrupt) and at is not None and at.lock:
                raise InterruptedWaitingForLock() from None
            raise
        finally:
            self._notice_to = None
        for item, cursor in zip(items, cursors, strict=True):
            if item.tells_level:
                row = cursor.fetchone()
                self._notices_shown = row is not None and row["shown"] in NOTICES_SHOWN
        _settle(items, cursors, None, None)
        self._aborted_by = None  # (a ROLLBACK TO SAVEPOINT brought the transaction back)
        return _result(cursors[-1])

    def _marked(self, items: list[_Item]) -> list[_Item]:
        """With several transactions in one message, a marker: a notice of its own, so that
        the notices after it are said to come from that transaction's migration. psycopg
        hands results over in batches, so which statement a notice came from cannot be
        told from them; the server's messages keep their order. Notices go to the first
        transaction until a marker arrives, and only a statement that is not ``quiet`` can
        raise one: a later transaction gets its marker just before its first such
        statement (inside the transaction, after any session reset), or none at all. A
        statement of no transaction's counts as the last one queued before it."""
        owners: list[PgTransaction] = []
        for item in items:
            if item.owner is not None and item.owner not in owners:
                owners.append(item.owner)
        self._marked_owners = owners
        # Until a marker arrives (none does where client_min_messages hides notices).
        self._notice_to = owners[0].on_notice if owners else None
        unmarked = set(owners[1:])
        if not unmarked:
            return items
        marked: list[_Item] = []
        owner: PgTransaction | None = None
        for item in items:
            owner = item.owner or owner
            if owner in unmarked and not item.quiet:
                mark = MARK if self._notices_shown else MARK_SHOWN
                marked.append(_Item(mark.format(marker=self._marker,
                                                number=owners.index(owner)),
                                    where="marking where a migration starts", owner=owner))
                unmarked.discard(owner)
            marked.append(item)
        return marked

    def _simple(self, sql: str, where: str) -> None:
        """Several of cryomigrate's own statements in one simple-query message."""
        self._flush_all()
        try:
            self._db.execute(sql.encode())  # bytes: never parsed for placeholders
        except psycopg.Error as exc:
            raise self._error(exc, _Item(sql, where=where)) from None

    def _rollback(self) -> None:
        self._aborted_by = None
        # If the connection is gone, the server has rolled back for us.
        if not self._db.broken and \
                self._db.info.transaction_status != TransactionStatus.IDLE:
            # The error that brought us here is the one to report.
            with contextlib.suppress(psycopg.Error):
                self._db.execute(b"ROLLBACK")

    # -- errors -----------------------------------------------------------------------

    def _error(self, exc: BaseException, item: _Item) -> CryomigrateError:
        if not isinstance(exc, psycopg.Error):  # parameters psycopg cannot bind
            return QueryError(f"parameters must be a sequence (for %s) or a mapping (for "
                              f"%(name)s): {exc}")
        if item.guard and is_plan_outdated(exc.diag.sqlstate, exc.diag.message_primary or ""):
            return PlanOutdated("another run changed the history meanwhile")
        if exc.diag.sqlstate == IN_FAILED_TRANSACTION and self._aborted_by is not None:
            return QueryError(f"{self._aborted_by} -- the migration went on after it (the "
                              "error was caught?), but it had aborted the transaction: "
                              "nothing more ran, and nothing of it is kept",
                              sqlstate=getattr(self._aborted_by, "sqlstate", None))
        if item.lock and exc.diag.sqlstate == LOCK_NOT_AVAILABLE:
            return LockTimeout.waited(
                f"another cryomigrate run holds the lock on {self.display_url}",
                self._options.lock_wait_ms)
        why = pg_errors.reason(exc, self._db.broken)
        if item.script is None:
            return QueryError(f"{item.where}: {why}" if item.where else why,
                              sqlstate=exc.diag.sqlstate)
        return pg_errors.script_error(item.script, item.index, item.sql, exc, why)

    # -- the history table's home -------------------------------------------------------

    def table_exists(self, table: str) -> bool:
        found = self.query("SELECT pg_catalog.to_regclass(%s) IS NOT NULL AS found",
                           (self.quote_table(table),))
        return bool(found.data[0]["found"])

    def quote_table(self, table: str) -> str:
        """A (validated) table name, schema-qualified or not, as quoted identifiers."""
        return ".".join('"' + part + '"' for part in table.split("."))

    def ensure_schema(self, table: str) -> None:
        if "." in table:
            schema = table.split(".", 1)[0]
            self.query(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')

    def close(self) -> None:
        self._db.close()

    def cancel(self) -> None:
        """Ask the server to cancel what this connection runs; callable from any thread.

        psycopg cancels on KeyboardInterrupt only in the thread it lands in (the main
        one), so a fleet's Ctrl-C cancels its worker threads' statements this way; the
        cancelled call then fails in its own thread and rolls back as any failure does.
        """
        with contextlib.suppress(psycopg.Error):
            self._db.cancel_safe(timeout=5)


class PgTransaction:
    """The queue of one transaction; see ``base.Transaction``."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._backend = backend
        self.done = False
        self.on_notice = backend.on_notice  # where its notices go, even when sent later
        self.outcome: Outcome = "queued"
        self.error: CryomigrateError | None = None
        self._rows: psycopg.Cursor[dict[str, Any]] | None = None

    @property
    def result(self) -> QueryResult | None:
        """What its last row-returning statement returned, once it committed."""
        return _result(self._rows) if self._rows is not None else None

    def defer(self, sql: str, params: Params = None, *, where: str = "") -> None:
        self._backend._pending.append(_Item(sql, params, where=where or "COMMIT", owner=self))

    def defer_script(self, script: Script) -> None:
        self._backend._pending.extend(_script_items(script, self))

    def reset_session(self) -> None:
        self._backend._pending.extend(
            _Item(sql, where="resetting the session", owner=self, quiet=True)
            for sql in RESET_SESSION)

    def flush(self) -> bool:
        if self._backend._flush() is None:
            self.done = True
            return False
        return True

    def commit(self) -> bool:
        self.commit_later()
        return self._backend._flush() is not None

    def commit_later(self) -> None:
        """Queue the COMMIT without sending: ``PostgresBackend.send_queued`` sends this
        transaction with the others queued, and sets its ``outcome``."""
        self._backend._pending.append(_Item("COMMIT", where="COMMIT", owner=self))
        self.done = True


def _settle(items: list[_Item], cursors: list[psycopg.Cursor[dict[str, Any]]],
            failed: PgTransaction | None, error: CryomigrateError | None) -> None:
    """Each transaction of a flush learns its outcome: committed when its COMMIT got its
    status; the one that failed (``failed``) skipped (its guard) or failed (``error``);
    any other was never run, the server having skipped it after the failure."""
    for index, item in enumerate(items):
        owner = item.owner
        if owner is None or owner.outcome != "queued":
            continue
        cursor = cursors[index] if index < len(cursors) else None
        status = cursor.statusmessage if cursor is not None else None
        if status is not None and cursor is not None and cursor.description is not None:
            owner._rows = cursor
        if owner is failed:
            owner.outcome, owner.error = ("failed", error) if error else ("skipped", None)
        elif item.sql == "COMMIT":
            owner.outcome = "committed" if status == "COMMIT" else "not run"


def _script_items(script: Script, owner: PgTransaction | None = None) -> list[_Item]:
    items = []
    for index, text in enumerate(script.statements):
        if _COPY_WITH_CLIENT.match(text):
            # The server would run it and go on to COMMIT while the client can only refuse
            # the data stream: refused before anything is sent.
            line = script.file_line(index)
            raise QueryError(f"{script.origin} line {line}: COPY ... FROM STDIN / TO STDOUT "
                             "needs a client exchanging the data (psql), which a migration "
                             "does not have; nothing was sent. Load data with INSERT, or "
                             "COPY from a file the server can read")
        items.append(_Item(text, script=script, index=index, owner=owner))
    return items


def _server_said(exc: BaseException) -> bool:
    """An error the server reported, which aborts its transaction; not one psycopg raised
    before sending (parameters it could not bind)."""
    return isinstance(exc, psycopg.Error) and exc.diag.sqlstate is not None


def _result(cursor: psycopg.Cursor[dict[str, Any]]) -> QueryResult:
    data = cursor.fetchall() if cursor.description is not None else []
    return QueryResult(data, cursor.rowcount)
