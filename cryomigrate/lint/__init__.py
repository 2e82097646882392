"""Lint the SQL a run would apply (DESIGN 10.1): squawk's rules, then cryomigrate's own.

Each SQL migration's apply section, rendered for the environment, is written to a
scratch folder under its file's name and given to squawk; squawk's lines (0-based, in
the section) are mapped back to lines of the migration file. Transactional and
non-transactional migrations go in one squawk process each, the first with
``--assume-in-transaction``. SQLite environments get cryomigrate's own rules only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryomigrate.config import Environment
from cryomigrate.errors import InputError, MigrationFileError
from cryomigrate.lint import rules
from cryomigrate.lint.squawk import NOT_INSTALLED, RawFinding, find_squawk, run_squawk, unknown_rule
from cryomigrate.loader import Migration, SqlMigration
from cryomigrate.sqlscript import lint_waivers

# cryomigrate sets the environment's lock_timeout and statement_timeout in every
# migration's transaction, so squawk's advice to set them is noise where they are set;
# its rule on CONCURRENTLY in a transaction is cryomigrate's own, with the marker to use.
_SET_BY_ENVIRONMENT = {"require-lock-timeout": "lock_timeout_ms",
                       "require-statement-timeout": "statement_timeout_ms"}
_REPLACED = frozenset({"ban-concurrent-index-creation-in-transaction"})


@dataclass(frozen=True)
class Finding:
    """One lint finding, at the file line the user edits."""
    file: str
    line: int
    rule: str
    message: str
    destructive: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LintResult:
    """The findings of one lint pass over the pending migrations."""
    environment: str
    findings: tuple[Finding, ...]
    # Destructive statements whatever waivers say: the ``destructive`` policy's concern.
    destructive: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()  # why this environment's policies refuse the findings
    squawk_missing: bool = False  # squawk was wanted but is not installed

    def to_dict(self) -> dict[str, Any]:
        return {"environment": self.environment,
                "findings": [f.to_dict() for f in self.findings],
                "destructive": list(self.destructive), "notes": list(self.notes),
                "refused": list(self.refused)}


def lint_migrations(env: Environment, dialect: str, migrations: Sequence[Migration], *,
                    use_squawk: bool, require_squawk: bool) -> LintResult:
    """Findings for ``migrations``; squawk runs on PostgreSQL when ``use_squawk``, and its
    absence is an input error when ``require_squawk``, else a note."""
    notes: list[str] = []
    sql = [m for m in migrations if isinstance(m, SqlMigration)]
    notes += [f"{m.file.label}: a Python migration; its SQL is known only when it runs, so "
              "it is not linted" for m in migrations if not isinstance(m, SqlMigration)]
    raw: dict[str, list[RawFinding]] = {}
    missing = False
    # With lint off (only the destructive policy asked), waivers waive nothing: unchecked.
    waivers = check_waivers(sql, names=use_squawk)
    if dialect != "postgresql":
        notes.append(f"{env.name} is a {dialect} environment: cryomigrate's own rules only "
                     "(squawk lints PostgreSQL)")
    elif use_squawk and sql:
        binary = find_squawk()
        if binary is None:
            if require_squawk:
                raise InputError(NOT_INSTALLED)
            notes.append(f"{NOT_INSTALLED}; skipped linting with squawk "
                         "(cryomigrate's own rules still ran)")
            missing = True
        else:
            raw = _squawk_findings(binary, sql, env)
    findings: list[Finding] = []
    destructive: list[str] = []
    for migration in sql:
        found, broke = _check(migration, raw.get(migration.file.label, []),
                              waivers[migration.file.label])
        findings += found
        destructive += broke
    return LintResult(env.name, tuple(findings), tuple(destructive), tuple(notes),
                      squawk_missing=missing)


def _squawk_findings(binary: str, migrations: list[SqlMigration], env: Environment
                     ) -> dict[str, list[RawFinding]]:
    ignored = _REPLACED | {rule for rule, key in _SET_BY_ENVIRONMENT.items()
                           if getattr(env, key) is not None}
    found: dict[str, list[RawFinding]] = {}
    with tempfile.TemporaryDirectory(prefix="cryomigrate-lint-") as folder:
        for transactional in (True, False):
            group = [m for m in migrations if m.transactional == transactional]
            paths = []
            for migration in group:
                path = Path(folder) / migration.file.label
                path.write_text(migration.apply_script.text, encoding="utf-8")
                paths.append(path)
            if not paths:
                continue
            for item in run_squawk(binary, paths, in_transaction=transactional):
                if item.rule not in ignored:
                    found.setdefault(Path(item.path).name, []).append(item)
    return found


def check_waivers(migrations: Sequence[SqlMigration], *, names: bool = True
                  ) -> dict[str, dict[str, int]]:
    """Each file's ``lint-ignore`` rules (with their lines), after refusing (``names``)
    one that names a rule no linter here has: a typo would otherwise waive nothing,
    silently. squawk, when installed, says which names it knows: it is the authority on
    its own rules, whichever version is installed."""
    waivers = {m.file.label: _waivers(m) for m in migrations}
    where = {rule: (label, line) for label, rules_of in waivers.items()
             for rule, line in rules_of.items() if rule not in rules.OWN}
    if not names or not where:
        return waivers
    binary = find_squawk()
    unknown = unknown_rule(binary, sorted(where)) if binary is not None else None
    if unknown is not None:
        label, line = where[unknown]
        raise MigrationFileError(
            f"{label} line {line}: -- cryomigrate:lint-ignore names '{unknown}', a rule "
            f"neither cryomigrate ({', '.join(sorted(rules.OWN))}) nor the installed squawk "
            "knows: a typo, or a rule renamed in this squawk version (squawk's rules: "
            "https://squawkhq.com/docs/rules)")
    return waivers


def _check(migration: SqlMigration, raw: list[RawFinding], waived: dict[str, int]
           ) -> tuple[list[Finding], list[str]]:
    """One migration's findings (waivers applied) and its destructive statements."""
    label, script = migration.file.label, migration.apply_script
    statements = rules.statements(script)
    placed = [(script.first_line + item.line, item) for item in raw]
    findings = [Finding(label, line, item.rule, item.message,
                        item.rule in rules.SQUAWK_DESTRUCTIVE) for line, item in placed]
    destructive = []
    for statement in statements:
        message = rules.concurrent_in_transaction(statement, migration.transactional)
        if message is not None:
            findings.append(Finding(label, statement.first_line, rules.CONCURRENT_INDEX,
                                    message, False))
        what = rules.destructive_kind(statement)
        if what is None:
            continue
        destructive.append(f"{label} line {statement.first_line}: {what}")
        if not any(f.destructive and statement.first_line <= f.line <= statement.last_line
                   for f in findings):
            findings.append(Finding(label, statement.first_line, rules.DESTRUCTIVE,
                                    f"{what}: data or the clients that use it may be lost",
                                    True))
    kept = sorted((f for f in findings if f.rule not in waived), key=lambda f: f.line)
    return kept, destructive


def _waivers(migration: SqlMigration) -> dict[str, int]:
    text = migration.file.read_bytes().decode("utf-8-sig", errors="replace")
    return lint_waivers(text, migration.file.label)


def render(result: LintResult) -> str:
    """Findings as ``file:line: rule: message``, then what the environment refuses."""
    lines = [f"note: {note}" for note in result.notes]
    lines += [f"{f.file}:{f.line}: {f.rule}: {f.message}"
              + (" [destructive]" if f.destructive else "") for f in result.findings]
    lines += [f"refused: {reason}" for reason in result.refused]
    if not result.findings:
        lines.append(f"No lint findings for {result.environment}.")
    return "\n".join(lines)
