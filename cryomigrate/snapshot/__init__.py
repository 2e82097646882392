"""Schema snapshots and the commands built on them (DESIGN 10.3).

    catalog.py  what a database holds: the catalog queries, PostgreSQL and SQLite
    scratch.py  a throw-away database on the environment's server, dropped in every case
    verify.py   apply, roll back, compare and re-apply each migration on a scratch database
    drift.py    replay the applied migrations and compare with the environment's database

A snapshot maps each object ("column public.users.email") to its attributes ("type":
"text", ...); two snapshots compare object by object, attribute by attribute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

Snapshot = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Difference:
    """One difference between two schema snapshots."""
    object: str
    what: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Step:
    """What verify found for one migration: ``ok``, ``irreversible`` (applied, not rolled
    back: it has no rollback), ``differs`` or ``failed``."""

    migration: str
    outcome: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SnapshotCheck:
    """The result of ``verify`` or ``drift``."""

    environment: str
    command: str
    steps: tuple[Step, ...] = ()
    differences: tuple[Difference, ...] = ()
    notes: tuple[str, ...] = ()
    migration: str | None = None  # the migration that differs or failed (verify)

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "command": self.command,
                "migration": self.migration,
                "migrations": [s.to_dict() for s in self.steps],
                "differences": [d.to_dict() for d in self.differences],
                "notes": list(self.notes)}


def compare(expected: Snapshot, actual: Snapshot, *, only_actual: str,
            only_expected: str) -> list[Difference]:
    """What ``actual`` holds that ``expected`` does not (``only_actual`` says it in the
    command's words), what it lacks, and every attribute that differs."""
    found = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in expected:
            found.append(Difference(name, only_actual))
        elif name not in actual:
            found.append(Difference(name, only_expected))
        else:
            before, after = expected[name], actual[name]
            found += [Difference(name, _changed(key, before.get(key), after.get(key)))
                      for key in sorted(before.keys() | after.keys())
                      if before.get(key) != after.get(key)]
    return found


def _changed(key: str, before: str | None, after: str | None) -> str:
    def shown(value: str | None) -> str:
        return "(none)" if value in (None, "") else repr(value)

    long = any(v is not None and (len(v) > 60 or "\n" in v) for v in (before, after))
    return f"{key} differs" if long else f"{key}: {shown(before)} -> {shown(after)}"


def render(result: SnapshotCheck) -> str:
    """The text a person reads: each migration's outcome, then the differences."""
    lines = [f"  {step.outcome:<12} {step.migration}" for step in result.steps]
    lines += [f"note: {note}" for note in result.notes]
    if result.differences:
        lines.append(f"{len(result.differences)} difference(s):")
        lines += [f"  {d.object}: {d.what}" for d in result.differences]
    elif result.command == "drift":
        lines.append(f"No drift in {result.environment}: its schema matches its migrations.")
    elif result.migration is None:
        lines.append(f"Verified {len(result.steps)} migration(s) for {result.environment}: "
                     "every rollback restores the schema.")
    return "\n".join(lines)
