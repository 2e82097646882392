"""Frozen result types of the less frequent commands (history, validate, repair,
baseline, new), importable from ``cryomigrate.models`` too; see there."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class JournalEntry:
    """One row of the journal, as ``history`` shows it."""
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
    """What ``history`` reports: the journal, newest first."""
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
    """What ``validate`` checked, and what it found."""
    environment: str | None  # None: none was named, and none is called development
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
    """What ``repair`` changed in the history."""
    environment: str
    checksums_updated: tuple[str, ...]
    marked_applied: tuple[str, ...]
    marked_pending: tuple[str, ...]
    dirty: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BaselineResult:
    """The versions ``baseline`` recorded as applied."""
    environment: str
    recorded: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NewResult:
    """The migration file ``new`` created."""
    path: str
    version: str | None  # None for a repeatable migration
    name: str
    repeatable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
