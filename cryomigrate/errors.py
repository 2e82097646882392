"""The one exception tree of cryomigrate; each class carries the exit code the CLI uses.

    CryomigrateError                  1  anything unexpected from a migration or database
    ├── MigrationFailed               1  a migration raised or a statement failed
    ├── InputError                    2  bad usage, config, migration files or templates
    │   ├── ConfigError
    │   ├── MigrationFileError
    │   └── TemplateError
    ├── PolicyRefused                 3  a policy forbids it, or it was not confirmed
    ├── StateBlocked                  4  modified, dirty, missing or out-of-order migrations
    │   ├── DirtyMigration                 a run stopped (or is still running) inside one
    │   └── PlanOutdated                   another run changed the history under this one
    ├── LockTimeout                   5  another run held the lock for longer than --lock-wait
    ├── ConnectionFailed              6  the database could not be reached
    ├── FleetFailed                 1-6  databases of a fleet failed: the first one's code
    └── Interrupted                 130  Ctrl-C during a run (what it left is said)

    KeyboardInterrupt
    └── InterruptedWaitingForLock        Ctrl-C before a migration got the run lock (the
                                         runner turns it into Interrupted, journaling nothing)

Messages are written for the person at the terminal: they name the file, key or
migration and say what to do next. Every message passes through the redactor when the
exception is created, so a password can never leak through ``str(error)``.
"""

from __future__ import annotations

from typing import Any

from cryomigrate.redact import redact


class CryomigrateError(Exception):
    """Base of every error cryomigrate raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, result: Any = None) -> None:
        super().__init__(redact(message))
        # The partial result of a run that stopped half-way (what was applied before the
        # failure), so that ``--format json`` can still report it.
        self.result = result

    @property
    def message(self) -> str:
        return str(self)


class MigrationFailed(CryomigrateError):
    """A migration's own code or SQL failed; its transaction was rolled back."""

    exit_code = 1


class DatabaseError(CryomigrateError):
    """The database failed outside any migration (history table, lock query, ...)."""

    exit_code = 1


class InputError(CryomigrateError):
    exit_code = 2


class ConfigError(InputError):
    """environments.yaml is missing, malformed or names something that does not exist."""


class MigrationFileError(InputError):
    """A migration file is misnamed, duplicated, unreadable or does not load."""


class TemplateError(InputError):
    """A Jinja template does not parse or uses an undefined variable."""


class PolicyRefused(CryomigrateError):
    exit_code = 3


class StateBlocked(CryomigrateError):
    exit_code = 4


class PlanOutdated(StateBlocked):
    """Another run changed the history while this one waited for the lock, so that what
    it planned (the newest N, in order) no longer holds; the runner names the migration."""


class DirtyMigration(StateBlocked):
    """A non-transactional migration is marked dirty; a live run may still be inside it."""

    def __init__(self, message: str, *, label: str = "", result: Any = None) -> None:
        super().__init__(message, result=result)
        self.label = label  # the migration's file name, for the wait (``DirtyWait``)


class LockTimeout(CryomigrateError):
    exit_code = 5

    @classmethod
    def waited(cls, holder: str, wait_ms: int) -> LockTimeout:
        """``holder`` says who holds the lock; the message ends with how to wait longer."""
        return cls(f"{holder}; gave up after {wait_ms / 1000:g}s "
                   "(raise --lock-wait to wait longer)")


class ConnectionFailed(CryomigrateError):
    exit_code = 6


class FleetFailed(CryomigrateError):
    """Some databases of a fleet failed; ``result`` is the FleetResult of every database.

    Its exit code is that of the first failed database in configuration order, so a
    fleet of one fails exactly as that database alone would.
    """

    def __init__(self, message: str, *, exit_code: int, result: Any = None) -> None:
        super().__init__(message, result=result)
        self.exit_code = exit_code


class Interrupted(CryomigrateError):
    """Ctrl-C during a run: the message says what the interrupted migration left behind."""

    exit_code = 130


class InterruptedWaitingForLock(KeyboardInterrupt):
    """Ctrl-C while a migration's transaction still waited for the run lock: nothing of
    that migration had run, so there is no attempt to journal. A KeyboardInterrupt still,
    for everything that stops on one."""
