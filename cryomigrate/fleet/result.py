"""What a fleet run did: one outcome per database, in configuration order, and a summary.

A database's entry holds the document its command would print alone, so a script that
reads ``cryomigrate apply --format json`` for one database reads each fleet entry the
same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["ok", "failed", "interrupted", "not started"]


@dataclass(frozen=True)
class DatabaseOutcome:
    """One database of a fleet: what its command returned, or why it did not succeed."""

    database: str  # the URL with its password masked
    outcome: Outcome
    duration_ms: int = 0
    result: Any = None  # the command's result; a failed run's partial result, if any
    code: int = 0  # the exit code this database alone would have had
    message: str | None = None
    # The newest applied version afterwards, when the command knows it (status, apply,
    # rollback); None there means no migration is applied.
    version: str | None = None
    version_known: bool = False

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"database": self.database, "outcome": self.outcome,
                                    "duration_ms": self.duration_ms}
        if self.version_known:
            document["version"] = self.version
        if self.result is not None and hasattr(self.result, "to_dict"):
            own = self.result.to_dict()
            own.pop("environment", None)  # the fleet's, said once at the top
            own.pop("database", None)  # status's server-side name; ours is above
            document.update(own)
        document["error"] = None if self.outcome == "ok" else {"code": self.code,
                                                                "message": self.message}
        return document


@dataclass(frozen=True)
class FleetResult:
    """A command on every database of a fleet environment (or of one ``--shard``)."""

    environment: str
    command: str
    databases: tuple[DatabaseOutcome, ...]  # configuration order
    fleet_size: int  # databases in the whole fleet, before --shard
    shard: str | None = None  # "2/3"

    @property
    def failed(self) -> tuple[DatabaseOutcome, ...]:
        return tuple(d for d in self.databases if d.outcome != "ok")

    @property
    def exit_code(self) -> int:
        """0, or the code of the first database in configuration order that failed."""
        return next((d.code for d in self.databases if d.outcome != "ok"), 0)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for d in self.databases if d.outcome == outcome)

    def versions(self) -> list[tuple[str | None, int]]:
        """How many databases stand at each version (None: nothing applied), oldest first."""
        counts = Counter(d.version for d in self.databases if d.version_known)
        return sorted(counts.items(), key=lambda item: -1 if item[0] is None else int(item[0]))

    def summary(self) -> dict[str, Any]:
        return {
            "databases": len(self.databases),
            "fleet_size": self.fleet_size,
            "shard": self.shard,
            "ok": self.count("ok"),
            "failed": self.count("failed"),
            "interrupted": self.count("interrupted"),
            "not_started": self.count("not started"),
            "versions": [{"version": v, "databases": n} for v, n in self.versions()],
            "failures": [{"database": d.database, "outcome": d.outcome, "code": d.code,
                          "message": d.message} for d in self.failed],
        }

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "command": self.command,
                "databases": [d.to_dict() for d in self.databases],
                "summary": self.summary()}
