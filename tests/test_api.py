"""The library API (DESIGN §7): environment names, typed JSON-serialisable results, one
exception tree mapped to exit codes, never printing, prompting or exiting."""

from __future__ import annotations

import json

import pytest

import cryomigrate
from cryomigrate import (
    apply_migrations,
    get_history,
    get_migration_status,
    new_migration,
    rollback_migrations,
    validate,
)
from cryomigrate.errors import (
    ConfigError,
    ConnectionFailed,
    CryomigrateError,
    InputError,
    LockTimeout,
    MigrationFailed,
    MigrationFileError,
    PolicyRefused,
    StateBlocked,
    TemplateError,
)
from cryomigrate.models import RunResult, StatusResult
from tests.conftest import Project
from tests.helpers_core import add_tables, history_versions, hold_run_lock


def test_status_apply_rollback_by_environment_name(project: Project,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    add_tables(project, "004_t4", "005_t5", "006_t6")
    status = get_migration_status(environment="development", config=project.config)
    assert isinstance(status, StatusResult)
    assert [m.state for m in status.migrations] == ["pending"] * 3

    applied = apply_migrations(target_version="005", environment="development",
                               config=project.config, dry_run=False)
    assert isinstance(applied, RunResult)
    assert [m.version for m in applied.migrations] == ["004", "005"]
    assert history_versions(project) == ["004", "005"]

    rolled = rollback_migrations(target_version="004", environment="development",
                                 config=project.config, confirm=True)
    assert [m.version for m in rolled.migrations] == ["005"]
    assert history_versions(project) == ["004"]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # the library never prints


def test_integer_versions_are_accepted(project: Project) -> None:
    add_tables(project, "004_t4", "005_t5")
    apply_migrations(target_version=4, config=project.config)
    assert history_versions(project) == ["004"]


def test_results_are_json_serialisable(project: Project) -> None:
    add_tables(project, "001_t1")
    results = [
        apply_migrations(config=project.config, dry_run=True),
        apply_migrations(config=project.config),
        get_migration_status(config=project.config),
        get_history(config=project.config),
        validate(config=project.config),
        rollback_migrations(config=project.config, dry_run=True),
    ]
    for result in results:
        json.dumps(result.to_dict())
    assert results[0].to_dict()["dry_run"] is True
    assert results[2].to_dict()["migrations"][0]["state"] == "applied"


def test_steps_and_target_together_is_input_error(project: Project) -> None:
    with pytest.raises(InputError):
        rollback_migrations(target_version="1", steps=1, config=project.config)


def test_bad_version_is_input_error(project: Project) -> None:
    with pytest.raises(InputError, match="abc"):
        apply_migrations(target_version="abc", config=project.config)


def test_new_migration(project: Project) -> None:
    result = new_migration("first", config=project.config)
    assert result.version == "001"
    assert (project.migrations / "001_first.py").is_file()


@pytest.mark.parametrize(("cls", "code"), [
    (CryomigrateError, 1), (MigrationFailed, 1), (InputError, 2), (ConfigError, 2),
    (MigrationFileError, 2), (TemplateError, 2), (PolicyRefused, 3), (StateBlocked, 4),
    (LockTimeout, 5), (ConnectionFailed, 6),
])
def test_exception_tree_and_exit_codes(cls: type[CryomigrateError], code: int) -> None:
    assert issubclass(cls, CryomigrateError)
    assert cls.exit_code == code


def test_errors_raise_not_exit(project: Project) -> None:
    project.add("001_bad.sql", "SELECT * FROM nowhere;")
    with pytest.raises(MigrationFailed) as failed:
        apply_migrations(config=project.config)
    assert "001_bad.sql" in str(failed.value)
    with pytest.raises(ConfigError):
        apply_migrations(environment="nope", config=project.config)


def test_failure_carries_partial_result(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_bad.sql", "SELECT * FROM nowhere;")
    with pytest.raises(MigrationFailed) as failed:
        apply_migrations(config=project.config)
    assert [m.version for m in failed.value.result.migrations] == ["001"]


def test_state_and_lock_errors(project: Project) -> None:
    add_tables(project, "001_t1", "003_t3")
    apply_migrations(config=project.config)
    add_tables(project, "002_t2")
    with pytest.raises(StateBlocked):
        apply_migrations(config=project.config)
    with hold_run_lock(project), pytest.raises(LockTimeout):
        rollback_migrations(config=project.config, steps=1, lock_wait=0.2)


def test_connection_failed(sqlite_project: Project) -> None:
    sqlite_project.write_config(
        "environments:\n  development:\n    database: postgresql://u@127.0.0.1:1/x\n")
    with pytest.raises(ConnectionFailed):
        get_migration_status(config=sqlite_project.config)


def test_public_api_is_exported() -> None:
    for name in cryomigrate.__all__:
        assert getattr(cryomigrate, name) is not None
    with pytest.raises(AttributeError):
        cryomigrate.no_such_thing  # noqa: B018


@pytest.mark.parametrize(("call", "named"), [
    (lambda c: rollback_migrations(config=c, steps="1", dry_run=True), "steps"),
    (lambda c: rollback_migrations(config=c, steps=1.5), "steps"),
    (lambda c: rollback_migrations(config=c, steps=True), "steps"),
    (lambda c: rollback_migrations(config=c, lock_wait="x"), "lock_wait"),
    (lambda c: rollback_migrations(config=c, lock_wait=float("nan")), "lock_wait"),
    (lambda c: apply_migrations(config=c, lock_wait=-5), "lock_wait"),
    (lambda c: apply_migrations(config=c, lock_wait=True), "lock_wait"),
    (lambda c: get_migration_status(5, config=c), "environment"),  # type: ignore[arg-type]
    (lambda c: rollback_migrations(config=c, dry_run="false"), "dry_run"),
], ids=["steps-str", "steps-float", "steps-bool", "wait-str", "wait-nan", "wait-negative",
        "wait-bool", "environment-int", "dry-run-str"])
def test_a_bad_argument_is_an_input_error_and_writes_nothing(
        sqlite_project: Project, call: object, named: str) -> None:
    add_tables(sqlite_project, "001_t1")
    assert apply_migrations(config=sqlite_project.config).migrations
    with pytest.raises(InputError, match=f"^{named} must be"):
        call(sqlite_project.config)  # type: ignore[operator]
    assert history_versions(sqlite_project) == ["001"]
