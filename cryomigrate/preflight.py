"""What ``apply`` checks before anything is locked or written (DESIGN 10): lint findings,
destructive statements and the promotion gate (``require_applied_in``).

The decisions are the pure functions of ``policies``; this module gathers what they
decide on: it lints, and it reads the other environment's history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cryomigrate import policies
from cryomigrate.config import Environment
from cryomigrate.errors import PolicyRefused
from cryomigrate.policies import Confirm

if TYPE_CHECKING:  # a run with nothing to apply loads no migration
    from cryomigrate.loader import Migration

Progress = Callable[[str, Any], None]


def before_apply(env: Environment, dialect: str, migrations: Sequence[Migration], *,
                 dry_run: bool, confirm: Confirm, progress: Progress | None) -> tuple[
                     list[str], Confirm]:
    """Lint (unless ``lint: off``) and apply the safety policies. Returns the warnings to
    show (a dry run shows findings and refusals without refusing) and the confirmation
    still to give: a yes to destructive statements also answers ``require_confirmation``,
    so a person is asked once."""
    if not migrations:
        return [], confirm
    from cryomigrate.lint import lint_migrations

    rules = env.policies
    warnings: list[str] = []
    destructive: tuple[str, ...] = ()
    if rules.lint != "off" or rules.destructive != "allow":
        result = lint_migrations(env, dialect, migrations, use_squawk=rules.lint != "off",
                                 require_squawk=rules.lint == "refuse")
        destructive = result.destructive
        if rules.lint != "off":
            # Only what concerns this run: the lint command says the rest (SQLite, Python).
            warnings += [n for n in result.notes if result.squawk_missing
                         and n.startswith("squawk is not installed")]
            warnings += [f"lint: {f.file} line {f.line}: {f.rule}: {f.message}"
                         + (" (destructive)" if f.destructive else "")
                         for f in result.findings]
        refusals = policies.lint_refusals(
            env, len(result.findings) if rules.lint != "off" else 0, destructive)
        if dry_run:
            warnings += [f"apply would be refused: {reason}" for reason in refusals]
        _tell(progress, warnings)
        if refusals and not dry_run:
            raise PolicyRefused("; ".join(refusals) + ". Nothing was run")
    if dry_run:
        return warnings, confirm
    check_promoted(env, migrations)
    if rules.destructive == "confirm" and destructive:
        policies.check_destructive_confirmed(env, [m.file.label for m in migrations],
                                             destructive, confirm)
        confirm = True
    return warnings, confirm


def check_promoted(env: Environment, migrations: Sequence[Migration]) -> None:
    """``require_applied_in``: every versioned migration of the run must be applied, with
    the same checksum, in the named environment (unreachable: ConnectionFailed, exit 6).

    Repeatable migrations are not gated: their checksum is of the SQL rendered for each
    environment, so it differs between environments by design.
    """
    source = env.policies.require_applied_in
    versioned = [m for m in migrations if not m.file.repeatable]
    if source is None or source == env.name or not versioned:
        return  # under defaults, the source environment itself inherits the key
    from cryomigrate.session import connect, resolve_environment

    other = resolve_environment(env.config_path, source)
    with connect(other, read_only=True) as (_, tracker):
        applied = {v: row.checksum for v, row in tracker.read_all().items()
                   if row.state == "applied"}
    missing = policies.unpromoted(
        [(m.file.version, m.file.label, m.checksum) for m in versioned], applied)
    if missing:
        raise PolicyRefused(
            f"environment '{env.name}' applies only what '{source}' has applied with the "
            f"same file (policies.require_applied_in: {source}); not there yet, or changed "
            f"since: {', '.join(missing)}. Apply them in '{source}' first. Nothing was run")


def _tell(progress: Progress | None, warnings: list[str]) -> None:
    if progress is not None:
        for warning in warnings:
            progress("warning", warning)
