"""Text for people watching a fleet run: a line per database as it finishes, a summary."""

from __future__ import annotations

from typing import Any

from cryomigrate.fleet.result import DatabaseOutcome, FleetResult, Outcome

_MARK = {"ok": "ok", "failed": "FAILED", "interrupted": "STOPPED", "not started": "SKIPPED"}


def render_line(outcome: DatabaseOutcome) -> str:
    """``  ok      postgresql://app:***@db1/t_a  applied 3 (at 005)   412 ms``"""
    at = f" (at {outcome.version or 'no migration'})" if outcome.version_known else ""
    if outcome.outcome == "ok":
        what = describe(outcome.result) + at
    else:
        what = f"exit {outcome.code}{at}: {_first_line(outcome.message)}"
    return (f"  {_MARK[outcome.outcome]:<8}{outcome.database}  {what}  "
            f"{outcome.duration_ms} ms")


def describe(result: Any) -> str:
    """What one database's command did, in a few words."""
    if result is None:
        return "done"
    action = getattr(result, "action", None)
    if action is not None:  # RunResult
        verb = "applied" if action == "apply" else "rolled back"
        count = len(result.migrations)
        if result.dry_run:
            return f"would have {verb} {count}"
        skipped = f", {len(result.skipped)} done by another run" if result.skipped else ""
        return f"{verb} {count}{skipped}" if count or skipped else "nothing to do"
    if hasattr(result, "count") and hasattr(result, "migrations"):  # StatusResult
        states = ("applied", "pending", "modified", "missing", "dirty")
        return ", ".join(f"{result.count(s)} {s}" for s in states if result.count(s)) \
            or "no migrations"
    if hasattr(result, "destructive"):  # LintResult (its findings have no level)
        count = len(result.findings)
        return f"{count} lint finding(s)" if count else "no lint findings"
    if hasattr(result, "findings"):  # ValidateResult
        warnings = sum(1 for f in result.findings if f.level == "warning")
        return f"valid, {warnings} warning(s)" if warnings else "valid"
    if hasattr(result, "entries"):  # HistoryResult
        return f"{len(result.entries)} journal entries"
    return "done"


def render_summary(result: FleetResult) -> str:
    scope = f", shard {result.shard} of a fleet of {result.fleet_size}" if result.shard else ""
    others: tuple[tuple[Outcome, str], ...] = (
        ("failed", "failed"), ("interrupted", "stopped"), ("not started", "not started"))
    counts = [f"{result.count('ok')} ok"] + [
        f"{result.count(o)} {label}" for o, label in others if result.count(o)]
    lines = [f"{result.command} on {len(result.databases)} database(s) of "
             f"{result.environment}{scope}: {', '.join(counts)}"]
    for version, count in result.versions():
        lines.append(f"  at {version or 'no migration'}: {count}")
    for failed in result.failed:
        lines.append(f"  {_MARK[failed.outcome].lower()}: {failed.database}: exit "
                     f"{failed.code}: {_first_line(failed.message)}")
    return "\n".join(lines)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
