"""The small protocol every database backend implements, and the types it returns.

A backend speaks its dialect and nothing more: it knows how to connect, run SQL, open a
locked transaction and translate its driver's errors into ours. It knows nothing of
migrations, history or plans; those live above it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from cryomigrate.errors import CryomigrateError, DatabaseError

if TYPE_CHECKING:
    from cryomigrate.sqlscript import Script

Params = Sequence[Any] | Mapping[str, Any] | None


@dataclass
class QueryResult:
    """What ``conn.sql(...).execute()`` returns: rows as dicts, and the affected row count."""

    data: list[dict[str, Any]] = field(default_factory=list)
    rowcount: int = -1


@dataclass(frozen=True)
class Expect:
    """What a transaction must find before its work may run: ``query`` (one of
    cryomigrate's own, with no parameters) returns a row exactly when ``present``.

    It is checked under the run lock, in the same message as the work it guards, so a
    concurrent run that got there first turns this transaction into a clean skip.
    """

    query: str
    present: bool
    # A condition (SQL, cryomigrate's own, no parameters) that holds when what the run was
    # planned from no longer does (another run applied or rolled back something meanwhile):
    # the transaction then fails with PlanOutdated. Checked after ``query`` has passed.
    stale: str | None = None


# A stale plan (``Expect.stale``) on PostgreSQL: an expression reading a setting that is
# never defined, so that it fails (42704, naming it) exactly when the condition holds.
# Plain SQL, in the message with the work it guards; ``current_setting`` is STABLE, so it
# is evaluated only when run, never while planning.
PLAN_OUTDATED_SETTING = "cryomigrate.another_run_changed_the_history"


def plan_check(expect: Expect) -> str | None:
    """The PostgreSQL expression that fails when ``expect.stale`` holds."""
    if expect.stale is None:
        return None
    return (f"pg_catalog.current_setting(CASE WHEN {expect.stale} "
            f"THEN '{PLAN_OUTDATED_SETTING}' ELSE 'lock_timeout' END)")


def is_plan_outdated(sqlstate: str | None, message: str) -> bool:
    return sqlstate == "42704" and PLAN_OUTDATED_SETTING in message


class Transaction(Protocol):
    """An open transaction whose statements may be queued and sent together.

    A networked backend sends everything queued in one message when ``flush`` or
    ``commit`` is called: a SQL migration's lock, guard, script, history and journal rows
    and COMMIT make one round trip. Immediate calls on the backend (``query``,
    ``run_script``) send what is queued first, so the order is always the order written.
    """

    def defer(self, sql: str, params: Params = None, *, where: str = "") -> None:
        """Queue one of cryomigrate's own statements; ``where`` names it in an error."""
        ...

    def defer_script(self, script: Script) -> None:
        """Queue a migration's script."""
        ...

    def reset_session(self) -> None:
        """Queue the statements that undo whatever session state a script set (search
        path, role, settings), so cryomigrate's own writes that follow never depend on it."""
        ...

    def flush(self) -> bool:
        """Send what is queued; False when the ``Expect`` failed (the transaction is then
        rolled back and nothing queued ran)."""
        ...

    def commit(self) -> bool:
        """Send what is queued with COMMIT; False as for ``flush``."""
        ...


# What became of a transaction sent together with others (``SendsAhead``).
Outcome = Literal["queued", "committed", "skipped", "failed", "not run"]


class QueuedTransaction(Transaction, Protocol):
    """A transaction that may be queued with its COMMIT and sent later with others."""

    outcome: Outcome
    error: CryomigrateError | None  # why it failed, when it did

    @property
    def result(self) -> QueryResult | None:
        """What its last row-returning statement returned, once it committed."""
        ...

    def commit_later(self) -> None:
        """Queue the COMMIT; ``SendsAhead.send_queued`` sends it and sets ``outcome``."""
        ...


class SendsAhead(Protocol):
    """A networked backend that sends several migrations' transactions in one message.

    At network distance a run of N migrations then costs about one round trip instead of
    N. Each transaction still takes the run lock and checks its guard, and the server
    skips everything after the first failure, so what commits is exactly what would have
    committed had each been sent alone."""

    def transaction(self, *, lock: bool = True, expect: Expect | None = None
                    ) -> AbstractContextManager[QueuedTransaction]: ...

    def send_queued(self) -> None:
        """Send every transaction queued with ``commit_later``; each sets its outcome."""
        ...


UNDEFINED_COLUMN = "42703"  # SQLSTATE; the SQLite backend gives it too


class QueryError(DatabaseError):
    """A statement failed; carries where, so messages can point at the file and line."""

    def __init__(self, message: str, *, sqlstate: str | None = None,
                 line: int | None = None, script: Script | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.line = line
        self.script = script  # the script a failing statement belongs to, if any


class Backend(Protocol):
    dialect: str
    placeholder: str
    display_url: str
    # SQL for the milliseconds since the current transaction began, measured where the
    # transaction runs; a history row written with the COMMIT uses it for its duration.
    elapsed_ms: str
    # Where server notices raised by a migration go (None: dropped), set by the runner.
    on_notice: Callable[[str], None] | None
    # False for a connection opened only to read (status, planning), which cannot write.
    writable: bool

    def query(self, sql: str, params: Params = None) -> QueryResult:
        """One statement now, with values bound by the driver."""
        ...

    def run_script(self, script: Script) -> QueryResult:
        """Every statement of ``script`` now, in order; the result is the last one's."""
        ...

    def outside_transaction(self) -> AbstractContextManager[None]:
        """The environment's lock_timeout and statement_timeout for the statements run in
        the block outside any transaction (a non-transactional migration), and the session
        reset after it."""
        ...

    def transaction(self, *, lock: bool = True, expect: Expect | None = None
                    ) -> AbstractContextManager[Transaction]:
        """A transaction; with ``lock`` it first takes the run lock (waiting ``lock_wait``)
        and applies the environment's ``lock_timeout``/``statement_timeout`` to it. Leaving
        the block commits what is still open, or rolls back on an exception."""
        ...

    def table_exists(self, table: str) -> bool: ...

    def quote_table(self, table: str) -> str: ...

    def ensure_schema(self, table: str) -> None:
        """Create the schema of a qualified table name if the dialect has schemas."""
        ...

    def close(self) -> None: ...
