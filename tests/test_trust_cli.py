"""Issue 8, the CLI's part: option values checked at the edge (item 12), messages that
speak CLI and spell versions as the files do (14), --config after the command, targets in
a gap of the numbering, skipped migrations in JSON (16), Ctrl-C (13), and one JSON
document on stdout for every failing command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import Project
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    assert_json_error,
    assert_untouched,
    config_with,
    history_versions,
    hold_run_lock,
    json_doc,
    run_cli,
)

ROOT = Path(__file__).resolve().parents[1]


def one_paragraph_error(result: Result) -> str:
    """stderr ends with one paragraph starting ``error:``; returns it."""
    paragraphs = result.stderr.strip().split("\n\n")
    assert paragraphs[-1].startswith("error: "), result.stderr
    return paragraphs[-1]


# --- item 12: numeric options are checked before anything runs -----------------------

@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e308", "-1", "ten", ""])
def test_absurd_lock_wait_is_exit_2_and_runs_nothing(project: Project, value: str) -> None:
    add_tables(project, "001_t1")
    result = project.cli("apply", "--lock-wait", value)
    assert_clean_exit(result, 2)
    assert one_paragraph_error(result).startswith(f"error: --lock-wait: '{value}' is not a "
                                                  "number of seconds")
    assert_untouched(project)


def test_lock_wait_accepts_fractions_and_zero(sqlite_project: Project) -> None:
    add_tables(sqlite_project, "001_t1")
    assert_clean_exit(sqlite_project.cli("apply", "--lock-wait", "0"), 0)
    assert_clean_exit(sqlite_project.cli("rollback", "--lock-wait", "0.5"), 0)


@pytest.mark.parametrize(("args", "option"), [
    (("rollback", "--steps", "0"), "--steps"),
    (("rollback", "--steps", "-3"), "--steps"),
    (("rollback", "--steps", "99999999999999999999"), "--steps"),
    (("history", "--limit", "0"), "--limit"),
    (("history", "--limit", "99999999999999999999"), "--limit"),
    (("apply", "--target", "99999999999999999999"), "--target"),
    (("apply", "--target", "-1"), "--target"),
    (("apply", "--target", ""), "--target"),
    (("apply", "--target", "5x"), "--target"),
    (("apply", "--target", "\u00b2"), "--target"),  # '²'.isdigit() is True
    (("rollback", "--target", "99999999999999999999"), "--target"),
    (("baseline", "99999999999999999999"), "VERSION"),
    (("repair", "--mark-applied", "1.0"), "--mark-applied"),
    (("repair", "--mark-pending", "99999999999999999999"), "--mark-pending"),
])
def test_out_of_range_numbers_are_exit_2_naming_the_option(
        project: Project, args: tuple[str, ...], option: str) -> None:
    add_tables(project, "001_t1")
    result = project.cli(*args)
    assert_clean_exit(result, 2)
    assert one_paragraph_error(result).startswith(f"error: {option}: ")
    assert_untouched(project)


def test_a_target_above_every_version_is_refused(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    result = project.cli("apply", "--target", "20")
    assert_clean_exit(result, 2)
    assert "no migration has version 020 (latest versions: 001, 002)" in result.stderr
    assert_untouched(project)


# --- item 14: CLI errors speak CLI, versions as the files spell them -----------------

def test_bad_target_names_the_option_not_the_library_parameter(sqlite_project: Project
                                                                ) -> None:
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("apply", "--target", "5x")
    assert_clean_exit(result, 2)
    assert result.stderr.startswith("error: --target: '5x' is not a migration version")
    assert "target_version" not in result.stderr


def test_repair_spells_versions_as_the_files_do(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    result = project.cli("repair", "--mark-applied", "5")
    assert_clean_exit(result, 2)
    assert "no migration file has version 005;" in result.stderr
    result = project.cli("repair", "--mark-pending", "2")
    assert_clean_exit(result, 2)
    assert "version 002 is not in the history" in result.stderr


# --- item 16: --config after the command ---------------------------------------------

COMMANDS = [("status",), ("apply",), ("rollback",), ("validate",), ("new", "next"),
            ("history",), ("baseline", "1"), ("repair",)]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_config_after_the_command(sqlite_project: Project, tmp_path: Path,
                                  command: tuple[str, ...]) -> None:
    add_tables(sqlite_project, "001_t1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(*command, "--config", str(sqlite_project.config), cwd=elsewhere)
    assert_clean_exit(result, 0)


def test_config_after_the_command_overrides_the_environment_variable(
        sqlite_project: Project, tmp_path: Path) -> None:
    add_tables(sqlite_project, "001_t1")
    missing = str(tmp_path / "missing.yaml")
    result = run_cli("apply", "--config", str(sqlite_project.config), cwd=tmp_path,
                     env={"CRYOMIGRATE_CONFIG": missing})
    assert_clean_exit(result, 0)
    assert history_versions(sqlite_project) == ["001"]
    # The variable alone still works.
    result = run_cli("status", cwd=tmp_path,
                     env={"CRYOMIGRATE_CONFIG": str(sqlite_project.config)})
    assert_clean_exit(result, 0)


def test_config_before_and_after_must_agree(sqlite_project: Project, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(sqlite_project.config.read_text())
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("apply", "--config", str(other))
    assert_clean_exit(result, 2)
    assert "give it once" in one_paragraph_error(result)
    assert_untouched(sqlite_project)
    # The same file on both sides is no conflict.
    assert_clean_exit(sqlite_project.cli("status", "--config", str(sqlite_project.config)), 0)


# --- item 16: a target in a gap of the numbering ---------------------------------------

def test_targets_in_a_gap(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2", "005_t5", "006_t6")
    assert_clean_exit(project.cli("apply", "--target", "4"), 0)
    assert history_versions(project) == ["001", "002"]
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback", "--target", "4", "--format", "json")
    assert_clean_exit(result, 0)
    assert [m["version"] for m in json_doc(result)["rolled_back"]] == ["006", "005"]
    assert history_versions(project) == ["001", "002"]
    assert {"t1", "t2"} <= project.tables() and not {"t5", "t6"} & project.tables()


# --- item 16: skipped migrations in JSON ---------------------------------------------

# Run while this run is inside 001 (non-transactional, so no lock is held): another run
# records 002, which this run had planned, so it must skip it.
OTHER_RUN_TAKES_002 = '''
"""Another run takes 002 meanwhile."""
import pathlib

from cryomigrate import api

transactional = False


def apply(conn, environment):
    conn.sql("CREATE TABLE t1 (id INTEGER)").execute()
    api.baseline("002", config=str(pathlib.Path(__file__).parents[1] / "environments.yaml"))


def rollback(conn, environment):
    conn.sql("DROP TABLE t1").execute()
'''


def test_json_run_lists_skipped_migrations(project: Project) -> None:
    project.add("001_t1.py", OTHER_RUN_TAKES_002)
    add_tables(project, "002_t2", "003_t3")
    result = project.cli("apply", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert [m["version"] for m in document["applied"]] == ["001", "003"]
    assert document["skipped"] == [{"version": "002", "name": "t2", "file": "002_t2.sql"}]
    assert history_versions(project) == ["001", "002", "003"]
    assert "t2" not in project.tables()  # the other run only recorded it


def test_json_run_without_skips_has_an_empty_list(sqlite_project: Project) -> None:
    add_tables(sqlite_project, "001_t1")
    assert json_doc(sqlite_project.cli("apply", "--format", "json"))["skipped"] == []


# --- item 13: Ctrl-C ----------------------------------------------------------------

INTERRUPTS = "def apply(conn, environment):\n    raise KeyboardInterrupt\n"


def test_ctrl_c_during_apply_json_is_one_document(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_stop.py", INTERRUPTS)
    add_tables(project, "003_t3")
    result = project.cli("apply", "--format", "json")
    document = assert_json_error(result, 130)
    assert [m["version"] for m in document["applied"]] == ["001"]
    assert document["environment"] == "development"
    assert "interrupted" in document["error"]["message"]
    assert history_versions(project) == ["001"]


def test_ctrl_c_during_apply_text_says_what_was_done(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_stop.py", INTERRUPTS)
    result = project.cli("apply")
    assert_clean_exit(result, 130)
    assert "001_t1" in result.stdout
    assert "Applied 1 migration in development" in result.stdout
    assert one_paragraph_error(result).startswith("error: interrupted")


def test_ctrl_c_before_the_run_starts(sqlite_project: Project) -> None:
    # Module-level code runs while every migration is loaded, before anything runs.
    add_tables(sqlite_project, "001_t1")
    sqlite_project.add("002_slow.py", "raise KeyboardInterrupt\n\n\n"
                       "def apply(conn, environment):\n    pass\n")
    document = assert_json_error(sqlite_project.cli("apply", "--format", "json"), 130)
    assert document["applied"] == [] and document["environment"] == "development"
    assert document["error"]["message"].startswith("interrupted (Ctrl-C)")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 130)
    assert one_paragraph_error(result).startswith("error: interrupted (Ctrl-C)")
    assert_untouched(sqlite_project)


def test_real_sigint_in_a_process(sqlite_project: Project) -> None:
    add_tables(sqlite_project, "001_t1")
    sqlite_project.add("002_stop.py", "import os, signal\n\n\ndef apply(conn, environment):\n"
                       "    os.kill(os.getpid(), signal.SIGINT)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "cryomigrate", "apply", "--format", "json"],
                          cwd=sqlite_project.root, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    document = json.loads(done.stdout)
    assert document["error"]["code"] == 130
    assert [m["version"] for m in document["applied"]] == ["001"]


def test_end_of_input_at_the_confirmation_is_not_a_yes(
        sqlite_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cryomigrate.cli_frame.stdin_is_terminal", lambda: True)
    config_with(sqlite_project, "policies: {require_confirmation: true}")
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("apply", "--format", "json", input="")
    assert_json_error(result, 3)
    assert_untouched(sqlite_project)


# --- every command, failing, in JSON: one document on stdout, one paragraph on stderr --

def _bad_config(p: Project) -> None:
    p.write_config("environments: {development: {databse: x}}\n")


def _nothing(p: Project) -> None:
    pass


FAILURES: list[tuple[str, Callable[[Project], None], tuple[str, ...], int]] = [
    *[("bad config", _bad_config, c, 2) for c in COMMANDS],
    *[("unknown env", _nothing, (*c, "--env", "nope"), 2) for c in COMMANDS],
    *[("config twice", _nothing, (*c, "--config", "/no/such.yaml"), 2) for c in COMMANDS],
    *[("unknown option", _nothing, (*c, "--bogus"), 2) for c in COMMANDS],
    ("missing name", _nothing, ("new",), 2),
    ("bad name", _nothing, ("new", "!?"), 2),
    ("missing version", _nothing, ("baseline",), 2),
    ("bad target", _nothing, ("apply", "--target", "5x"), 2),
    ("target past the end", _nothing, ("apply", "--target", "9"), 2),
    ("bad target", _nothing, ("rollback", "--target", "-1"), 2),
    ("target and steps", _nothing, ("rollback", "--target", "1", "--steps", "1"), 2),
    ("bad steps", _nothing, ("rollback", "--steps", "0"), 2),
    ("bad limit", _nothing, ("history", "--limit", "0"), 2),
    ("bad version", _nothing, ("baseline", "1e3"), 2),
    ("no such file", _nothing, ("baseline", "9"), 2),
    ("bad version", _nothing, ("repair", "--mark-applied", "x"), 2),
    ("bad lock wait", _nothing, ("apply", "--lock-wait", "inf"), 2),
]


@pytest.mark.parametrize(("situation", "setup", "args", "code"), FAILURES,
                         ids=[f"{a[0]}-{s}" for s, _, a, _ in FAILURES])
def test_every_failing_command_prints_one_json_document(
        sqlite_project: Project, situation: str, setup: Callable[[Project], None],
        args: tuple[str, ...], code: int) -> None:
    add_tables(sqlite_project, "001_t1")
    setup(sqlite_project)
    result = sqlite_project.cli(*args, "--format", "json")
    document = assert_json_error(result, code)
    assert document["environment"] == ("nope" if "nope" in args else "development")
    assert one_paragraph_error(result).startswith("error: " + document["error"]["message"])


@pytest.mark.parametrize("command", [("apply",), ("rollback",), ("baseline", "1"),
                                     ("repair",)], ids=lambda c: c[0])
def test_locked_commands_print_one_json_document(project: Project,
                                                 command: tuple[str, ...]) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    add_tables(project, "002_t2")
    with hold_run_lock(project):
        result = project.cli(*command, "--lock-wait", "0.2", "--format", "json")
    assert_json_error(result, 5)
    one_paragraph_error(result)
