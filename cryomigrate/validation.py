"""``cryomigrate validate``: every check that can be made before a deploy, in one pass.

Unlike a run, which stops at the first bad file, validation collects every problem so a
CI job reports them all at once: file names, Python imports, templates rendered for every
environment, the configuration, and, when the database is reachable, its state. It never
needs the database URL: CI validates without secrets, so an environment whose URL comes
from an unset variable gets every other check and a note that the database was skipped.
"""

from __future__ import annotations

from cryomigrate import planner
from cryomigrate.config import Environment, load_config
from cryomigrate.configvalues import VAR_REFERENCE
from cryomigrate.discovery import MigrationFile, checksum_of, scan_folder
from cryomigrate.errors import ConnectionFailed, CryomigrateError, InputError, StateBlocked
from cryomigrate.formats.base import ForeignFile
from cryomigrate.loader import Migration, PythonMigration, SqlMigration, load
from cryomigrate.results import Finding, ValidateResult
from cryomigrate.session import EnvironmentRef, PathLike, connect, resolve_environment


def validate(config_path: PathLike = None, environment: EnvironmentRef = None
             ) -> ValidateResult:
    config = load_config(config_path)
    env = None if not isinstance(environment, Environment) and config.names_none(environment) \
        else resolve_environment(config_path, environment, strict_vars=False)
    scanned = scan_folder(config.migrations_dir, config.format)
    files = scanned.files
    findings = [Finding("error", problem) for problem in scanned.problems]
    # Repeatables are loaded (and templates rendered for every environment) like the
    # rest; their loader refuses a rollback or a non-transactional one.
    environments = [config.environment(name, strict_vars=False)
                    for name in config.environment_names]
    checked, sums = _check_files(environments, [*files, *scanned.repeatables])
    findings += checked
    findings += _check_hooks(environments)
    count = len(files) + len(scanned.repeatables)

    def result() -> ValidateResult:
        return ValidateResult(env.name if env else None, count, config.environment_names,
                              tuple(findings))

    errors = [f.message for f in findings if f.level == "error"]
    if errors:
        raise InputError(f"{len(errors)} problem(s): " + "; ".join(errors), result=result())
    if env is None:
        findings.append(Finding("info", (
            "database checks skipped: no environment was named (--env or CRYOMIGRATE_ENV) "
            "and none is called development; everything else was checked")))
        return result()
    # validate resolves leniently: what is still a ${VAR} here is unset in this shell
    findings += [Finding("warning", (
        f"environment '{env.name}': vars.{key} takes ${{{name}}}, which is not set here; "
        "apply and the other commands refuse to run until it is"))
        for key, name in _unset_in_vars(env.vars)]
    unset = [match[1] for match in VAR_REFERENCE.finditer(env.database)]
    if unset:
        names = ", ".join(f"${{{name}}}" for name in unset)
        findings.append(Finding("info", (
            f"database checks skipped: environment '{env.name}' takes its database URL from "
            f"{names}, which is not set here; everything else was checked")))
    else:
        findings.extend(_check_database(env, files, sums))
    blocked = [f.message for f in findings if f.level == "error"]
    if blocked:
        raise StateBlocked("; ".join(blocked), result=result())
    return result()


def _unset_in_vars(value: object, key: str = "") -> list[tuple[str, str]]:
    """(vars key, variable name) of each ${VAR} that lenient resolution left in ``value``."""
    if isinstance(value, dict):
        return [found for k, v in value.items()
                for found in _unset_in_vars(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _unset_in_vars(v, f"{key}[{i}]")]
    if isinstance(value, str):
        return [(key, match[1]) for match in VAR_REFERENCE.finditer(value)]
    return []


def _check_files(environments: list[Environment], files: list[MigrationFile]
                 ) -> tuple[list[Finding], dict[int, str]]:
    """Findings, and each readable file's checksum: every file is read once."""
    from cryomigrate.lint import check_waivers

    findings: list[Finding] = []
    sums: dict[int, str] = {}
    sql: list[SqlMigration] = []
    for file in files:
        try:
            content = file.read_bytes()
            if not file.repeatable:  # the database checks compare versioned files only
                sums[file.version] = checksum_of(content)
            # Only templates differ per environment; everything else is checked once.
            for env in environments if file.kind == "template" else environments[:1]:
                migration = load(file, environment=env.name, vars=env.vars, content=content)
            warning = _forgotten_rollback(migration)
            if warning:
                findings.append(Finding("warning", warning))
            if isinstance(migration, SqlMigration):
                sql.append(migration)
        except InputError as exc:
            findings.append(Finding("error", str(exc)))
    try:
        check_waivers(sql)
    except InputError as exc:
        findings.append(Finding("error", str(exc)))
    except CryomigrateError as exc:  # squawk itself failed: the rest is still checked
        findings.append(Finding("warning", f"lint-ignore rule names not checked: {exc}"))
    return findings, sums


def _check_hooks(environments: list[Environment]) -> list[Finding]:
    """Each environment's ``after_run``, rendered as a run would render it before starting."""
    from cryomigrate import after_run

    findings = []
    for env in environments:
        try:
            after_run.prepare(env)
        except InputError as exc:
            findings.append(Finding("error", str(exc)))
    return findings


_ROLLBACK_NEAR_MISSES = ("down", "downgrade", "revert", "undo", "rolback", "roll_back",
                         "rollback_", "unapply")


def _forgotten_rollback(migration: Migration) -> str | None:
    """A rollback that exists but does nothing, or only raises the scaffold's placeholder.

    An empty rollback section is a deliberate no-op by design, but far more often a
    scaffold nobody filled in; a warning costs the deliberate case one line of output.
    """
    label = migration.file.label
    if isinstance(migration, SqlMigration):
        script = migration.rollback_script
        if script is None or script.statements:
            return None
        if isinstance(migration.file, ForeignFile):
            return (f"{label}: its down SQL ({migration.file.format}'s format) is empty, so "
                    "rolling it back changes nothing; write the SQL that undoes it (leave it "
                    "empty only if that is deliberate)")
        return (f"{label}: its -- cryomigrate:rollback section is empty, so rolling it "
                "back changes nothing; write the SQL that undoes it, or delete the marker "
                "to make the migration irreversible (leave it empty only if that is "
                "deliberate)")
    if isinstance(migration, PythonMigration):
        if getattr(migration.module, "rollback", None) is None:
            # Other tools' names for it, or a typo: irreversible as written, silently.
            near = [n for n in _ROLLBACK_NEAR_MISSES
                    if callable(getattr(migration.module, n, None))]
            if near:
                return (f"{label}: has {near[0]}() but no rollback(), so it is irreversible "
                        f"and {near[0]}() never runs; name it rollback(conn, environment)")
        code = getattr(getattr(migration.module, "rollback", None), "__code__", None)
        if code is not None and code.co_names == ("NotImplementedError",):
            return (f"{label}: rollback() only raises NotImplementedError (the scaffold's "
                    "placeholder), so rolling it back fails; write it, or delete it to "
                    "make the migration irreversible")
    return None


def _check_database(env: Environment, files: list[MigrationFile], sums: dict[int, str]
                    ) -> list[Finding]:
    try:
        with connect(env, read_only=True) as (_, tracker):
            history = tracker.read_all()
    except ConnectionFailed as exc:
        return [Finding("info", f"database checks skipped, it is not reachable: {exc}")]
    findings = []
    found = planner.entries(files, history, sums)
    for entry in found:
        try:
            warning = planner.check_entry(entry, env.policies)
        except StateBlocked as exc:
            findings.append(Finding("error", str(exc)))
        else:
            if warning:
                findings.append(Finding("warning", warning))
    if not any(f.level == "error" for f in findings):  # what apply refuses: out of order
        try:
            planner.plan_apply(found, None, env.policies)
        except StateBlocked as exc:
            findings.append(Finding("error", str(exc)))
    return findings
