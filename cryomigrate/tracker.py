"""The only module that reads and writes the history and journal tables (their DDL is in
tracker_schema.py).

History holds one row per applied (or dirty) migration; the journal is append-only, one
row per attempt. Every history write is sure to touch exactly one row: a write sent on its
own checks the count it gets back; a write queued with a migration's COMMIT is preceded,
under the same lock and in the same transaction, by a guard that the row is as expected
(``guard``), since its count comes back only after the COMMIT. A write that touched none
would mean another run changed the table under us, and must not pass silently.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from cryomigrate.backends import Backend, Expect, Transaction
from cryomigrate.backends.base import UNDEFINED_COLUMN, Params, QueryError
from cryomigrate.errors import ConfigError, DatabaseError
from cryomigrate.models import HistoryRow, RepeatableRow
from cryomigrate.tracker_schema import (
    COLUMNS,
    HARDEN_PG,
    HARDEN_REPEATABLE_PG,
    HISTORY_DDL,
    JOURNAL_DDL,
    REPEATABLE_COLUMNS,
    REPEATABLE_DDL,
    UTC_TEXT,
)

if TYPE_CHECKING:
    from cryomigrate.results import JournalEntry


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def elapsed_ms(clock: float) -> int:
    """Milliseconds since ``clock``, a ``time.perf_counter()`` reading."""
    return round((time.perf_counter() - clock) * 1000)


@lru_cache(maxsize=1)
def current_user() -> str:
    import getpass  # only a run that writes history asks

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return "unknown"


# The newest version a run expects the history to hold (None: no row at all), or False
# where nothing is checked (a scratch database of verify or drift, which no one shares).
Newest = int | Literal[False] | None


class Tracker:
    def __init__(self, backend: Backend, table: str, environment: str) -> None:
        self.backend = backend
        self.environment = environment
        self._table_name = table
        self.history = backend.quote_table(table)
        self.journal_table = backend.quote_table(table + "_journal")
        self._p = backend.placeholder
        # The tables are known to exist (read, or created, on this or an earlier
        # connection): no CREATE TABLE IF NOT EXISTS, and no transaction for it, per run.
        self.ready = False
        self.repeatable_ready = False  # the same, for the repeatable runs' table
        utc = UTC_TEXT[backend.dialect]
        self._select = COLUMNS.replace(
            "applied_at", utc.format(column="applied_at") + " AS applied_at")
        self._started_at = utc.format(column="started_at") + " AS started_at"

    def exists(self) -> bool:
        return self.backend.table_exists(self._table_name)

    def own_tables(self) -> tuple[str, ...]:
        """The tables cryomigrate keeps (as configured, schema-qualified or not): a schema
        snapshot leaves them out, since they differ wherever history does."""
        name = self._table_name
        return (name, name + "_journal", name + "_repeatable")

    def ensure_tables(self, tx: Transaction) -> None:
        """Create both tables if missing, with ``tx`` holding the run lock so creation
        cannot race; on PostgreSQL only their owner can touch them."""
        if self.ready:
            return
        dialect = self.backend.dialect
        where = f"creating the history table {self._table_name}"
        self.backend.ensure_schema(self._table_name)
        tx.defer(HISTORY_DDL[dialect].format(table=self.history), where=where)
        tx.defer(JOURNAL_DDL[dialect].format(table=self.journal_table), where=where)
        if dialect == "postgresql":
            tx.defer(HARDEN_PG.format(history=self.history, journal=self.journal_table),
                     where=f"restricting access to the history table {self._table_name}")
        self.ready = True

    def read_all(self) -> dict[int, HistoryRow]:
        if not self.exists():
            return {}
        self.ready = True
        try:
            rows = self.backend.query(f"SELECT {self._select} FROM {self.history}").data
        except QueryError as exc:
            if exc.sqlstate != UNDEFINED_COLUMN:
                raise
            raise ConfigError(
                f"history_table: {self._table_name} exists but is not cryomigrate's history "
                f"({exc}); is it another tool's (dbmate's and golang-migrate's are "
                "schema_migrations)? Name a table of cryomigrate's own, and adopt the other "
                "tool's history with `cryomigrate adopt --from TOOL`") from None
        return {int(row["version"]): _history_row(row) for row in rows}

    def newest(self) -> int | None:
        """The newest version recorded, in any state; None when there is no row."""
        rows = self.backend.query(f"SELECT max(version) AS newest FROM {self.history}")
        value = rows.data[0]["newest"] if rows.data else None
        return None if value is None else int(value)

    def read_one(self, version: int) -> HistoryRow | None:
        rows = self.backend.query(
            f"SELECT {self._select} FROM {self.history} WHERE version = {self._p}", (version,))
        return _history_row(rows.data[0]) if rows.data else None

    def guard(self, version: int, *, applied: bool, state: str | None = None,
              newest: Newest = False) -> Expect:
        """The expectation a migration's transaction checks before its work: the history row
        of ``version`` exists (``applied``) or not; with ``state``, exists in that state.
        With ``newest`` (None: no row at all), the newest version recorded must be that
        one, as the run planned it, else the plan is stale. Versions are integers parsed
        by cryomigrate, so they are spelled inline."""
        query = f"SELECT 1 FROM {self.history} WHERE version = {int(version)}"
        if state is not None:
            query += f" AND state = '{state}'"
        stale = None
        if newest is not False:
            expected = -1 if newest is None else int(newest)  # versions are never negative
            stale = f"COALESCE((SELECT max(version) FROM {self.history}), -1) <> {expected}"
        return Expect(query, present=applied, stale=stale)

    def unchanged(self, history: dict[int, HistoryRow]) -> Expect:
        """The expectation of a command that decided its history writes from ``history``
        (read before its locked transaction, as over an API where each call is its own
        transaction): the table holds exactly those rows, in those states and checksums.
        Versions are integers, states cryomigrate's own; checksums are quoted as literals."""
        rows = ", ".join(f"({int(v)}, {_literal(r.state)}, {_literal(r.checksum)})"
                         for v, r in sorted(history.items()))
        query = f"SELECT 1 WHERE (SELECT count(*) FROM {self.history}) = {len(history)}"
        if rows:
            query += (f" AND (SELECT count(*) FROM {self.history} WHERE (version, state, "
                      f"checksum) IN (VALUES {rows})) = {len(history)}")
        return Expect(query, present=True)

    def insert(self, *, version: int, version_text: str, name: str, kind: str, checksum: str,
               state: str, duration_ms: int, tx: Transaction | None = None) -> None:
        self._write(tx, "insert", version_text, *self._insert_sql(
            version, version_text, name, kind, checksum, state, duration_ms))

    def _insert_sql(self, version: int, version_text: str, name: str, kind: str,
                    checksum: str, state: str, duration_ms: int | None
                    ) -> tuple[str, tuple[object, ...]]:
        """``duration_ms`` None: the time since the transaction began, as the database
        measures it when the row is written (with the COMMIT, after the script)."""
        p = self._p
        duration = p if duration_ms is not None else self.backend.elapsed_ms
        values: tuple[object, ...] = (version, version_text, name, kind, checksum, state, now(),
                                      current_user())
        if duration_ms is not None:
            values += (duration_ms,)
        return (f"INSERT INTO {self.history} ({COLUMNS}) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {duration})", values)

    def set_state(self, version: int, version_text: str, state: str, duration_ms: int,
                  tx: Transaction | None = None) -> None:
        p = self._p
        self._write(
            tx, "update", version_text,
            f"UPDATE {self.history} SET state = {p}, duration_ms = {p}, applied_at = {p} "
            f"WHERE version = {p}",
            (state, duration_ms, now(), version),
        )

    def set_checksum(self, version: int, version_text: str, checksum: str,
                     tx: Transaction | None = None) -> None:
        p = self._p
        self._write(tx, "update", version_text,
                    f"UPDATE {self.history} SET checksum = {p} WHERE version = {p}",
                    (checksum, version))

    def delete(self, version: int, version_text: str, tx: Transaction | None = None) -> None:
        self._write(tx, "delete", version_text, *self._delete_sql(version))

    def _delete_sql(self, version: int) -> tuple[str, tuple[object, ...]]:
        return f"DELETE FROM {self.history} WHERE version = {self._p}", (version,)

    def journal(self, *, version_text: str, name: str, action: str, outcome: str,
                started_at: str, duration_ms: int | None, error: str | None = None,
                tx: Transaction | None = None) -> None:
        """``duration_ms`` None: measured by the database, as in ``record_run``."""
        sql, params = self._journal_sql(version_text, name, action, outcome, started_at,
                                        duration_ms, error)
        if tx is not None:
            tx.defer(sql, params, where="writing the journal")
        else:
            self.backend.query(sql, params)

    def record_run(self, *, direction: str, version: int, version_text: str, name: str,
                   kind: str, checksum: str, started_at: str, tx: Transaction,
                   returning: bool = False) -> None:
        """A migration's history write (its row added, or removed by a rollback) and its
        journal row, queued in ``tx`` behind its guard, with the duration measured by the
        database; ``returning``: the journal row gives the duration back. On
        PostgreSQL they are one statement (a data-modifying WITH, which runs whether or
        not it is read): every statement queued costs the client and the server alike,
        per migration."""
        if direction == "apply":
            history = self._insert_sql(version, version_text, name, kind, checksum,
                                       "applied", None)
        else:
            history = self._delete_sql(version)
        journal = self._journal_sql(version_text, name, direction, "ok", started_at, None,
                                    None, returning)
        where = f"writing the history row of {version_text}"
        if self.backend.dialect == "postgresql":
            tx.defer(f"WITH history AS ({history[0]}) {journal[0]}", history[1] + journal[1],
                     where=f"{where} and the journal")
        else:
            tx.defer(*history, where=where)
            tx.defer(*journal, where="writing the journal")

    def _journal_sql(self, version_text: str, name: str, action: str, outcome: str,
                     started_at: str, duration_ms: int | None, error: str | None,
                     returning: bool = False) -> tuple[str, tuple[object, ...]]:
        p = self._p
        duration = p if duration_ms is not None else self.backend.elapsed_ms
        sql = (f"INSERT INTO {self.journal_table} (version, name, action, outcome, environment, "
               f"started_at, duration_ms, error) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, "
               f"{duration}, {p})" + (" RETURNING duration_ms" if returning else ""))
        params: tuple[object, ...] = (version_text, name, action, outcome, self.environment,
                                      started_at)
        params += (duration_ms, error) if duration_ms is not None else (error,)
        return sql, params

    def _write(self, tx: Transaction | None, what: str, version_text: str, sql: str,
               params: Params) -> None:
        """A history write that must touch exactly one row; with ``tx``, queued behind the
        transaction's guard, which made sure of it (see the module docstring)."""
        if tx is not None:
            tx.defer(sql, params, where=f"writing the history row of {version_text}")
        else:
            self._one_row(self.backend.query(sql, params).rowcount, what, version_text)

    # -- repeatable migrations (DESIGN §12) ---------------------------------------------

    @property
    def _repeatable_name(self) -> str:
        return self._table_name + "_repeatable"

    @property
    def repeatable_table(self) -> str:
        return self.backend.quote_table(self._repeatable_name)

    def ensure_repeatable_table(self, tx: Transaction) -> None:
        """Create the repeatable runs' table if missing, with ``tx`` holding the run lock;
        a database whose history predates repeatables gains it here, once."""
        if self.repeatable_ready:
            return
        dialect = self.backend.dialect
        self.backend.ensure_schema(self._repeatable_name)
        tx.defer(REPEATABLE_DDL[dialect].format(table=self.repeatable_table),
                 where=f"creating the table {self._repeatable_name}")
        if dialect == "postgresql":
            tx.defer(HARDEN_REPEATABLE_PG.format(table=self.repeatable_table),
                     where=f"restricting access to the table {self._repeatable_name}")
        self.repeatable_ready = True

    def read_repeatables(self) -> dict[str, RepeatableRow]:
        """The last applied run of each repeatable, by name; nothing (and nothing created)
        when no repeatable has run yet."""
        if not self.backend.table_exists(self._repeatable_name):
            return {}
        self.repeatable_ready = True
        columns = REPEATABLE_COLUMNS.replace(
            "applied_at", UTC_TEXT[self.backend.dialect].format(column="applied_at")
            + " AS applied_at")
        rows = self.backend.query(f"SELECT {columns} FROM {self.repeatable_table}").data
        return {str(row["name"]): RepeatableRow(
            name=str(row["name"]), kind=str(row["kind"]), checksum=str(row["checksum"]),
            applied_at=_text_time(row["applied_at"]), applied_by=str(row["applied_by"]),
            duration_ms=int(row["duration_ms"])) for row in rows}

    def repeatable_guard(self, name: str, checksum: str) -> Expect:
        """A repeatable's run goes ahead only if no run recorded this very content: a
        concurrent run that applied it first turns this one into a skip. The name is
        [A-Za-z0-9_] and the checksum sha256:<hex>, both checked by cryomigrate, so they
        are spelled inline (a guard takes no parameters)."""
        if not (name.replace("_", "").isalnum() and name.isascii()
                and checksum.startswith("sha256:") and checksum[7:].isalnum()):
            raise DatabaseError(f"internal: unexpected repeatable name or checksum {name!r}")
        return Expect(f"SELECT 1 FROM {self.repeatable_table} WHERE name = '{name}' "
                      f"AND checksum = '{checksum}'", present=False)

    def record_repeatable(self, *, name: str, kind: str, checksum: str,
                          tx: Transaction) -> None:
        """Queue the row of this run, replacing the previous run's: one row per name. The
        upsert touches exactly one row by construction, behind the transaction's guard."""
        p = self._p
        sql = (f"INSERT INTO {self.repeatable_table} ({REPEATABLE_COLUMNS}) "
               f"VALUES ({p}, {p}, {p}, {p}, {p}, {self.backend.elapsed_ms}) "
               "ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, "
               "checksum = excluded.checksum, applied_at = excluded.applied_at, "
               "applied_by = excluded.applied_by, duration_ms = excluded.duration_ms")
        tx.defer(sql, (name, kind, checksum, now(), current_user()),
                 where=f"writing the history row of R_{name}")

    def read_journal(self, limit: int | None = None) -> list[JournalEntry]:
        from cryomigrate.results import JournalEntry

        if not self.backend.table_exists(self._table_name + "_journal"):
            return []
        sql = (f"SELECT version, name, action, outcome, environment, {self._started_at}, "
               f"duration_ms, error FROM {self.journal_table} ORDER BY id DESC")
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [
            JournalEntry(
                version=str(row["version"]), name=row["name"], action=row["action"],
                outcome=row["outcome"], environment=row["environment"],
                started_at=_text_time(row["started_at"]), duration_ms=int(row["duration_ms"]),
                error=row["error"],
            )
            for row in self.backend.query(sql).data
        ]

    def _one_row(self, rowcount: int, what: str, version_text: str) -> None:
        if rowcount != 1:
            raise DatabaseError(
                f"history {what} for version {version_text} touched {rowcount} rows instead of "
                "one; another run may be changing the history table at the same time"
            )


def _text_time(value: Any) -> str:
    """One spelling of a time: UTC, ISO 8601, milliseconds."""
    if isinstance(value, str):
        if len(value) == 29 and value[10] == "T" and value.endswith("+00:00"):
            return value  # already so spelled, as cryomigrate writes and reads it
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return str(value.astimezone(timezone.utc).isoformat(timespec="milliseconds"))
    return str(value)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _history_row(row: dict[str, Any]) -> HistoryRow:
    return HistoryRow(
        version=int(row["version"]),
        version_text=str(row["version_text"]),
        name=str(row["name"]),
        kind=str(row["kind"]),
        checksum=str(row["checksum"]),
        state="dirty" if row["state"] == "dirty" else "applied",
        applied_at=_text_time(row["applied_at"]),
        applied_by=str(row["applied_by"]),
        duration_ms=int(row["duration_ms"]),
    )
