"""Execute a plan: one locked transaction per migration, holding its change and record.

Concurrency: each migration's transaction first takes the run lock, then re-reads that
migration's history row and skips it if another run got there first. The lock is held
only for the length of one transaction, so it works behind a transaction pooler, and a
non-transactional migration runs with no transaction (and no lock) open at all; a
``dirty`` row, written before it starts and cleared after, marks it while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryomigrate.backends import Backend
from cryomigrate.backends.base import ELAPSED_MS
from cryomigrate.config import Environment
from cryomigrate.connection import MigrationConnection
from cryomigrate.errors import CryomigrateError, DirtyMigration, LockTimeout, MigrationFailed
from cryomigrate.loader import Direction, Migration
from cryomigrate.models import MigrationRun, RunResult
from cryomigrate.planner import DIRTY_POLL_S, settle_dirty
from cryomigrate.tracker import Tracker, now

Progress = Callable[[str, Any], None]


@dataclass
class _Run:
    direction: Direction
    done: list[MigrationRun] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Runner:
    def __init__(self, backend: Backend, tracker: Tracker, env: Environment,
                 progress: Progress | None = None, lock_wait: float = 60) -> None:
        self.backend = backend
        self.lock_wait = lock_wait
        self.tracker = tracker
        self.env = env
        self._progress = progress or (lambda event, payload: None)

    def run(self, direction: Direction, migrations: Sequence[Migration]) -> RunResult:
        state = _Run(direction)
        try:
            if migrations and not self.tracker.ready:
                with self.backend.transaction(lock=True):
                    self.tracker.ensure_tables()
            for migration in migrations:
                self._one(state, migration)
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

    def _one(self, state: _Run, migration: Migration) -> None:
        self._progress("start", migration)
        conn = MigrationConnection(
            self.backend, environment=self.env.name, vars=self.env.vars,
            origin=migration.file.label, transactional=migration.transactional,
            notice=self._notice(state),
        )
        started_at, clock = now(), time.perf_counter()
        try:
            ran = (self._transactional(state.direction, migration, conn, started_at)
                   if migration.transactional
                   else self._outside_transaction(state.direction, migration, conn, started_at,
                                                  clock))
        except LockTimeout:
            raise  # nothing was attempted
        except MigrationFailed as exc:
            self._journal_failure(state.direction, migration, started_at, clock, exc)
            raise
        except CryomigrateError as exc:
            # E.g. a deferred constraint failing at COMMIT, or a template error raised by
            # conn.render: still this migration failing, and journaled as such.
            self._journal_failure(state.direction, migration, started_at, clock, exc)
            if exc.exit_code == 1:
                raise MigrationFailed(_prefixed(migration, str(exc))) from exc
            raise
        if not ran:
            state.skipped.append(migration.file.label)
            self._progress("skip", migration)
            return
        run = MigrationRun(migration.file.version_text, migration.file.name,
                           migration.file.kind, _elapsed_ms(clock),
                           description=migration.description)
        state.done.append(run)
        self._progress("done", run)

    def _transactional(self, direction: Direction, migration: Migration,
                       conn: MigrationConnection, started_at: str) -> bool:
        file = migration.file
        with self.backend.transaction(lock=True,
                                      first=self.tracker.select_one(file.version)) as tx:
            row = self.tracker.row_from(tx.first)
            if (row is not None) == (direction == "apply"):
                return False  # another run got here first
            conn._transaction = tx
            _execute(direction, migration, conn)
            if direction == "apply":
                self.tracker.insert(version=file.version, version_text=file.version_text,
                                    name=file.name, kind=file.kind, checksum=migration.checksum,
                                    state="applied", duration_ms=ELAPSED_MS, tx=tx)
            else:
                self.tracker.delete(file.version, file.version_text, tx=tx)
            self.tracker.journal(version_text=file.version_text, name=file.name,
                                 action=direction, outcome="ok", started_at=started_at,
                                 duration_ms=ELAPSED_MS, tx=tx)
        return True

    def _outside_transaction(self, direction: Direction, migration: Migration,
                             conn: MigrationConnection, started_at: str, clock: float) -> bool:
        file = migration.file
        if not self._claim(direction, migration):
            return False
        try:
            _execute(direction, migration, conn)
        except MigrationFailed as exc:
            raise MigrationFailed(
                f"{exc} -- it ran outside a transaction, so it is now marked dirty; check "
                f"what the database holds, then run {settle_dirty(file.version_text)}"
            ) from exc
        with self.backend.transaction(lock=True) as tx:
            duration = _elapsed_ms(clock)
            if direction == "apply":
                self.tracker.set_state(file.version, file.version_text, "applied", duration,
                                       tx=tx)
            else:
                self.tracker.delete(file.version, file.version_text, tx=tx)
            self.tracker.journal(version_text=file.version_text, name=file.name,
                                 action=direction, outcome="ok", started_at=started_at,
                                 duration_ms=duration, tx=tx)
        return True

    def _claim(self, direction: Direction, migration: Migration) -> bool:
        """Mark a non-transactional migration dirty before it runs; False if already done.

        A dirty row seen here belongs to a concurrent run that is executing the migration
        right now (the plan was made before it was marked), so wait for it like for a lock;
        if it stays dirty past ``lock_wait``, that run died and a person must settle it.
        """
        file = migration.file
        deadline = time.monotonic() + self.lock_wait
        while True:
            with self.backend.transaction(
                    lock=True, first=self.tracker.select_one(file.version)) as tx:
                row = self.tracker.row_from(tx.first)
                if row is None or row.state != "dirty":
                    if (row is not None) == (direction == "apply"):
                        return False
                    if direction == "apply":
                        self.tracker.insert(version=file.version, version_text=file.version_text,
                                            name=file.name, kind=file.kind,
                                            checksum=migration.checksum, state="dirty",
                                            duration_ms=0, tx=tx)
                    else:
                        self.tracker.set_state(file.version, file.version_text, "dirty", 0, tx=tx)
                    return True
            if time.monotonic() >= deadline:
                raise DirtyMigration(
                    f"{file.label} is marked dirty: a run stopped inside it (or is still "
                    "running it after --lock-wait); once no run is active, check the database "
                    f"and run {settle_dirty(file.version_text)}"
                )
            time.sleep(DIRTY_POLL_S)

    def _journal_failure(self, direction: Direction, migration: Migration, started_at: str,
                         clock: float, exc: CryomigrateError) -> None:
        """Journal a failure after its transaction rolled back; never hide the real error."""
        try:
            with self.backend.transaction(lock=False):
                self.tracker.journal(version_text=migration.file.version_text,
                                     name=migration.file.name, action=direction,
                                     outcome="failed", started_at=started_at,
                                     duration_ms=_elapsed_ms(clock), error=str(exc))
        except CryomigrateError:
            pass  # the connection may be gone; the migration's own error is what matters


def _execute(direction: Direction, migration: Migration, conn: MigrationConnection) -> None:
    """Run the migration; anything it raises becomes MigrationFailed naming the file."""
    try:
        migration.run(direction, conn)
    except CryomigrateError as exc:
        if isinstance(exc, MigrationFailed) or exc.exit_code != 1:
            raise
        raise MigrationFailed(_prefixed(migration, str(exc))) from exc
    except Exception as exc:
        raise MigrationFailed(
            _prefixed(migration, f"{direction}() raised {type(exc).__name__}: {exc}")
        ) from exc


def _prefixed(migration: Migration, message: str) -> str:
    label = migration.file.label
    return message if message.startswith(label) else f"{label}: {message}"


def _elapsed_ms(clock: float) -> int:
    return round((time.perf_counter() - clock) * 1000)
