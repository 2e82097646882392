"""Text renderings of results for people at a terminal (JSON comes from ``to_dict``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines += ["  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False))
              for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _time(value: str | None) -> str:
    return value.replace("T", " ")[:19] if value else "-"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def render_status(result: Any) -> str:
    head = f"Environment {result.environment} ({result.database})"
    if not result.migrations:
        return f"{head}\n\n  no migrations yet; create one with `cryomigrate new NAME`"
    # A repeatable has no version; R (its file name's start) says what it is.
    rows = [(m.version or "R", m.name, m.kind, m.state, _time(m.applied_at))
            for m in result.migrations]
    counts = [f"{result.count(s)} {s}" for s in
              ("applied", "pending", "modified", "missing", "dirty", "changed")
              if result.count(s)]
    return (f"{head}\n\n{table(('VERSION', 'NAME', 'KIND', 'STATE', 'APPLIED AT'), rows)}\n\n"
            f"{_plural(len(result.migrations), 'migration')}: {', '.join(counts)}")


def render_run(result: Any) -> str:
    verb = "applied" if result.action == "apply" else "rolled back"
    if result.dry_run:
        lines = [f"Dry run in {result.environment}: would have {verb} "
                 f"{_plural(len(result.migrations), 'migration')}; nothing was changed."]
        for m in result.migrations:
            about = f": {m.description}" if m.description else ""
            lines.append(f"\n-- {m.label} ({m.kind}){about}")
            if m.sql is not None:
                lines.append(m.sql or "-- (no statements)")
            elif m.kind == "python":
                lines.append("-- Python migration: its SQL is known only when it runs")
        return "\n".join(lines)
    if not result.migrations and not result.skipped:
        if result.action == "rollback":
            return f"Nothing to roll back in {result.environment}."
        if result.target is not None:
            return (f"Nothing to do in {result.environment}: no migration is pending up to "
                    f"{result.target}.")
        return f"Nothing to do in {result.environment}: the database is up to date."
    return _done(result) + "."


def render_stopped(result: Any) -> str:
    """What a failed or interrupted run had done before it stopped; empty if nothing."""
    return _done(result) + " before it stopped." if result.migrations else ""


def _done(result: Any) -> str:
    verb = "Applied" if result.action == "apply" else "Rolled back"
    total = sum(m.duration_ms for m in result.migrations)
    skipped = (f"; {_plural(len(result.skipped), 'migration')} skipped: another run did "
               "them first" if result.skipped else "")
    return (f"{verb} {_plural(len(result.migrations), 'migration')} in {result.environment} "
            f"({total} ms){skipped}")


def render_history(result: Any) -> str:
    if not result.entries:
        return f"No history yet in {result.environment}."
    rows = [(_time(e.started_at), e.version, e.name, e.action, e.outcome,
             f"{e.duration_ms} ms", (e.error or "").splitlines()[0][:60] if e.error else "")
            for e in result.entries]
    return table(("STARTED", "VERSION", "NAME", "ACTION", "OUTCOME", "TOOK", "ERROR"), rows)


def render_validate(result: Any) -> str:
    lines = [f"{f.level}: {f.message}" for f in result.findings]
    if not any(f.level == "error" for f in result.findings):
        lines.append(
            f"ok: {_plural(result.migrations, 'migration')} valid for "
            f"{_plural(len(result.environments), 'environment')} "
            f"({', '.join(result.environments)})"
        )
    return "\n".join(lines)
