"""Folders written for other tools, read as those tools read them (DESIGN §9.1).

The rules each reader follows come from the tools' own sources (see the docstrings of
cryomigrate/formats/*.py). These tests run on SQLite and PostgreSQL alike; the real
folders of real projects are in test_corpus_formats.py.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import Project
from tests.helpers_core import assert_clean_exit


def use_format(project: Project, fmt: str) -> None:
    project.write_config(f"""
        format: {fmt}
        environments:
          development:
            database: {project.url}
    """)


def states(project: Project) -> dict[str, str]:
    result = project.cli("status", "--format", "json")
    assert_clean_exit(result, 0)
    return {m["version"]: m["state"] for m in json.loads(result.stdout)["migrations"]}


def test_dbmate_sections_apply_and_roll_back(project: Project) -> None:
    use_format(project, "dbmate")
    project.add("20240101000000_users.sql", "-- migrate:up\nCREATE TABLE users (id INT);\n"
                "-- migrate:down\nDROP TABLE users;\n")
    project.add("20240102000000_pets.sql", "--migrate:up\nCREATE TABLE pets (id INT);\n"
                "--migrate:down\nDROP TABLE pets;\n")  # dbmate's regex: --\\s*migrate:up
    assert_clean_exit(project.cli("apply"), 0)
    assert {"users", "pets"} <= project.tables()
    assert_clean_exit(project.cli("rollback"), 0)
    assert not {"users", "pets"} & project.tables()
    assert set(states(project).values()) == {"pending"}


@pytest.mark.parametrize("marker", [
    "-- migrate:up transaction: false", "-- migrate: up", "-- Migrate:up", "-- migrate:UP",
    "-- migrate:upx", "  -- migrate:up", "-- migrate:up transaction:flase",
])
def test_dbmate_near_miss_markers_are_input_errors(sqlite_project: Project,
                                                   marker: str) -> None:
    use_format(sqlite_project, "dbmate")
    sqlite_project.add("001_x.sql", f"-- header\n{marker}\nCREATE TABLE x (id INT);\n"
                       "-- migrate:down\nDROP TABLE x;\n")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_x.sql line 2" in result.stderr
    assert "x" not in sqlite_project.tables()


def test_dbmate_needs_a_down_section_and_nothing_before_up(sqlite_project: Project) -> None:
    use_format(sqlite_project, "dbmate")
    sqlite_project.add("001_x.sql", "-- migrate:up\nCREATE TABLE x (id INT);\n")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "no -- migrate:down" in result.stderr
    sqlite_project.add("001_x.sql", "CREATE TABLE y (id INT);\n-- migrate:up\nSELECT 1;\n"
                       "-- migrate:down\n")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_x.sql line 1: SQL before -- migrate:up" in result.stderr


def test_an_empty_down_section_is_named_in_the_folders_own_words(sqlite_project: Project
                                                                  ) -> None:
    use_format(sqlite_project, "dbmate")
    sqlite_project.add("001_x.sql", "-- migrate:up\nCREATE TABLE x (id INT);\n"
                       "-- migrate:down\n")
    result = sqlite_project.cli("validate")
    assert_clean_exit(result, 0)
    assert "001_x.sql: its down SQL (dbmate's format) is empty" in result.stdout, result.stdout
    assert "cryomigrate:rollback" not in result.stdout


def test_dbmate_transaction_false(pg_project: Project) -> None:
    use_format(pg_project, "dbmate")
    pg_project.add("001_t.sql", "-- migrate:up\nCREATE TABLE t (id INT);\n-- migrate:down\n"
                   "DROP TABLE t;\n")
    pg_project.add("002_i.sql", "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY "
                   "t_id ON t (id);\n-- migrate:down transaction:false\n"
                   "DROP INDEX CONCURRENTLY t_id;\n")
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT indexname FROM pg_indexes WHERE tablename = 't'") == [
        ("t_id",)]
    assert_clean_exit(pg_project.cli("rollback", "--steps", "1"), 0)
    assert pg_project.query("SELECT indexname FROM pg_indexes WHERE tablename = 't'") == []


def test_unrecognised_files_are_input_errors_naming_them(sqlite_project: Project) -> None:
    cases = {"dbmate": "x_first.sql", "golang-migrate": "001_x.sql", "sqlx": "first_x.sql",
             "goose": "abc.sql", "flyway": "V1_x.sql", "supabase": "init.sql"}
    for fmt, name in cases.items():
        use_format(sqlite_project, fmt)
        path = sqlite_project.add(name, "SELECT 1;\n")
        sqlite_project.add("README.md", "not a migration\n")
        result = sqlite_project.cli("status")
        assert_clean_exit(result, 2)
        assert name in result.stderr, (fmt, result.stderr)
        path.unlink()


def test_golang_migrate_pairs_and_checksum_of_both_files(project: Project) -> None:
    use_format(project, "golang-migrate")
    project.add("1_a.up.sql", "CREATE TABLE a (id INT);\n")
    down = project.add("1_a.down.sql", "DROP TABLE a;\n")
    project.add("2_b.up.sql", "CREATE TABLE b (id INT);\n")  # no down: irreversible
    assert_clean_exit(project.cli("apply"), 0)
    assert {"a", "b"} <= project.tables()
    result = project.cli("rollback")
    assert_clean_exit(result, 2)
    assert "2_b.up.sql is irreversible" in result.stderr
    down.write_text("DROP TABLE a; -- edited\n")
    assert states(project)["1"] == "modified"  # the pair's checksum covers the down file


def test_golang_migrate_down_without_up_and_duplicates(sqlite_project: Project) -> None:
    use_format(sqlite_project, "golang-migrate")
    sqlite_project.add("3_c.down.sql", "SELECT 1;\n")
    sqlite_project.add("4_d.up.sql", "SELECT 1;\n")
    sqlite_project.add("004_e.up.sql", "SELECT 1;\n")
    result = sqlite_project.cli("status")
    assert_clean_exit(result, 2)
    assert "3_c.down.sql has no up file" in result.stderr
    assert "004_e.up.sql and 4_d.up.sql" in result.stderr


def test_sqlx_simple_and_reversible_and_no_transaction(pg_project: Project) -> None:
    use_format(pg_project, "sqlx")
    pg_project.add("1_simple.sql", "CREATE TABLE s (id INT);\n")
    pg_project.add("2_pair.up.sql", "CREATE TABLE p (id INT);\n")
    pg_project.add("2_pair.down.sql", "DROP TABLE p;\n")
    pg_project.add("3_idx.up.sql", "-- no-transaction\nCREATE INDEX CONCURRENTLY p_id ON p "
                   "(id);\n")
    pg_project.add("3_idx.down.sql", "-- no-transaction\nDROP INDEX CONCURRENTLY p_id;\n")
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert_clean_exit(pg_project.cli("rollback", "--target", "1"), 0)
    assert "p" not in pg_project.tables() and "s" in pg_project.tables()
    result = pg_project.cli("rollback")
    assert_clean_exit(result, 2)
    assert "1_simple.sql is irreversible" in result.stderr


def test_goose_sections_statement_blocks_and_case(project: Project) -> None:
    use_format(project, "goose")
    project.add("00001_a.sql", "-- +goose Up\n-- +goose StatementBegin\nCREATE TABLE a (id "
                "INT);\n-- +goose StatementEnd\n\n-- +goose Down\nDROP TABLE a;\n")
    # goose matches annotations case-insensitively (internal/sqlparser extractAnnotation)
    project.add("00002_b.sql", "-- +goose up\nCREATE TABLE b (id INT);\n-- +goose down\n"
                "DROP TABLE b;\n")
    assert_clean_exit(project.cli("apply"), 0)
    assert {"a", "b"} <= project.tables()
    assert_clean_exit(project.cli("rollback"), 0)
    assert not {"a", "b"} & project.tables()


@pytest.mark.parametrize("line", [
    "-- +goose Upp", " -- +goose Up", "-- +goose NO TRANSACTIONS", "-- +goose +goose Up",
    "-- +goose ENVSUB ON",
])
def test_goose_near_miss_annotations_are_input_errors(sqlite_project: Project,
                                                      line: str) -> None:
    use_format(sqlite_project, "goose")
    sqlite_project.add("1_x.sql", f"-- +goose Up\n{line}\nCREATE TABLE x (id INT);\n")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "1_x.sql line 2" in result.stderr
    assert "x" not in sqlite_project.tables()


def test_goose_structure_errors(sqlite_project: Project) -> None:
    use_format(sqlite_project, "goose")
    for body, expected in [
        ("CREATE TABLE x (id INT);\n", "line 1: SQL before -- +goose Up"),
        ("-- just a comment\n", "has no -- +goose Up"),
        ("-- +goose Down\nSELECT 1;\n", "line 1: -- +goose Down must follow"),
        ("-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n", "has no StatementEnd"),
    ]:
        sqlite_project.add("1_x.sql", body)
        result = sqlite_project.cli("apply")
        assert_clean_exit(result, 2)
        assert expected in result.stderr, result.stderr
    sqlite_project.add("2_y.go", "package migrations\n")
    result = sqlite_project.cli("status")
    assert_clean_exit(result, 2)
    assert "2_y.go is a Go migration" in result.stderr


def test_flyway_versions_undo_and_repeatable_names(sqlite_project: Project) -> None:
    use_format(sqlite_project, "flyway")
    sqlite_project.add("V1__create.sql", "CREATE TABLE f (id INT);\n")
    sqlite_project.add("U1__create.sql", "DROP TABLE f;\n")
    sqlite_project.add("V2__more.sql", "CREATE TABLE g (id INT);\n")
    sqlite_project.add("U2__more.sql", "DROP TABLE g;\n")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert_clean_exit(sqlite_project.cli("rollback", "--target", "1"), 0)
    assert_clean_exit(sqlite_project.cli("rollback", "--steps", "1"), 0)
    assert not {"f", "g"} & sqlite_project.tables()
    dotted = sqlite_project.add("V3.1__dotted.sql", "SELECT 1;\n")
    result = sqlite_project.cli("status")
    assert_clean_exit(result, 2)
    assert "V3.1__dotted.sql: Flyway version '3.1' is not a whole number" in result.stderr
    dotted.unlink()
    sqlite_project.add("V4__placeholder.sql", "CREATE TABLE ${name} (id INT);\n")
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 2)
    assert "V4__placeholder.sql line 1: holds a ${...} placeholder" in result.stderr


def test_supabase_folder_is_irreversible(sqlite_project: Project) -> None:
    use_format(sqlite_project, "supabase")
    sqlite_project.add("20240101000000_init.sql", "CREATE TABLE s (id INT);\n")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    result = sqlite_project.cli("rollback")
    assert_clean_exit(result, 2)
    assert "irreversible" in result.stderr


def test_unknown_format_and_new_are_refused(sqlite_project: Project) -> None:
    use_format(sqlite_project, "liquibase")
    result = sqlite_project.cli("status")
    assert_clean_exit(result, 2)
    assert "format: unknown format 'liquibase'" in result.stderr
    use_format(sqlite_project, "goose")
    result = sqlite_project.cli("new", "x", "--sql")
    assert_clean_exit(result, 2)
    assert "goose's format" in result.stderr


@pytest.mark.parametrize(("fmt", "files", "expected"), [
    ("golang-migrate", {"1_a.up.sql": "CREATE TABLE a (id INT);\n"},
     "1_a.up.sql is irreversible: it has no down file, so it cannot be rolled back; roll "
     "back to 1 or later, or add 1_a.down.sql"),
    ("sqlx", {"1_a.sql": "CREATE TABLE a (id INT);\n"},
     "1_a.sql is irreversible: it is a simple sqlx migration, which has no down file, so it "
     "cannot be rolled back; roll back to 1 or later, or rename it 1_a.up.sql and add "
     "1_a.down.sql"),
    ("sqlx", {"1_a.up.sql": "CREATE TABLE a (id INT);\n"},
     "1_a.up.sql is irreversible: it has no down file, so it cannot be rolled back; roll "
     "back to 1 or later, or add 1_a.down.sql"),
    ("goose", {"00001_a.sql": "-- +goose Up\nCREATE TABLE a (id INT);\n"},
     "00001_a.sql is irreversible: it has no -- +goose Down section, so it cannot be "
     "rolled back; roll back to 00001 or later, or add one after its Up section"),
    ("flyway", {"V1__a.sql": "CREATE TABLE a (id INT);\n"},
     "V1__a.sql is irreversible: it has no undo file, so it cannot be rolled back; roll "
     "back to 1 or later, or add U1__a.sql"),
    ("supabase", {"20240101000000_a.sql": "CREATE TABLE a (id INT);\n"},
     "20240101000000_a.sql is irreversible: it is a Supabase CLI migration, and the "
     "Supabase CLI has no down migrations, so it cannot be rolled back; roll back to "
     "20240101000000 or later, or undo it in a new migration"),
])
def test_irreversible_says_what_is_missing_in_the_formats_terms(
        sqlite_project: Project, fmt: str, files: dict[str, str], expected: str) -> None:
    use_format(sqlite_project, fmt)
    for name, text in files.items():
        sqlite_project.add(name, text)
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    result = sqlite_project.cli("rollback")
    assert_clean_exit(result, 2)
    assert expected in " ".join(result.stderr.split()), result.stderr
    assert "cryomigrate:rollback" not in result.stderr
    assert "a" in sqlite_project.tables()


def test_supabase_file_with_its_own_commit_ends_its_transaction_there(
        pg_project: Project) -> None:
    """The CLI sends a file as one batch, in which the file's own COMMIT (or END) really
    commits: what it scoped to its transaction (SET LOCAL, set_config(..., true), as
    dbdev's reserved_user_accts does with its simulated login) ends there."""
    use_format(pg_project, "supabase")
    pg_project.add("20240101000000_own.sql", "begin;\nselect set_config('app.who', 'x', "
                   "true);\nend;\ncreate table own as select current_setting('app.who', "
                   "true) as who;\n")
    pg_project.add("20240102000000_plain.sql", "create table plain (id int);\nselect 1/0;\n")
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert pg_project.query("SELECT who FROM own") == [("",)]  # not 'x': ended at END
    assert "plain" not in pg_project.tables()  # no control of its own: one transaction
    assert states(pg_project) == {"20240101000000": "applied",
                                  "20240102000000": "pending"}


@pytest.mark.parametrize(("fmt", "filename", "content", "line"), [
    ("supabase", "20240101000000_keep.sql",
     "-- cryomigrate:apply\ncreate table keep (x int);\n-- cryomigrate:rollback\n"
     "drop table keep;\n", 1),
    ("goose", "1_keep.sql", "-- +goose Up\ncreate table keep (x int);\n-- +Goose Down\n"
                            "drop table keep;\n", 3),
    ("goose", "1_keep.sql", "-- +goose Up\ncreate table keep (x int);\n-- migrate:down\n"
                            "drop table keep;\n", 3),
    ("golang-migrate", "1_keep.up.sql", "create table keep (x int);\n"
                                        "-- cryomigrate:rollback\ndrop table keep;\n", 2),
    ("sqlx", "1_keep.sql", "-- migrate:up\ncreate table keep (x int);\n-- migrate:down\n"
                           "drop table keep;\n", 1),
    ("flyway", "V1__keep.sql", "create table keep (x int);\n-- +goose Down\n"
                               "drop table keep;\n", 2),
], ids=["supabase-cryomigrate", "goose-case", "goose-dbmate", "golang-cryomigrate",
        "sqlx-dbmate", "flyway-goose"])
def test_another_tools_section_marker_in_a_foreign_file_is_refused(
        sqlite_project: Project, fmt: str, filename: str, content: str, line: int) -> None:
    """Read in the folder's own format, it would be a plain comment: the down SQL after
    it would run during apply, dropping what the file had just created."""
    use_format(sqlite_project, fmt)
    sqlite_project.add(filename, content)
    if fmt == "golang-migrate":
        sqlite_project.add("1_keep.down.sql", "drop table keep;\n")
    for command in ("validate", "apply"):
        result = sqlite_project.cli(command)
        assert_clean_exit(result, 2)
        assert f"{filename} line {line}: '" in result.stderr, result.stderr
        assert "section marker" in result.stderr
    assert not (sqlite_project.root / "app.db").exists()


@pytest.mark.parametrize(("fmt", "filename"), [("golang-migrate", "1_keep.up.SQL"),
                                               ("supabase", "20240101000000_keep.Sql"),
                                               ("flyway", "V1__keep.SQL")])
def test_a_sql_extension_in_other_case_is_refused_not_skipped(sqlite_project: Project,
                                                              fmt: str, filename: str) -> None:
    use_format(sqlite_project, fmt)
    sqlite_project.add(filename, "create table keep (x int);\n")
    for command in ("validate", "apply", "status"):
        result = sqlite_project.cli(command)
        assert_clean_exit(result, 2)
        assert f"{filename}: the extension must be .sql in lower case" in result.stderr


def test_a_lint_waiver_and_prose_are_no_section_markers_in_a_foreign_file(
        sqlite_project: Project) -> None:
    use_format(sqlite_project, "supabase")
    sqlite_project.add("20240101000000_keep.sql",
                       "-- cryomigrate:lint-ignore prefer-bigint-over-int\n"
                       "-- migrate: up to v2 of the schema, then down-time is over\n"
                       "create table keep (x int);\n")
    assert_clean_exit(sqlite_project.cli("validate"), 0)
    assert_clean_exit(sqlite_project.cli("apply"), 0)
