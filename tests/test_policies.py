"""Per-environment policies: confirmation and allow_rollback (DESIGN §3.1).

Only the terminal is faked (``_stdin_is_terminal``); everything else is real. A refusal
happens before anything is written or locked.
"""

from __future__ import annotations

import pytest

from cryomigrate import apply_migrations, rollback_migrations
from cryomigrate.config import Policies
from cryomigrate.errors import PolicyRefused
from cryomigrate.policies import check_confirmed, check_rollback_allowed
from tests.conftest import Project
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    assert_untouched,
    config_with,
    history_versions,
    hold_run_lock,
    json_doc,
)


@pytest.fixture
def guarded(project: Project) -> Project:
    config_with(project, "policies: {require_confirmation: true}")
    add_tables(project, "001_t1", "002_t2")
    return project


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cryomigrate.cli_frame.stdin_is_terminal", lambda: True)


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cryomigrate.cli_frame.stdin_is_terminal", lambda: False)


@pytest.mark.usefixtures("no_terminal")
def test_no_terminal_and_no_yes_is_refused(guarded: Project) -> None:
    result = guarded.cli("apply")
    assert_clean_exit(result, 3)
    assert "--yes" in result.stderr and "development" in result.stderr
    assert "cryomigrate_history" not in guarded.tables()


@pytest.mark.usefixtures("no_terminal")
def test_refusal_writes_nothing_at_all(guarded: Project) -> None:
    # DESIGN §3.1: "A refusal happens before anything is written" -- not even the file.
    assert_clean_exit(guarded.cli("apply"), 3)
    assert_untouched(guarded)


@pytest.mark.usefixtures("no_terminal")
def test_refusal_does_not_wait_for_the_lock(guarded: Project) -> None:
    assert_clean_exit(guarded.cli("apply", "--yes", "--target", "1"), 0)
    with hold_run_lock(guarded):
        result = guarded.cli("apply", "--lock-wait", "0.2")
    assert_clean_exit(result, 3)
    assert history_versions(guarded) == ["001"]


@pytest.mark.usefixtures("no_terminal")
def test_refusal_in_json(guarded: Project) -> None:
    result = guarded.cli("apply", "--format", "json")
    assert_clean_exit(result, 3)
    assert json_doc(result)["error"]["code"] == 3


@pytest.mark.usefixtures("no_terminal")
def test_yes_confirms(guarded: Project) -> None:
    assert_clean_exit(guarded.cli("apply", "--yes"), 0)
    assert history_versions(guarded) == ["001", "002"]
    assert_clean_exit(guarded.cli("rollback"), 3)
    assert history_versions(guarded) == ["001", "002"]
    assert_clean_exit(guarded.cli("rollback", "--yes", "--steps", "1"), 0)
    assert history_versions(guarded) == ["001"]


@pytest.mark.usefixtures("terminal")
def test_typing_the_environment_name_confirms(guarded: Project) -> None:
    result = guarded.cli("apply", input="development\n")
    assert_clean_exit(result, 0)
    assert "001_t1.sql" in result.stderr  # the list of what would change is shown
    assert history_versions(guarded) == ["001", "002"]


@pytest.mark.usefixtures("terminal")
def test_typing_a_wrong_name_refuses(guarded: Project) -> None:
    result = guarded.cli("apply", input="yes\n")
    assert_clean_exit(result, 3)
    assert "cryomigrate_history" not in guarded.tables()


@pytest.mark.usefixtures("terminal")
def test_rollback_prompt(guarded: Project) -> None:
    assert_clean_exit(guarded.cli("apply", "--yes"), 0)
    assert_clean_exit(guarded.cli("rollback", input="production\n"), 3)
    assert history_versions(guarded) == ["001", "002"]
    assert_clean_exit(guarded.cli("rollback", "--steps", "1", input="development\n"), 0)
    assert history_versions(guarded) == ["001"]


@pytest.mark.usefixtures("no_terminal")
def test_nothing_to_do_needs_no_confirmation(guarded: Project) -> None:
    assert_clean_exit(guarded.cli("apply", "--yes"), 0)
    assert_clean_exit(guarded.cli("apply"), 0)


@pytest.mark.usefixtures("no_terminal")
def test_dry_run_needs_no_confirmation(guarded: Project) -> None:
    assert_clean_exit(guarded.cli("apply", "--dry-run"), 0)


def test_library_needs_confirm_true(guarded: Project) -> None:
    with pytest.raises(PolicyRefused) as refused:
        apply_migrations(config=guarded.config)
    assert refused.value.exit_code == 3
    assert "cryomigrate_history" not in guarded.tables()
    result = apply_migrations(config=guarded.config, confirm=True)
    assert [m.version for m in result.migrations] == ["001", "002"]


def test_library_never_prompts_or_prints(guarded: Project, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    apply_migrations(config=guarded.config, confirm=True)
    capsys.readouterr()
    monkeypatch.setattr("cryomigrate.cli_frame.stdin_is_terminal", lambda: True)
    with pytest.raises(PolicyRefused):
        rollback_migrations(config=guarded.config)
    assert history_versions(guarded) == ["001", "002"]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def _no_rollback(project: Project) -> None:
    config_with(project, "policies: {allow_rollback: false}")
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)


def test_allow_rollback_false_refuses_even_with_yes(project: Project) -> None:
    _no_rollback(project)
    result = project.cli("rollback", "--yes")
    assert_clean_exit(result, 3)
    assert "allow_rollback" in result.stderr
    assert history_versions(project) == ["001"]
    assert_clean_exit(project.cli("rollback", "--dry-run"), 3)


def test_allow_rollback_false_refuses_library(project: Project) -> None:
    _no_rollback(project)
    with pytest.raises(PolicyRefused):
        rollback_migrations(config=project.config, confirm=True)
    assert history_versions(project) == ["001"]


def test_policies_come_from_defaults_and_environment(project: Project) -> None:
    project.write_config(f"""
        defaults:
          policies: {{allow_rollback: false}}
        environments:
          development:
            database: {project.url}
          scratch:
            database: {project.url}
            policies: {{allow_rollback: true}}
    """)
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    assert_clean_exit(project.cli("rollback"), 3)
    assert_clean_exit(project.cli("rollback", "--env", "scratch"), 0)


def test_policy_defaults() -> None:
    policies = Policies()
    assert (policies.require_confirmation, policies.allow_rollback, policies.allow_modified,
            policies.allow_out_of_order) == (False, True, False, False)


def test_pure_policy_checks(tmp_path: object) -> None:
    from pathlib import Path

    from cryomigrate.config import Environment

    env = Environment(name="prod", config_path=Path("/x/environments.yaml"),
                      migrations_dir=Path("/x/migrations"), history_table="h",
                      database="sqlite:///x.db",
                      policies=Policies(require_confirmation=True, allow_rollback=False))
    with pytest.raises(PolicyRefused, match="allow_rollback"):
        check_rollback_allowed(env)
    check_confirmed(env, "apply", [], False)  # nothing to change: nothing to confirm
    check_confirmed(env, "apply", ["001_a.sql"], True)
    check_confirmed(env, "apply", ["001_a.sql"], lambda name, labels: name == "prod")
    with pytest.raises(PolicyRefused, match="prod"):
        check_confirmed(env, "apply", ["001_a.sql"], lambda name, labels: False)
    with pytest.raises(PolicyRefused):
        check_confirmed(env, "apply", ["001_a.sql"], False)


@pytest.mark.usefixtures("terminal")
def test_the_destructive_question_lists_the_migrations_and_counts_them(
        sqlite_project: Project) -> None:
    """One question answers require_confirmation and destructive: confirm: it names every
    migration the run applies, then the destructive statements, and counts migrations."""
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            policies: {require_confirmation: true, destructive: confirm, lint: off}
    """)
    sqlite_project.add("001_a.sql", "CREATE TABLE a (id INTEGER);\n")
    sqlite_project.add("002_drop.sql", "CREATE TABLE b (id INTEGER);\nCREATE TABLE c (id "
                                       "INTEGER);\nDROP TABLE b;\nDROP TABLE c;\n")
    result = sqlite_project.cli("apply", input="development\n")
    assert_clean_exit(result, 0)
    assert "About to apply 2 migration(s) in 'development':" in result.stderr
    assert "001_a.sql" in result.stderr and "002_drop.sql" in result.stderr
    assert "destructive: 002_drop.sql line 3: drops a table" in result.stderr
    assert result.stderr.count("About to apply") == 1
