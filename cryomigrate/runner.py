"""Execute a plan: one locked transaction per migration, holding its change and record.

Concurrency: each migration's transaction first takes the run lock, then re-reads that
migration's history row and skips it if another run got there first. The lock is held
only for the length of one transaction, so it works behind a transaction pooler, and a
non-transactional migration runs with no transaction (and no lock) open at all; a
``dirty`` row, written before it starts and cleared after, marks it while it runs.

Where the backend can (``SendsAhead``), the transactions of SQL migrations in a row are
queued and sent as one message (``_send_ahead``): still one transaction, lock and guard
per migration, but one round trip for the lot, which is what a run against a distant
database waits for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from cryomigrate import failures, migration_output
from cryomigrate.backends import Backend
from cryomigrate.config import Environment
from cryomigrate.errors import (
    CryomigrateError,
    Interrupted,
    InterruptedWaitingForLock,
    LockTimeout,
    MigrationFailed,
    PlanOutdated,
)
from cryomigrate.loader import Direction, Migration
from cryomigrate.lock_retries import with_lock_retries
from cryomigrate.migration_conn import MigrationConnection
from cryomigrate.models import MigrationRun, RunResult
from cryomigrate.outside_transaction import (
    OutsideTransaction,
    calls_are_transactions,
    refuse_over_http,
)
from cryomigrate.tracker import Newest, Tracker, elapsed_ms, now

if TYPE_CHECKING:
    from cryomigrate.backends import Expect, Transaction
    from cryomigrate.backends.base import QueuedTransaction, SendsAhead

Progress = Callable[[str, Any], None]
# Migrations sent together at most (``Runner._send_ahead``): their lines are printed when
# the last of them is done, so a long run still reports as it goes.
_SEND_AHEAD_MAX = 50


@dataclass
class _Run:
    """What a run did so far, kept for the result even when it stops early."""
    direction: Direction
    done: list[MigrationRun] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Runner:
    def __init__(self, backend: Backend, tracker: Tracker, env: Environment,
                 progress: Progress | None = None, lock_wait: float = 60) -> None:
        self.backend = backend
        self.tracker = tracker
        self.env = env
        self._progress = progress or (lambda event, payload: None)
        self._outside = OutsideTransaction(backend, tracker, lock_wait, self._progress)
        # A Python migration whose COMMIT waits to travel with the next one (``_one``):
        # the migration, its transaction, when it started (text, clock).
        self._unsettled: tuple[Migration, QueuedTransaction, str, float] | None = None
        self._announce: list[MigrationRun] = []  # done, to be said once stdout is back
        # The newest version the history holds as the next migration starts, as planned
        # (``run``); each migration's guard checks it under the lock (``_guard``).
        self._newest: Newest = False

    def run(self, direction: Direction, migrations: Sequence[Migration], *,
            newest: Newest = False) -> RunResult:
        """``newest``: the newest version recorded when the plan was made (None: none),
        so that a run that waited for another one's lock stops rather than carry out a
        plan that run made stale (rolling back what is no longer the newest, applying
        past a migration rolled back meanwhile); False checks nothing."""
        state = _Run(direction)
        self._newest = newest
        if calls_are_transactions(self.backend):
            refuse_over_http(migrations)
        try:
            if migrations and self._supabase_history:
                from cryomigrate import supabase_history

                with self.backend.transaction(lock=True) as tx:
                    supabase_history.ensure_table(tx)
            if migrations and not self.tracker.ready:
                with self.backend.transaction(lock=True) as tx:
                    self.tracker.ensure_tables(tx)
            if any(m.file.repeatable for m in migrations) and not self.tracker.repeatable_ready:
                with self.backend.transaction(lock=True) as tx:
                    self.tracker.ensure_repeatable_table(tx)
            pending = list(migrations)
            while pending:
                together = self._sendable(pending)
                if len(together) > 1:
                    self._settle(state)
                    done = self._send_ahead(state, together)
                else:
                    done = self._one(state, pending[0], pending[1:2])
                del pending[:done]
            self._settle(state)
        except CryomigrateError as exc:
            exc.result = self._result(state)
            raise
        return self._result(state)

    def _result(self, state: _Run) -> RunResult:
        return RunResult(self.env.name, state.direction, False, tuple(state.done),
                         tuple(state.notices), tuple(state.skipped))

    def _notice(self, state: _Run) -> Callable[[str], None]:
        def notice(text: str) -> None:
            state.notices.append(text)
            self._progress("notice", text)
        return notice

    def _queueable(self, migration: Migration) -> bool:
        """Whether the migration's transaction may be queued (``SendsAhead``): a
        transactional, versioned migration, on a backend that can, where nothing is to be
        retried on lock_timeout (a retry runs alone, after a pause). SQL ones go together
        (``_sendable``); a Python one leaves its COMMIT for the next (``_rides_along``)."""
        return (getattr(self.backend, "send_queued", None) is not None
                and not self.env.lock_retries and migration.transactional
                and not migration.file.repeatable)

    def _sendable(self, pending: Sequence[Migration]) -> Sequence[Migration]:
        """The SQL migrations at the head of ``pending`` that go to the server together; if
        the first cannot, just the first, which runs on its own."""
        together = []
        for migration in pending[:_SEND_AHEAD_MAX]:
            if migration.file.kind == "python" or not self._queueable(migration):
                break
            together.append(migration)
        return together or pending[:1]

    def _send_ahead(self, state: _Run, migrations: Sequence[Migration]) -> int:
        """Queue each migration's transaction, send them all in one message, then report
        each as it came out. How many are settled: all, or up to one that another run had
        already done (the server skipped those after it, which go again)."""
        backend = cast("SendsAhead", self.backend)
        direction = state.direction
        started_at, clock = now(), time.perf_counter()
        queued: list[tuple[Migration, QueuedTransaction]] = []
        planned = self._newest  # each guard expects those queued before it to commit
        for migration in migrations:  # all before any is queued: a fleet's Ctrl-C stops here
            self._progress("start", migration)
        for migration in migrations:
            label = migration.file.label
            notice = self._notice(state)
            self.backend.on_notice = lambda text, label=label, notice=notice: notice(
                f"{label}: {text}")
            conn = self._conn(migration, notice)
            try:
                with backend.transaction(lock=True, expect=self._guard(direction, migration)) \
                        as tx:
                    conn._transaction = tx
                    self._work(direction, migration, conn, tx, now(), returning=True)
                    tx.commit_later()
            except CryomigrateError:
                break  # refused before anything was sent: reported when it runs alone
            finally:
                self.backend.on_notice = None
            queued.append((migration, tx))
            self._advance(direction, migration)
        self._newest = planned  # advanced below by what the server did
        if not queued:
            return self._one(state, migrations[0])
        interrupted: KeyboardInterrupt | None = None
        try:
            backend.send_queued()
        except KeyboardInterrupt as exc:
            interrupted = exc
        for index, (migration, tx) in enumerate(queued):
            if tx.outcome in ("committed", "skipped"):
                self._advance(direction, migration)
            if tx.outcome == "committed":
                self._done(state, migration, _server_duration(tx))
            elif tx.outcome == "skipped":
                state.skipped.append(migration.file.label)
                self._progress("skip", migration)
                return index + 1
            else:
                cause: BaseException = interrupted or tx.error or AssertionError(tx.outcome)
                failure = self._failure(state, direction, migration, started_at, clock, cause)
                if failure is cause:
                    raise cause
                raise failure from cause
        if interrupted is not None:
            raise interrupted
        return len(queued)

    def _conn(self, migration: Migration, notice: Callable[[str], None]) -> MigrationConnection:
        return MigrationConnection(
            self.backend, environment=self.env.name, vars=self.env.vars,
            origin=migration.file.label, path=migration.file.path,
            transactional=migration.transactional, notice=notice,
        )

    def _done(self, state: _Run, migration: Migration, duration_ms: int, *,
              announce: bool = True) -> None:
        """Record a migration as done; ``announce``: say so now (else ``_one`` does, once
        the next migration's output no longer goes to stderr)."""
        file = migration.file
        run = MigrationRun(None if file.repeatable else file.version_text, file.name,
                           file.kind, duration_ms, description=migration.description,
                           repeatable=file.repeatable)
        state.done.append(run)
        if announce:
            self._progress("done", run)
        else:
            self._announce.append(run)

    def _one(self, state: _Run, migration: Migration, then: Sequence[Migration] = ()) -> int:
        """Run one migration on its own. A Python migration followed by another leaves its
        COMMIT queued (``_unsettled``): it travels with the next one's first message, the
        run lock and guard, and is reported once that is back (``_first_flush``)."""
        if not self._rides_along(migration):
            self._settle(state)
        label = migration.file.label
        notice = self._notice(state)
        conn = self._conn(migration, notice)
        # What the server says while the migration runs (RAISE NOTICE in a backfill) is
        # the user's to see, named by the migration it came from.
        self.backend.on_notice = lambda text: notice(f"{label}: {text}")
        defer = self._rides_along(migration) and any(self._rides_along(m) for m in then)
        try:
            self._progress("start", migration)
            ran, clock = self._with_lock_retries(state, migration, conn, defer)
        except _EarlierFailed as exc:
            raise exc.failure from exc.failure.__cause__
        except BaseException:
            # Stopped before its first message carried the previous migration's COMMIT
            # (Ctrl-C, a fleet stopping): that one is committed and reported first, as
            # it would have been had it been sent alone.
            self._settle(state)
            raise
        finally:
            self.backend.on_notice = None
            for run in self._announce:  # the previous migration, settled meanwhile
                self._progress("done", run)
            self._announce.clear()
        if ran is None:
            return 1  # reported when its COMMIT is back
        if not ran:
            state.skipped.append(label)
            self._progress("skip", migration)
        else:
            self._done(state, migration, elapsed_ms(clock))
        return 1

    def _rides_along(self, migration: Migration) -> bool:
        """A queueable Python migration: its first message may carry the previous one's
        COMMIT."""
        return migration.file.kind == "python" and self._queueable(migration)

    def _first_flush(self, state: _Run, tx: Transaction) -> bool:
        """Send a Python migration's lock and guard, with the previous migration's COMMIT
        if it waits (``_one``), and report that one: done, or its failure instead."""
        try:
            passed = tx.flush()
        except BaseException as exc:
            self._settle(state, cause=exc, inside=True)
            raise
        self._settle(state, inside=True)
        return passed

    def _settle(self, state: _Run, cause: BaseException | None = None, *,
                inside: bool = False) -> None:
        """Report the migration whose COMMIT was left queued (sending it first if it is
        still queued): done, or its failure. ``inside`` the next migration (``cause``: what
        stopped that one, if anything did), the failure is wrapped so that it is not taken
        for the next migration's."""
        if self._unsettled is None:
            return
        migration, tx, started_at, clock = self._unsettled
        self._unsettled = None
        interrupted: KeyboardInterrupt | None = None
        if tx.outcome == "queued":
            try:
                cast("SendsAhead", self.backend).send_queued()
            except KeyboardInterrupt as exc:
                interrupted = exc
        if tx.outcome == "committed":
            self._done(state, migration, _server_duration(tx), announce=not inside)
            if interrupted is not None:
                raise interrupted
            return
        reason: BaseException = tx.error or interrupted or cause or AssertionError(tx.outcome)
        failure = self._failure(state, state.direction, migration, started_at, clock, reason)
        if failure is not reason:
            failure.__cause__ = reason
        if inside:
            raise _EarlierFailed(failure)
        raise failure

    def _with_lock_retries(self, state: _Run, migration: Migration,
                           conn: MigrationConnection, defer: bool = False
                           ) -> tuple[bool | None, float]:
        """Each attempt is journaled by ``_attempt``; only one that can be rolled back
        whole is tried again (``lock_retries``)."""
        retries = self.env.lock_retries if self._atomic(migration) else 0

        def warn(text: str) -> None:  # in the result too: a CI job reads the document
            state.notices.append(text)
            self._progress("warning", text)

        return with_lock_retries(retries, migration.file.label,
                                 lambda: self._attempt(state, migration, conn, defer), warn)

    def _attempt(self, state: _Run, migration: Migration, conn: MigrationConnection,
                 defer: bool = False) -> tuple[bool | None, float]:
        """Run the migration once; any failure is journaled. Whether it ran (False: another
        run did it first; None: its COMMIT is queued, see ``_one``) and when it started."""
        started_at, clock = now(), time.perf_counter()
        try:
            with migration_output.to_stderr():
                if not self._atomic(migration):
                    return self._outside_transaction(state.direction, migration, conn,
                                                     started_at, clock), clock
                ran = self._transactional(state, migration, conn, started_at, clock, defer)
            return ran, clock
        except (CryomigrateError, KeyboardInterrupt) as exc:
            if self._unsettled is not None:
                if self._unsettled[0] is migration:
                    raise  # it ran to its COMMIT, which is queued: ``_one`` settles it
                # Stopped before its first message: the previous migration's COMMIT is
                # sent and reported now, apart from this one's failure.
                self._settle(state, cause=exc, inside=True)
            failure = self._failure(state, state.direction, migration, started_at, clock, exc)
            if failure is exc:
                raise
            raise failure from exc

    def _failure(self, state: _Run, direction: Direction, migration: Migration,
                 started_at: str, clock: float, exc: BaseException) -> BaseException:
        """What a migration's failure is reported as, once journaled."""
        if isinstance(exc, LockTimeout):
            return exc  # nothing was attempted
        if isinstance(exc, PlanOutdated):  # nor here, under the lock it waited for
            return PlanOutdated(failures.plan_outdated(migration, direction),
                                result=self._result(state))
        if isinstance(exc, InterruptedWaitingForLock):  # nor here: nothing to journal
            return Interrupted(failures.waiting_for_lock(migration), result=self._result(state))
        if isinstance(exc, KeyboardInterrupt):
            message = failures.interrupted(migration)
            self._journal_failure(direction, migration, started_at, clock, message)
            return Interrupted(message, result=self._result(state))
        if isinstance(exc, MigrationFailed) or not isinstance(exc, CryomigrateError) \
                or exc.exit_code != 1:
            self._journal_failure(direction, migration, started_at, clock, str(exc))
            return exc
        # E.g. a statement of a SQL migration failing when its script reached the server
        # with the COMMIT, or a template error raised by conn.render: still this migration
        # failing, and journaled as such.
        message = failures.prefixed(migration, failures.explained(exc))
        self._journal_failure(direction, migration, started_at, clock, message)
        return MigrationFailed(message)

    def _guard(self, direction: Direction, migration: Migration) -> Expect:
        return self.tracker.guard(migration.file.version, applied=direction == "rollback",
                                  newest=self._expected(direction, migration))

    def _expected(self, direction: Direction, migration: Migration) -> Newest:
        """The newest version the history must hold as ``migration`` starts: the plan's,
        grown by what this run applied; a rollback takes back the newest, so its own."""
        if self._newest is False:
            return False
        return migration.file.version if direction == "rollback" else self._newest

    def _advance(self, direction: Direction, migration: Migration) -> None:
        """``migration`` is recorded now (or queued to commit first): the next one's
        expectation grows to it. Rollbacks expect their own version, so keep nothing."""
        if self._newest is not False and direction == "apply":
            self._newest = max(migration.file.version, -1 if self._newest is None
                               else self._newest)

    def _transactional(self, state: _Run, migration: Migration, conn: MigrationConnection,
                       started_at: str, clock: float, defer: bool = False) -> bool | None:
        """Execute and record the migration in one transaction; False if another run got
        there first. For a SQL migration all of it is one message to the server. With
        ``defer``, the COMMIT is left queued (``_unsettled``) and None returned."""
        if migration.file.repeatable:
            return self._repeatable(migration, conn, started_at)
        direction = state.direction
        with self.backend.transaction(lock=True, expect=self._guard(direction, migration)) \
                as tx:
            conn._transaction = tx
            # Python code must not start before the guard has passed: it needs results as
            # it goes, so the queue is sent now.
            if migration.file.kind == "python" and not self._first_flush(state, tx):
                self._advance(direction, migration)
                return False
            self._work(direction, migration, conn, tx, started_at, returning=defer)
            if not defer:
                ran = tx.commit()
                self._advance(direction, migration)
                return ran
            queued = cast("QueuedTransaction", tx)
            queued.commit_later()
            self._advance(direction, migration)  # the next one's guard expects it committed
        # Out of the block: a Ctrl-C inside it still rolls the whole transaction back.
        self._unsettled = (migration, queued, started_at, clock)
        return None

    def _work(self, direction: Direction, migration: Migration, conn: MigrationConnection,
              tx: Transaction, started_at: str, *, returning: bool = False) -> None:
        """The migration and its history and journal rows, in ``tx`` behind its guard;
        ``returning``: the journal row gives back its duration, measured by the server."""
        file = migration.file
        failures.execute(direction, migration, conn)
        tx.reset_session()  # the script's search_path or role must not reach our writes
        self.tracker.record_run(direction=direction, version=file.version,
                                version_text=file.version_text, name=file.name, kind=file.kind,
                                checksum=migration.checksum, started_at=started_at, tx=tx,
                                returning=returning)
        self._supabase_row(tx, direction, migration)

    def _repeatable(self, migration: Migration, conn: MigrationConnection,
                    started_at: str) -> bool:
        """Run a repeatable and record it in one transaction, as a versioned migration is;
        False if a concurrent run already applied this very content (the guard)."""
        file = migration.file
        guard = self.tracker.repeatable_guard(file.name, migration.checksum)
        with self.backend.transaction(lock=True, expect=guard) as tx:
            conn._transaction = tx
            if file.kind == "python" and not tx.flush():
                return False
            failures.execute("apply", migration, conn)
            tx.reset_session()
            self.tracker.record_repeatable(name=file.name, kind=file.kind,
                                           checksum=migration.checksum, tx=tx)
            self.tracker.journal(version_text=file.version_text, name=file.name,
                                 action="apply", outcome="ok", started_at=started_at,
                                 duration_ms=None, tx=tx)
            return tx.commit()

    def _outside_transaction(self, direction: Direction, migration: Migration,
                             conn: MigrationConnection, started_at: str, clock: float) -> bool:
        ran = self._outside.run(
            direction, migration, lambda: failures.execute(direction, migration, conn), started_at,
            clock, lambda tx: self._supabase_row(tx, direction, migration),
            self._expected(direction, migration))
        self._advance(direction, migration)
        return ran

    # -- the Supabase HTTP API and the Supabase CLI's history (DESIGN 8) ----------------

    def _atomic(self, migration: Migration) -> bool:
        """Whether the migration runs in one transaction with its record. Over an API where
        every call is its own transaction, Python code (which needs results as it goes)
        cannot: it is marked dirty while it runs, like a non-transactional migration."""
        if migration.file.kind == "python" and calls_are_transactions(self.backend):
            return False
        return migration.transactional

    @property
    def _supabase_history(self) -> bool:
        return bool(getattr(self.env, "supabase_history", False)) \
            and self.backend.dialect == "postgresql"

    def _supabase_row(self, tx: Transaction, direction: Direction, migration: Migration) -> None:
        """The Supabase CLI's row, in the same transaction as ours (supabase_history: true)."""
        if self._supabase_history and not migration.file.repeatable:
            from cryomigrate import supabase_history

            supabase_history.defer_row(tx, direction, migration)

    def _journal_failure(self, direction: Direction, migration: Migration, started_at: str,
                         clock: float, error: str) -> None:
        """Journal a failure after its transaction rolled back; never hide the real error."""
        try:
            with self.backend.transaction(lock=False) as tx:
                self.tracker.journal(version_text=migration.file.version_text,
                                     name=migration.file.name, action=direction,
                                     outcome="failed", started_at=started_at,
                                     duration_ms=elapsed_ms(clock), error=error, tx=tx)
        except (CryomigrateError, KeyboardInterrupt):
            pass  # the connection may be gone; the migration's own error is what matters


class _EarlierFailed(Exception):
    """The previous migration's failure, found while the next one was starting: passed
    through the next one's error handling unchanged (see ``Runner._settle``)."""

    def __init__(self, failure: BaseException) -> None:
        super().__init__(str(failure))
        self.failure = failure


def _server_duration(tx: QueuedTransaction) -> int:
    """A committed queued migration's duration, as its journal row gave it back
    (``Tracker.record_run`` with ``returning``)."""
    result = tx.result
    return int(result.data[0]["duration_ms"]) if result and result.data else 0
