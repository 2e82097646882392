"""``cryomigrate validate``: every check that can be made before a deploy, in one pass.

Unlike a run, which stops at the first bad file, validation collects every problem so a
CI job reports them all at once: file names, Python imports, templates rendered for every
environment, the configuration, and, when the database is reachable, its state.
"""

from __future__ import annotations

from cryomigrate import planner
from cryomigrate.config import Config, Environment, load_config
from cryomigrate.discovery import MigrationFile, checksum_of, scan
from cryomigrate.errors import ConnectionFailed, InputError, StateBlocked
from cryomigrate.loader import load
from cryomigrate.models import Finding, ValidateResult
from cryomigrate.project import PathLike, connect


def validate(config_path: PathLike = None, environment: str | None = None) -> ValidateResult:
    config = load_config(config_path)
    env = config.environment(environment)
    files = scan(env.migrations_dir)
    findings, sums = _check_files(config, files)

    def result() -> ValidateResult:
        return ValidateResult(env.name, len(files), config.environment_names, tuple(findings))

    errors = [f.message for f in findings if f.level == "error"]
    if errors:
        raise InputError(f"{len(errors)} problem(s): " + "; ".join(errors), result=result())
    findings.extend(_check_database(env, files, sums))
    blocked = [f.message for f in findings if f.level == "error"]
    if blocked:
        raise StateBlocked("; ".join(blocked), result=result())
    return result()


def _check_files(config: Config, files: list[MigrationFile]
                 ) -> tuple[list[Finding], dict[int, str]]:
    """Findings, and each readable file's checksum: every file is read once."""
    findings: list[Finding] = []
    sums: dict[int, str] = {}
    environments = [config.environment(name, strict_vars=False)
                    for name in config.environment_names]
    for file in files:
        try:
            content = file.read_bytes()
            sums[file.version] = checksum_of(content)
            # Only templates differ per environment; everything else is checked once.
            for env in environments if file.kind == "template" else environments[:1]:
                load(file, environment=env.name, vars=env.vars, content=content)
        except InputError as exc:
            findings.append(Finding("error", str(exc)))
    return findings, sums


def _check_database(env: Environment, files: list[MigrationFile], sums: dict[int, str]
                    ) -> list[Finding]:
    try:
        with connect(env, read_only=True) as (_, tracker):
            history = tracker.read_all()
    except ConnectionFailed as exc:
        return [Finding("info", f"database checks skipped, it is not reachable: {exc}")]
    findings = []
    for entry in planner.entries(files, history, sums):
        try:
            warning = planner.check_entry(entry, env.policies)
        except StateBlocked as exc:
            findings.append(Finding("error", str(exc)))
        else:
            if warning:
                findings.append(Finding("warning", warning))
    return findings
