"""A migration that runs outside any transaction, between its dirty mark and its record.

Its work cannot commit together with its history row, so the row says ``dirty`` from
before it starts until it is done: a run that stops inside it leaves the mark for a
person to settle (``settle_dirty``), and a concurrent run waits for the mark as for the
run lock. Over the Supabase HTTP API, where every call is a transaction of its own, a
Python migration is run this way too (see ``Runner._atomic``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cryomigrate.dirty_wait import DirtyWait
from cryomigrate.errors import (
    CryomigrateError,
    DirtyMigration,
    InterruptedWaitingForLock,
    MigrationFailed,
    PlanOutdated,
)
from cryomigrate.planner import settle_dirty
from cryomigrate.tracker import Newest, Tracker, elapsed_ms

if TYPE_CHECKING:
    from cryomigrate.backends import Backend, Transaction
    from cryomigrate.loader import Direction, Migration


class OutsideTransaction:
    def __init__(self, backend: Backend, tracker: Tracker, lock_wait: float,
                 progress: Callable[[str, Any], None]) -> None:
        self.backend = backend
        self.tracker = tracker
        self.lock_wait = lock_wait
        self._progress = progress

    def run(self, direction: Direction, migration: Migration, execute: Callable[[], None],
            started_at: str, clock: float, record: Callable[[Transaction], None],
            newest: Newest = False) -> bool:
        """Mark, ``execute`` and record the migration; False if another run did it first.
        ``record``: what else is written with its history row (the Supabase CLI's row);
        ``newest``: the newest version the history must hold as it is claimed (see
        ``Tracker.guard``)."""
        file = migration.file
        if not self._claim(direction, migration, newest):
            return False
        try:
            with self.backend.outside_transaction():
                execute()
        except MigrationFailed as exc:
            raise MigrationFailed(
                f"{exc}{self._left_invalid()} -- it ran outside a transaction, so it is now "
                "marked dirty; check "
                f"what the database holds, then run {settle_dirty(file.version_text)}"
            ) from exc
        try:
            return self._record(direction, migration, started_at, clock, record)
        except InterruptedWaitingForLock:
            # It ran: only its record waited for the lock. Stopped there, it is left dirty,
            # as when stopped inside it.
            raise KeyboardInterrupt from None

    def _record(self, direction: Direction, migration: Migration, started_at: str,
                clock: float, record: Callable[[Transaction], None]) -> bool:
        """Its history row from dirty to done, in one locked transaction with the rest."""
        file = migration.file
        guard = self.tracker.guard(file.version, applied=True, state="dirty")
        with self.backend.transaction(lock=True, expect=guard) as tx:
            duration = elapsed_ms(clock)
            if direction == "apply":
                self.tracker.set_state(file.version, file.version_text, "applied", duration,
                                       tx=tx)
            else:
                self.tracker.delete(file.version, file.version_text, tx=tx)
            record(tx)
            self.tracker.journal(version_text=file.version_text, name=file.name,
                                 action=direction, outcome="ok", started_at=started_at,
                                 duration_ms=duration, tx=tx)
            if not tx.commit():
                raise DirtyMigration(
                    f"{file.label} ran, but its dirty history row changed while it ran "
                    "(repaired by hand?); check the database, then run "
                    f"{settle_dirty(file.version_text)}", label=file.label)
        return True

    def _left_invalid(self) -> str:
        """After a non-transactional failure: the INVALID indexes a failed CREATE INDEX
        CONCURRENTLY leaves behind (PostgreSQL keeps them, and a retry then fails on the
        name), with how to drop them."""
        from cryomigrate.snapshot.catalog import invalid_indexes

        try:
            names = invalid_indexes(self.backend)
        except CryomigrateError:
            return ""  # the connection may be gone; the migration's own error matters
        return "".join(f"; it left the INVALID index {name} behind (a failed CREATE INDEX "
                       f"CONCURRENTLY); drop it with `DROP INDEX CONCURRENTLY IF EXISTS "
                       f"{name};` before running it again" for name in names)

    def _claim(self, direction: Direction, migration: Migration, newest: Newest) -> bool:
        """Mark a non-transactional migration dirty before it runs; False if already done.

        A dirty row seen here belongs to a concurrent run that is executing the migration
        right now (the plan was made before it was marked), so wait for it like for a lock;
        if it stays dirty past ``lock_wait``, that run died and a person must settle it.
        """
        file = migration.file
        if calls_are_transactions(self.backend):
            return self._claim_in_one_call(direction, migration, newest)
        wait = DirtyWait(self.lock_wait, lambda text: self._progress("warning", text))
        while True:
            with self.backend.transaction(lock=True) as tx:
                row = self.tracker.read_one(file.version)
                if row is None or row.state != "dirty":
                    if (row is not None) == (direction == "apply"):
                        return False
                    if newest is not False and self.tracker.newest() != newest:
                        raise PlanOutdated("another run changed the history meanwhile")
                    if direction == "apply":
                        self.tracker.insert(version=file.version, version_text=file.version_text,
                                            name=file.name, kind=file.kind,
                                            checksum=migration.checksum, state="dirty",
                                            duration_ms=0, tx=tx)
                    else:
                        self.tracker.set_state(file.version, file.version_text, "dirty", 0, tx=tx)
                    return True
            if not wait.pause(file.label):
                raise DirtyMigration(
                    f"{file.label} is marked dirty: a run stopped inside it (or is still "
                    "running it after --lock-wait); once no run is active, check the database "
                    f"and run {settle_dirty(file.version_text)}", label=file.label)

    def _claim_in_one_call(self, direction: Direction, migration: Migration,
                           newest: Newest) -> bool:
        """Mark the migration dirty in one guarded call (read and write cannot share a
        transaction across calls); False if another run got there first."""
        file = migration.file
        rollback = direction == "rollback"
        guard = self.tracker.guard(file.version, applied=rollback,
                                   state="applied" if rollback else None, newest=newest)
        with self.backend.transaction(lock=True, expect=guard) as tx:
            if rollback:
                self.tracker.set_state(file.version, file.version_text, "dirty", 0, tx=tx)
            else:
                self.tracker.insert(version=file.version, version_text=file.version_text,
                                    name=file.name, kind=file.kind, checksum=migration.checksum,
                                    state="dirty", duration_ms=0, tx=tx)
            return tx.commit()


def calls_are_transactions(backend: Backend) -> bool:
    """True for a transport where each call is a transaction of its own (the Supabase HTTP
    API): nothing can stay open between two calls."""
    return bool(getattr(backend, "calls_are_transactions", False))


def refuse_over_http(migrations: Sequence[Migration]) -> None:
    """A non-transactional SQL migration's statements must run outside any transaction,
    which no call over the HTTP API can do: refused before anything runs. So is a Python
    repeatable: its calls cannot share a transaction, and a repeatable has no history row
    to mark dirty while it runs (DESIGN 8.1), so a failure part-way, or a second run
    executing it at the same time, would go unseen."""
    from cryomigrate.errors import InputError

    python = [m.file.label for m in migrations if m.file.repeatable and m.file.kind == "python"]
    if python:
        raise InputError(
            f"{', '.join(python)}: a repeatable Python migration cannot run over the Supabase "
            "HTTP API, where each of its calls is a transaction of its own and a repeatable "
            "has no history row to mark dirty while it runs. Nothing was run. Write it as a "
            "repeatable SQL migration (R_name.sql), or give this environment a direct "
            "connection (database: postgresql://...)")
    refused = [m.file.label for m in migrations
               if not m.transactional and m.file.kind != "python"]
    if refused:
        raise InputError(
            f"{', '.join(refused)} must run outside a transaction (-- cryomigrate:no-transaction"
            "), which the Supabase HTTP API cannot do: every call is one transaction. Nothing "
            "was run. Give this environment a direct connection (database: postgresql://... "
            "from the project's Database settings, direct or session pooler) for it")
