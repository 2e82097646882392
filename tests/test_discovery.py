"""The migrations folder: integer versions, what is a migration, what is ignored."""

from __future__ import annotations

import pytest

from cryomigrate.discovery import scan
from tests.conftest import Project
from tests.helpers_core import add_tables, assert_clean_exit, history_versions, json_doc


def test_versions_compare_as_integers(project: Project) -> None:
    # Lexically "10_" sorts before "9_"; 10 reads the table 9 creates, so order matters.
    project.add("9_base.sql", "CREATE TABLE base (id INTEGER PRIMARY KEY);")
    project.add("10_fill.sql", "INSERT INTO base (id) VALUES (10);")
    project.add("0002_first.sql", "CREATE TABLE first (id INTEGER);")
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert project.query("SELECT id FROM base") == [(10,)]
    assert history_versions(project) == ["0002", "9", "10"]
    status = json_doc(project.cli("status", "--format", "json"))
    assert [m["version"] for m in status["migrations"]] == ["0002", "9", "10"]


def test_ten_comes_after_nine_with_zero_padding(sqlite_project: Project) -> None:
    add_tables(sqlite_project, "010_ten", "009_nine", "001_one")
    assert [f.version_text for f in scan(sqlite_project.migrations)] == ["001", "009", "010"]


def test_same_version_spelt_differently_is_a_duplicate(project: Project) -> None:
    add_tables(project, "5_five", "005_also_five", "0005_again")
    for command in ("apply", "status"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        for name in ("5_five.sql", "005_also_five.sql", "0005_again.sql"):
            assert name in result.stderr
    assert history_versions(project) == []


def test_duplicate_across_kinds_is_an_error(project: Project) -> None:
    add_tables(project, "001_a")
    project.add("001_b.py", "def apply(conn, environment):\n    pass\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_a.sql" in result.stderr and "001_b.py" in result.stderr
    assert "a" not in project.tables()


def test_target_five_equals_target_005(project: Project) -> None:
    add_tables(project, "004_t4", "005_t5", "006_t6")
    assert_clean_exit(project.cli("apply", "--target", "5"), 0)
    assert history_versions(project) == ["004", "005"]
    assert_clean_exit(project.cli("rollback", "--target", "0004"), 0)
    assert history_versions(project) == ["004"]
    assert_clean_exit(project.cli("apply", "--target", "005"), 0)
    assert history_versions(project) == ["004", "005"]


def test_unknown_target_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1")
    result = project.cli("apply", "--target", "7")
    assert_clean_exit(result, 2)
    assert "7" in result.stderr
    assert "t1" not in project.tables()


def test_non_numeric_target_is_exit_2(project: Project) -> None:
    add_tables(project, "001_t1")
    result = project.cli("apply", "--target", "latest")
    assert_clean_exit(result, 2)
    assert "latest" in result.stderr


def test_misnamed_files_are_errors_naming_them(project: Project) -> None:
    add_tables(project, "001_ok")
    project.add("002-add-users.sql", "SELECT 1;")
    project.add("add_things.py", "def apply(conn, environment):\n    pass\n")
    project.add("003_bad-name.sql.j2", "SELECT 1;")
    for command in ("apply", "status", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        for name in ("002-add-users.sql", "add_things.py", "003_bad-name.sql.j2"):
            assert name in result.stderr
    assert "ok" not in project.tables()


@pytest.mark.parametrize("name", ["\u0661_arabic_indic.sql", "\uff12_fullwidth.sql",
                                  "003_upper.SQL", "004_mixed.Py", "005_template.sql.J2"])
def test_near_miss_versions_and_extensions_are_errors_not_skipped(project: Project,
                                                                   name: str) -> None:
    """Another script's digits are no version, and an extension in the wrong case is no
    migration that could be silently left out: both are misnamed."""
    add_tables(project, "001_ok")
    project.add(name, "SELECT 1;")
    for command in ("apply", "status", "validate"):
        result = project.cli(command)
        assert_clean_exit(result, 2)
        assert name in result.stderr and "digits 0-9" in result.stderr, result.stderr
    assert "ok" not in project.tables()


def test_a_repeatable_with_an_upper_case_extension_is_told_how_to_rename_it(
        project: Project) -> None:
    project.add("R_view.SQL", "SELECT 1;")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "R_view.SQL has its extension in upper case; rename it to R_view.sql" \
        in result.stderr


def test_a_target_in_another_scripts_digits_is_refused(project: Project) -> None:
    from cryomigrate import apply_migrations
    from cryomigrate.errors import InputError

    add_tables(project, "001_t1")
    assert_clean_exit(project.cli("apply", "--target", "\u0663"), 2)
    with pytest.raises(InputError, match="digits 0-9"):
        apply_migrations(target_version="\u0663", config=project.config)
    assert "t1" not in project.tables()


def test_ignored_files(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("__init__.py", "raise RuntimeError('must not be imported')\n")
    project.add("_helpers.py", "raise RuntimeError('must not be imported')\n")
    project.add(".002_hidden.sql", "THIS IS NOT SQL;")
    project.add("_003_draft.sql", "THIS IS NOT SQL;")
    project.add("README.md", "# notes\n")
    project.add("004_notes.txt", "not a migration")
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert history_versions(project) == ["001"]


def test_sub_folders_are_never_scanned(project: Project) -> None:
    add_tables(project, "001_t1")
    (project.migrations / "templates").mkdir()
    (project.migrations / "templates" / "002_partial.sql").write_text("NOT SQL AT ALL;")
    (project.migrations / "templates" / "bad name.sql").write_text("NOT SQL AT ALL;")
    (project.migrations / "003_folder.sql").mkdir()  # a folder named like a migration
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert history_versions(project) == ["001"]


def test_missing_migrations_folder_is_exit_2(project: Project) -> None:
    project.migrations.rmdir()
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "migrations" in result.stderr


def test_configured_migrations_folder(sqlite_project: Project) -> None:
    sqlite_project.write_config("""
        migrations: db/changes
        environments:
          development:
            database: sqlite:///app.db
    """)
    folder = sqlite_project.root / "db" / "changes"
    folder.mkdir(parents=True)
    (folder / "001_t.sql").write_text("CREATE TABLE t (id INTEGER);")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert "t" in sqlite_project.tables()


def test_repeatables_are_found_apart_from_versioned_files(sqlite_project: Project) -> None:
    from cryomigrate.discovery import scan_project

    for name in ("002_b.sql", "R_z.sql", "R_a.py", "R_m.sql.j2", "001_a.sql"):
        sqlite_project.add(name, "SELECT 1;\n")
    found = scan_project(sqlite_project.migrations)
    assert [f.label for f in found.files] == ["001_a.sql", "002_b.sql"]
    assert [(f.name, f.kind, f.repeatable) for f in found.repeatables] == [
        ("a", "python", True), ("m", "template", True), ("z", "sql", True)]
    assert scan(sqlite_project.migrations) == found.files
