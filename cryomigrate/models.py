"""Frozen result types shared by every layer; ``to_dict()`` gives their JSON shape."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

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


@dataclass(frozen=True)
class JournalEntry:
    version: str
    name: str
    action: str
    outcome: str
    environment: str
    started_at: str
    duration_ms: int
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HistoryResult:
    environment: str
    entries: tuple[JournalEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "entries": [e.to_dict() for e in self.entries]}


@dataclass(frozen=True)
class Finding:
    """One problem or remark from ``validate`` or ``repair``."""

    level: Literal["error", "warning", "info"]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValidateResult:
    environment: str
    migrations: int
    environments: tuple[str, ...]
    findings: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "migrations": self.migrations,
            "environments": list(self.environments),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True)
class RepairResult:
    environment: str
    checksums_updated: tuple[str, ...]
    marked_applied: tuple[str, ...]
    marked_pending: tuple[str, ...]
    dirty: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BaselineResult:
    environment: str
    recorded: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NewResult:
    path: str
    version: str | None  # None for a repeatable migration
    name: str
    repeatable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
