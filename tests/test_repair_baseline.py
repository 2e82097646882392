"""`baseline` (adopt an existing database) and `repair` (settle the history by hand)."""

from __future__ import annotations

import pytest

from cryomigrate import baseline, repair
from tests.conftest import Project
from tests.helpers_core import add_tables, assert_clean_exit, history_versions, json_doc


def test_baseline_records_without_running(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2", "003_t3")
    result = project.cli("baseline", "2")
    assert_clean_exit(result, 0)
    assert "001_t1.sql" in result.stdout and "002_t2.sql" in result.stdout
    assert history_versions(project) == ["001", "002"]
    assert not {"t1", "t2"} & project.tables()
    assert project.journal() == [("001", "baseline", "ok"), ("002", "baseline", "ok")]
    assert_clean_exit(project.cli("apply"), 0)
    assert "t3" in project.tables() and not {"t1", "t2"} & project.tables()


def test_baseline_skips_already_applied(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    result = project.cli("baseline", "002", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document == {"environment": "development", "recorded": ["002_t2.sql"]}
    assert history_versions(project) == ["001", "002"]


def test_baseline_unknown_version_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1")
    for version in ("7", "v1"):
        result = project.cli("baseline", version)
        assert_clean_exit(result, 2)
        assert version in result.stderr
    assert history_versions(project) == []


def test_baseline_library(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    result = baseline("1", config=project.config)
    assert result.recorded == ("001_t1.sql",)
    assert history_versions(project) == ["001"]


def test_repair_with_nothing_to_do(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("repair")
    assert_clean_exit(result, 0)
    assert "nothing to repair" in result.stdout


def test_repair_json_shape(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    project.add("001_t1.sql", "-- edited\n" + (project.migrations / "001_t1.sql").read_text())
    result = project.cli("repair", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert document["environment"] == "development"
    assert document["checksums_updated"] == ["001_t1.sql"]
    assert document["dirty"] == []


def test_mark_applied_records_pending_migration_without_running_it(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    result = project.cli("repair", "--mark-applied", "1")
    assert_clean_exit(result, 0)
    assert "001_t1.sql" in result.stdout
    assert history_versions(project) == ["001"]
    assert "t1" not in project.tables()
    assert project.journal() == [("001", "repair", "ok")]


def test_mark_applied_already_applied_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("repair", "--mark-applied", "001")
    assert_clean_exit(result, 2)
    assert "already applied" in result.stderr


def test_mark_applied_unknown_version_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1")
    result = project.cli("repair", "--mark-applied", "9")
    assert_clean_exit(result, 2)
    assert history_versions(project) == []


def test_mark_pending_not_in_history_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1")
    result = project.cli("repair", "--mark-pending", "1")
    assert_clean_exit(result, 2)
    assert "pending" in result.stderr


def test_mark_pending_removes_history_row_without_running_rollback(project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    assert_clean_exit(project.cli("repair", "--mark-pending", "1"), 0)
    assert history_versions(project) == []
    assert "t1" in project.tables()


def test_repair_library(project: Project) -> None:
    add_tables(project, "001_t1")
    result = repair(config=project.config, mark_applied="1")
    assert result.marked_applied == ("001_t1.sql",)
    assert history_versions(project) == ["001"]


@pytest.mark.parametrize("args", [(), ("--mark-pending", "1")])
def test_repair_on_a_database_never_migrated_creates_nothing(project: Project,
                                                             args: tuple[str, ...]) -> None:
    add_tables(project, "001_t1")
    result = project.cli("repair", *args)
    assert_clean_exit(result, 2 if args else 0)
    if args:
        assert "version 001 is not in the history" in result.stderr
    else:
        assert "nothing to repair" in result.stdout
    if project.dialect == "sqlite":
        assert not (project.root / "app.db").exists()
    else:
        assert project.tables() == set()


def test_baseline_of_a_version_with_no_file_names_it_as_the_files_spell_it(
        project: Project) -> None:
    add_tables(project, "001_t1", "003_t3")
    result = project.cli("baseline", "2")
    assert_clean_exit(result, 2)
    assert "no migration file has version 002;" in result.stderr
    assert "the nearest below is 001_t1.sql" in result.stderr
    assert history_versions(project) == []


def test_repair_does_not_accept_the_checksum_of_a_file_that_no_longer_loads(
        project: Project) -> None:
    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply"), 0)
    checksum = project.query("SELECT checksum FROM cryomigrate_history")
    project.add("001_t1.sql", "-- cryomigrate:apply\nCREATE TABLE t1 (id INT);\n"
                              "-- cryomigrate: rollback\nDROP TABLE t1;\n")  # a near miss
    result = project.cli("repair")
    assert_clean_exit(result, 2)
    assert "001_t1.sql line 3" in result.stderr
    assert project.query("SELECT checksum FROM cryomigrate_history") == checksum
    assert ("001", "repair", "ok") not in project.journal()
