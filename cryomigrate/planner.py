"""Pure planning: migration files + history rows -> states, plans and what blocks them.

No I/O and no database here, so every rule about targets, steps, drift and ordering is
tested directly with plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryomigrate.config import Policies
from cryomigrate.discovery import MigrationFile
from cryomigrate.errors import DirtyMigration, InputError, StateBlocked
from cryomigrate.models import HistoryRow, MigrationStatus, RepeatableRow, State


@dataclass(frozen=True)
class Entry:
    """One version as the planner sees it: its file (if any), history row (if any), state."""

    version: int
    file: MigrationFile | None
    row: HistoryRow | None
    checksum: str | None  # the file's checksum, when there is a file

    @property
    def state(self) -> str:
        if self.row is None:
            return "pending"
        if self.row.state == "dirty":
            return "dirty"
        if self.file is None:
            return "missing"
        if self.checksum is not None and self.checksum != self.row.checksum:
            return "modified"
        return "applied"

    @property
    def label(self) -> str:
        if self.file is not None:
            return self.file.label
        assert self.row is not None
        return f"{self.row.version_text}_{self.row.name}"

    @property
    def version_text(self) -> str:
        if self.file is not None:
            return self.file.version_text
        assert self.row is not None
        return self.row.version_text


def entries(files: Sequence[MigrationFile], history: Mapping[int, HistoryRow],
            checksums: Mapping[int, str]) -> list[Entry]:
    by_version = {f.version: f for f in files}
    versions = sorted(set(by_version) | set(history))
    return [Entry(v, by_version.get(v), history.get(v), checksums.get(v)) for v in versions]


def to_status(entry: Entry) -> MigrationStatus:
    file, row = entry.file, entry.row
    return MigrationStatus(
        version=entry.version_text,
        name=file.name if file else (row.name if row else ""),
        kind=file.kind if file else (row.kind if row else ""),
        state=entry.state,  # type: ignore[arg-type]
        applied_at=row.applied_at if row else None,
        checksum=entry.checksum or (row.checksum if row else None),
    )


def resolve_target(target: int | None, all_entries: Sequence[Entry]) -> int | None:
    """``target`` if it is a point in the numbering: a version, or a gap between two.

    A gap is a position like any other (Flyway and goose read a target the same way):
    apply goes up to and including the last version below it, rollback undoes every
    version above it. Past the newest version there is nothing to stop at, so such a
    target is refused as the typo it most likely is, rather than meaning "everything".
    """
    if target is None or target == 0:
        return target
    if not all_entries:
        raise InputError(f"no migration has version {target}: there are no migrations yet")
    if target > all_entries[-1].version:
        known = ", ".join(e.version_text for e in all_entries[-5:])
        raise InputError(f"no migration has version {spell(target, all_entries)} "
                         f"(latest versions: {known})")
    return target


def spell(version: int, all_entries: Sequence[Entry]) -> str:
    """``version`` as the migration files spell it: ``1`` is ``001`` in a folder of 001_x.

    A version with an entry keeps its own spelling; one without (a gap, a typo) takes the
    zero padding the folder uses, so a message never shows ``1`` beside ``001_x.sql``.
    """
    for entry in all_entries:
        if entry.version == version:
            return entry.version_text
    return pad(version, [e.version_text for e in all_entries])


def pad(version: int, spellings: Iterable[str]) -> str:
    """``version`` zero-padded as wide as the widest zero-padded spelling in ``spellings``."""
    width = max((len(text) for text in spellings if text.startswith("0")), default=0)
    return f"{version:0{width}d}"


def plan_apply(all_entries: Sequence[Entry], target: int | None,
               policies: Policies) -> tuple[list[MigrationFile], list[str]]:
    """The files to apply, in order, and warnings; raises StateBlocked when blocked."""
    warnings = _check_drift(all_entries, policies)
    applied = [e.version for e in all_entries if e.row is not None]
    newest = max(applied, default=None)
    pending = [e for e in all_entries if e.state == "pending"]
    late = [e for e in pending if newest is not None and e.version < newest]
    if late and not policies.allow_out_of_order:
        names = ", ".join(e.label for e in late)
        raise StateBlocked(
            f"{names} {'is' if len(late) == 1 else 'are'} pending but older than "
            f"{_label_of(all_entries, newest)}, which is already applied; apply out of order "
            "by setting policies.allow_out_of_order: true for this environment, or renumber "
            "the file"
        )
    plan = [e.file for e in pending if e.file and (target is None or e.version <= target)]
    return plan, warnings


def plan_rollback(all_entries: Sequence[Entry], target: int | None, steps: int | None,
                  policies: Policies) -> tuple[list[Entry], list[str]]:
    """Applied entries to roll back, newest first."""
    warnings = _check_drift(all_entries, policies)
    applied = [e for e in reversed(all_entries) if e.row is not None]
    if steps is not None:
        if steps < 1:
            raise InputError("the number of steps to roll back must be 1 or more")
        if 0 < len(applied) < steps:  # 10 typed for 1 must not take back everything
            raise InputError(
                f"--steps {steps}: only {len(applied)} migration(s) are applied (the newest "
                f"is {applied[0].label}); give --steps {len(applied)} to roll back all of "
                "them, or no --steps and no --target")
        return applied[:steps], warnings
    if target is not None:
        return [e for e in applied if e.version > target], warnings
    return applied, warnings


def _check_drift(all_entries: Sequence[Entry], policies: Policies) -> list[str]:
    warnings: list[str] = []
    for entry in all_entries:
        warning = check_entry(entry, policies)
        if warning:
            warnings.append(warning)
    return warnings


def settle_dirty(version_text: str) -> str:
    """The two ways a person settles a dirty migration, once they know what the database
    holds; every message about a dirty migration ends with them."""
    return (f"`cryomigrate repair --mark-applied {version_text}` or "
            f"`cryomigrate repair --mark-pending {version_text}`")


def check_entry(entry: Entry, policies: Policies) -> str | None:
    """Raise StateBlocked if ``entry`` stops apply and rollback; a warning if only allowed."""
    state = entry.state
    if state == "dirty":
        raise DirtyMigration(
            f"{entry.label} is dirty: a run stopped inside this non-transactional "
            "migration, so the database may hold part of it. Check what it holds, then run "
            + settle_dirty(entry.version_text), label=entry.label)
    if state == "missing":
        raise StateBlocked(
            f"{entry.label} is applied but its file is missing from the migrations "
            "folder; restore the file, or forget it with "
            f"`cryomigrate repair --mark-pending {entry.version_text}`"
        )
    if state == "modified":
        if not policies.allow_modified:
            raise StateBlocked(
                f"{entry.label} changed since it was applied; run `cryomigrate repair` "
                "or set `allow_modified: true` for this environment"
            )
        return f"{entry.label} changed since it was applied (allowed by allow_modified)"
    return None


def _label_of(all_entries: Sequence[Entry], version: int | None) -> str:
    return next((e.label for e in all_entries if e.version == version), str(version))


# --- repeatable migrations (DESIGN §12) ---------------------------------------------------

@dataclass(frozen=True)
class RepeatableEntry:
    """A repeatable migration's file, the checksum of what it would run now, and the row of
    its last applied run (if any)."""

    file: MigrationFile
    checksum: str
    row: RepeatableRow | None

    @property
    def state(self) -> State:
        if self.row is None:
            return "pending"
        return "applied" if self.row.checksum == self.checksum else "changed"


def repeatable_entries(files: Sequence[MigrationFile], rows: Mapping[str, RepeatableRow],
                       checksums: Mapping[str, str]) -> list[RepeatableEntry]:
    """In name order, the order they run in. A row whose file is gone is not an entry:
    a repeatable is never undone, so what it made stays until a versioned migration
    drops it, and nothing about it blocks a run."""
    return [RepeatableEntry(f, checksums[f.name], rows.get(f.name)) for f in files]


def repeatable_status(entry: RepeatableEntry) -> MigrationStatus:
    row = entry.row
    return MigrationStatus(
        version=None, name=entry.file.name, kind=entry.file.kind, state=entry.state,
        applied_at=row.applied_at if row else None, checksum=entry.checksum,
        repeatable=True,
    )


def plan_repeatables(repeatables: Sequence[RepeatableEntry], all_entries: Sequence[Entry],
                     planned: Sequence[MigrationFile]) -> list[MigrationFile]:
    """The repeatables an apply runs after ``planned``: those not applied as they are now,
    and only if the run leaves no versioned migration pending.

    Repeatables (views, functions, policies) are written against the newest schema, so a
    run that stops short of it (``--target`` below a pending version) leaves them for the
    run that gets there.
    """
    chosen = {f.version for f in planned}
    if any(e.state == "pending" and e.version not in chosen for e in all_entries):
        return []
    return [r.file for r in repeatables if r.state != "applied"]
