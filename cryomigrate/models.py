"""Frozen result types shared by every layer; ``to_dict()`` gives their JSON shape.

The results of the less frequent commands (history, validate, repair, baseline, new) are
defined in ``cryomigrate.results``, so that a status or an apply, which every CI job runs,
does not build their classes; they are importable from here all the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cryomigrate.results import BaselineResult as BaselineResult
    from cryomigrate.results import Finding as Finding
    from cryomigrate.results import HistoryResult as HistoryResult
    from cryomigrate.results import JournalEntry as JournalEntry
    from cryomigrate.results import NewResult as NewResult
    from cryomigrate.results import RepairResult as RepairResult
    from cryomigrate.results import ValidateResult as ValidateResult

_IN_RESULTS = frozenset({"BaselineResult", "Finding", "HistoryResult", "JournalEntry",
                         "NewResult", "RepairResult", "ValidateResult"})


def __getattr__(name: str) -> Any:
    if name in _IN_RESULTS:
        from cryomigrate import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

Kind = Literal["python", "sql", "template"]
# ``changed`` is a repeatable migration edited since its last run: due to run again.
State = Literal["applied", "pending", "modified", "missing", "dirty", "changed"]


@dataclass(frozen=True)
class HistoryRow:
    """One row of the history table, as the tracker reads it."""

    version: int
    version_text: str
    name: str
    kind: str
    checksum: str
    state: Literal["applied", "dirty"]
    applied_at: str
    applied_by: str
    duration_ms: int


@dataclass(frozen=True)
class RepeatableRow:
    """The last applied run of a repeatable migration, as the tracker reads it."""

    name: str
    kind: str
    checksum: str
    applied_at: str
    applied_by: str
    duration_ms: int


@dataclass(frozen=True)
class MigrationStatus:
    """One line of ``status``: a migration and its state."""
    version: str | None  # None for a repeatable migration, which has no version
    name: str
    kind: str
    state: State
    applied_at: str | None
    checksum: str | None
    repeatable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatusResult:
    """What ``status`` reports for one environment."""
    environment: str
    database: str
    migrations: tuple[MigrationStatus, ...]

    def count(self, state: State) -> int:
        return sum(1 for m in self.migrations if m.state == state)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "database": self.database,
            "migrations": [m.to_dict() for m in self.migrations],
        }


@dataclass(frozen=True)
class MigrationRun:
    """One migration a run executed (or, in a dry run, would execute)."""

    version: str | None  # None for a repeatable migration
    name: str
    kind: str
    duration_ms: int
    sql: str | None = None
    description: str = ""  # a Python module's docstring line, a SQL file's first comment
    repeatable: bool = False

    @property
    def label(self) -> str:
        """``005_add_x`` or ``R_views``: how the file name starts."""
        return f"{'R' if self.version is None else self.version}_{self.name}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": self.version,
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "duration_ms": self.duration_ms,
            "repeatable": self.repeatable,
        }
        if self.sql is not None:
            data["sql"] = self.sql
        return data


@dataclass(frozen=True)
class RunResult:
    """What ``apply`` or ``rollback`` did; ``action`` picks the JSON key for the list."""

    environment: str
    action: Literal["apply", "rollback"]
    dry_run: bool
    migrations: tuple[MigrationRun, ...]
    notices: tuple[str, ...] = ()
    # File names (``005_add_x.sql``) of planned migrations that a concurrent run applied
    # or rolled back first, so this run left them alone.
    skipped: tuple[str, ...] = field(default=())
    # apply --target, as typed: "nothing to do" then means nothing up to it, not that the
    # database is up to date.
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        key = "applied" if self.action == "apply" else "rolled_back"
        return {
            "environment": self.environment,
            "dry_run": self.dry_run,
            key: [m.to_dict() for m in self.migrations],
            "skipped": [_skipped(label) for label in self.skipped],
            "notices": list(self.notices),
        }


def _skipped(label: str) -> dict[str, str | None]:
    """``005_add_x.sql`` -> version ``005``, name ``add_x``: the keys a run's list uses;
    ``R_views.sql`` -> version None, as a repeatable has none."""
    version, _, rest = label.partition("_")
    return {"version": None if version == "R" else version, "name": rest.split(".", 1)[0],
            "file": label}
