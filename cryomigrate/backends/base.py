"""The small protocol every database backend implements, and the types it returns.

A backend speaks its dialect and nothing more: it knows how to connect, run SQL, open a
locked transaction and translate its driver's errors into ours. It knows nothing of
migrations, history or plans; those live above it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cryomigrate.errors import DatabaseError

if TYPE_CHECKING:
    from cryomigrate.sqlsplit import Statement

Params = Sequence[Any] | Mapping[str, Any] | None


@dataclass
class QueryResult:
    """What ``conn.sql(...).execute()`` returns: rows as dicts, and the affected row count."""

    data: list[dict[str, Any]] = field(default_factory=list)
    rowcount: int = -1


class Script:
    """SQL ready to run: ``text`` with transaction control blanked out, and its statements.

    ``first_line`` is the line of ``text`` in the migration file, so a failing statement
    can be reported at its line in the file the user edits. Statements are split out of
    ``text`` only when asked for: a networked backend sends the text whole and needs them
    only to place an error. ``dropped_control`` lists the user's own transaction control
    that was blanked out, as (file line, words such as ``BEGIN``), so that a failure can
    say the file's ``BEGIN ... COMMIT`` no longer scoped anything.
    """

    def __init__(self, origin: str, text: str, first_line: int = 1,
                 statements: Sequence[Statement] | None = None, *,
                 dropped_control: tuple[tuple[int, str], ...] = ()) -> None:
        self.origin = origin
        self.text = text
        self.first_line = first_line
        self._statements = statements
        self.dropped_control = dropped_control

    def _parts(self) -> Sequence[Statement]:
        if self._statements is None:
            from cryomigrate.sqlsplit import split  # its regexes cost ~10 ms to compile

            self._statements = split(self.text)
        return self._statements

    @property
    def statements(self) -> tuple[str, ...]:
        return tuple(s.text for s in self._parts())


    def file_line(self, index: int) -> int:
        parts = self._parts()
        if not parts:
            return self.first_line
        return self.first_line + parts[max(0, min(index, len(parts) - 1))].line - 1

    def index_at(self, offset: int) -> int:
        """The statement that holds character ``offset`` of ``text``."""
        parts = self._parts()
        return max((i for i, s in enumerate(parts) if s.start <= offset), default=0)


Check = Callable[[QueryResult], None]


class Elapsed:
    """The ``ELAPSED_MS`` parameter value: how long the transaction has run when the write
    that holds it executes, measured by the backend (on a server, by the server). Valid in
    the sequence parameters of ``Transaction.defer``, the only place it is needed."""

    def __repr__(self) -> str:
        return "ELAPSED_MS"


ELAPSED_MS = Elapsed()


@dataclass
class Transaction:
    """An open transaction: the result of the query it was opened with, and the work to
    send with its COMMIT.

    A SQL migration's script, its history and journal rows and the COMMIT travel in one
    message, after the one that opened the transaction, took the lock and read the
    migration's history row: two round trips per migration on a networked database.
    Rows deferred this way cannot know how long the script will take, so they carry
    ``ELAPSED_MS`` and the backend fills it in.
    """

    first: QueryResult = field(default_factory=QueryResult)
    script: Script | None = None
    deferred: list[tuple[str, Params, Check | None]] = field(default_factory=list)

    def defer_script(self, script: Script) -> None:
        """Run ``script`` at COMMIT, before the deferred writes; its result is not needed."""
        if self.script is not None:
            raise DatabaseError("internal: one deferred script per transaction")
        self.script = script

    def defer(self, sql: str, params: Params = None, check: Check | None = None) -> None:
        """Send ``sql`` just before COMMIT; ``check`` then inspects its result."""
        self.deferred.append((sql, params, check))


class QueryError(DatabaseError):
    """A statement failed; carries where, so messages can point at the file and line."""

    def __init__(self, message: str, *, sqlstate: str | None = None,
                 line: int | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.line = line


class Backend(Protocol):
    dialect: str
    placeholder: str
    display_url: str

    def query(self, sql: str, params: Params = None) -> QueryResult:
        """One statement, with values bound by the driver."""
        ...

    def run_script(self, script: Script) -> QueryResult:
        """Every statement of ``script`` in order; the result is the last statement's."""
        ...

    def transaction(self, *, lock: bool = True, first: tuple[str, Params] | None = None
                    ) -> AbstractContextManager[Transaction]:
        """A transaction; with ``lock`` it first takes the run lock (waiting ``lock_wait``)
        and applies the environment's ``lock_timeout``/``statement_timeout`` to it. ``first``
        is a query run right after, whose result is ``Transaction.first``."""
        ...

    def table_exists(self, table: str) -> bool: ...

    def quote_table(self, table: str) -> str: ...

    def ensure_schema(self, table: str) -> None:
        """Create the schema of a qualified table name if the dialect has schemas."""
        ...

    def close(self) -> None: ...


def rows_as_dicts(description: Any, rows: Iterator[Sequence[Any]] | list[Any]) -> list[
        dict[str, Any]]:
    if not description:
        return []
    names = [column[0] for column in description]
    return [dict(zip(names, row, strict=False)) for row in rows]
