"""SQL migrations end to end: run as written, sections, transaction control, encodings."""

from __future__ import annotations

import json

from cryomigrate.discovery import checksum_of
from tests.conftest import Project
from tests.helpers_core import add_tables, assert_clean_exit, history_versions, json_doc


def test_sql_is_run_exactly_as_written(project: Project) -> None:
    project.add("001_tricky.sql", """
        -- a comment; with a semicolon
        CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
        /* block; comment */
        INSERT INTO notes VALUES (1, '{{ not_jinja }}');
        INSERT INTO notes VALUES (2, 'semi;colon -- not a comment');
        INSERT INTO notes VALUES (3, 'it''s {% raw %}');
        INSERT INTO notes VALUES (4, '$$');
    """)
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT body FROM notes ORDER BY id") == [
        ("{{ not_jinja }}",), ("semi;colon -- not a comment",), ("it's {% raw %}",), ("$$",)]


def test_dollar_quoted_function_postgres(pg_project: Project) -> None:
    pg_project.add("001_fn.sql", """
        CREATE FUNCTION add_one(x integer) RETURNS integer AS $body$
        BEGIN
            -- a semicolon; inside
            RETURN x + 1;
        END;
        $body$ LANGUAGE plpgsql;
        DO $$ BEGIN CREATE TABLE made_in_do (v TEXT); INSERT INTO made_in_do VALUES ('a;b'); END $$;
    """)
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT add_one(41)") == [(42,)]
    assert pg_project.query("SELECT v FROM made_in_do") == [("a;b",)]


def test_apply_and_rollback_sections(project: Project) -> None:
    project.add("001_a.sql", """
        -- Create table a
        -- cryomigrate:apply
        CREATE TABLE a (id INTEGER);
        -- cryomigrate:rollback
        DROP TABLE a;
    """)
    assert_clean_exit(project.cli("apply"), 0)
    assert "a" in project.tables()
    assert_clean_exit(project.cli("rollback"), 0)
    assert "a" not in project.tables()
    assert history_versions(project) == []


def test_empty_rollback_section_is_a_no_op(project: Project) -> None:
    project.add("001_data.sql", """
        -- cryomigrate:apply
        CREATE TABLE kept (id INTEGER);
        -- cryomigrate:rollback
        -- nothing to undo: the table is harmless
    """)
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback")
    assert_clean_exit(result, 0)
    assert "kept" in project.tables()
    assert history_versions(project) == []
    assert [row[1:] for row in project.journal()] == [("apply", "ok"), ("rollback", "ok")]


def test_missing_rollback_section_is_irreversible(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_forever.sql", "CREATE TABLE forever (id INTEGER);")
    add_tables(project, "003_t3")
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback")
    assert_clean_exit(result, 2)
    assert "002_forever.sql" in result.stderr and "irreversible" in result.stderr
    # Refused before anything ran: 003 (above the irreversible one) is still applied.
    assert history_versions(project) == ["001", "002", "003"]
    assert {"t1", "forever", "t3"} <= project.tables()
    # Rolling back only what is above it still works.
    assert_clean_exit(project.cli("rollback", "--target", "2"), 0)
    assert history_versions(project) == ["001", "002"]


def test_users_begin_commit_not_sent_with_notice(project: Project) -> None:
    project.add("001_wrapped.sql", """
        BEGIN;
        CREATE TABLE wrapped (id INTEGER);
        INSERT INTO wrapped VALUES (1);
        COMMIT;
    """)
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert "001_wrapped.sql line 1" in result.stderr
    assert "001_wrapped.sql line 4" in result.stderr
    assert "not sent" in result.stderr
    assert "not sent" not in result.stdout
    assert project.query("SELECT id FROM wrapped") == [(1,)]


def test_notice_is_not_in_json_stdout(project: Project) -> None:
    project.add("001_wrapped.sql", "START TRANSACTION;\nCREATE TABLE w (id INTEGER);\nEND;\n")
    result = project.cli("apply", "--format", "json")
    assert_clean_exit(result, 0)
    document = json_doc(result)
    assert [m["version"] for m in document["applied"]] == ["001"]
    assert "not sent" in result.stderr


def test_failure_after_users_commit_rolls_everything_back(project: Project) -> None:
    project.add("001_half.sql", """
        BEGIN;
        CREATE TABLE first_half (id INTEGER);
        COMMIT;
        BEGIN;
        CREATE TABLE second_half (id INTEGER);
        INSERT INTO no_such_table VALUES (1);
        COMMIT;
    """)
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "001_half.sql line 6" in result.stderr
    assert not {"first_half", "second_half"} & project.tables()
    assert history_versions(project) == []
    assert [row[1:] for row in project.journal()] == [("apply", "failed")]


def test_top_level_rollback_is_an_input_error(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_undo.sql", "CREATE TABLE u (id INTEGER);\nROLLBACK;\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_undo.sql line 2" in result.stderr and "ROLLBACK" in result.stderr
    assert "t1" not in project.tables()  # checked before migration 001 ran


def test_savepoints_are_allowed(project: Project) -> None:
    project.add("001_sp.sql", """
        CREATE TABLE sp (id INTEGER);
        SAVEPOINT s1;
        INSERT INTO sp VALUES (1);
        ROLLBACK TO SAVEPOINT s1;
        INSERT INTO sp VALUES (2);
        RELEASE SAVEPOINT s1;
    """)
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT id FROM sp") == [(2,)]


def test_begin_atomic_function_body(pg_project: Project) -> None:
    pg_project.add("001_atomic.sql", """
        CREATE TABLE counter (n INTEGER);
        INSERT INTO counter VALUES (0);
        CREATE FUNCTION bump() RETURNS integer LANGUAGE sql
        BEGIN ATOMIC
            UPDATE counter SET n = n + 1;
            SELECT CASE WHEN n > 0 THEN n ELSE -1 END FROM counter;
        END;
        CREATE PROCEDURE reset() LANGUAGE sql
        BEGIN ATOMIC
            UPDATE counter SET n = 0;
        END;
    """)
    result = pg_project.cli("apply")
    assert_clean_exit(result, 0)
    assert "not sent" not in result.stderr
    assert pg_project.query("SELECT bump()") == [(1,)]


def test_sqlite_trigger_body(sqlite_project: Project) -> None:
    sqlite_project.add("001_trigger.sql", """
        CREATE TABLE items (id INTEGER PRIMARY KEY);
        CREATE TABLE audit (item INTEGER, note TEXT);
        CREATE TRIGGER items_audit AFTER INSERT ON items
        BEGIN
            INSERT INTO audit VALUES (new.id, 'added;');
            UPDATE audit SET note = CASE WHEN note = 'x' THEN 'y' ELSE note END;
        END;
        INSERT INTO items VALUES (7);
    """)
    result = sqlite_project.cli("apply")
    assert_clean_exit(result, 0)
    assert "not sent" not in result.stderr
    assert sqlite_project.query("SELECT item, note FROM audit") == [(7, "added;")]


def test_no_transaction_migration_postgres(pg_project: Project) -> None:
    pg_project.add("001_t.sql", "CREATE TABLE big (id INTEGER);")
    pg_project.add("002_index.sql", """
        -- cryomigrate:no-transaction
        -- cryomigrate:apply
        CREATE INDEX CONCURRENTLY big_id ON big (id);
        -- cryomigrate:rollback
        DROP INDEX CONCURRENTLY big_id;
    """)
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert pg_project.query("SELECT indexname FROM pg_indexes WHERE tablename = 'big'") == [
        ("big_id",)]
    assert_clean_exit(pg_project.cli("rollback", "--target", "1"), 0)
    assert pg_project.query("SELECT indexname FROM pg_indexes WHERE tablename = 'big'") == []


def test_statement_that_needs_no_transaction_fails_with_hint(pg_project: Project) -> None:
    pg_project.add("001_t.sql", "CREATE TABLE big (id INTEGER);")
    pg_project.add("002_index.sql", "CREATE INDEX CONCURRENTLY big_id ON big (id);")
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert "002_index.sql" in result.stderr and "no-transaction" in result.stderr
    assert history_versions(pg_project) == ["001"]


def test_no_transaction_migration_sqlite(sqlite_project: Project) -> None:
    sqlite_project.add("001_t.sql", "CREATE TABLE t (id INTEGER);")
    sqlite_project.add("002_vacuum.sql", """
        -- cryomigrate:no-transaction
        VACUUM;
    """)
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert history_versions(sqlite_project) == ["001", "002"]


def test_non_utf8_file_is_exit_2_naming_file(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_latin1.sql", "-- caf\xe9\nSELECT 1;\n".encode("latin-1"))
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_latin1.sql" in result.stderr and "UTF-8" in result.stderr
    assert "t1" not in project.tables()


def test_byte_order_mark_is_allowed(project: Project) -> None:
    project.add("001_bom.sql", b"\xef\xbb\xbfCREATE TABLE bom (id INTEGER);\n")
    assert_clean_exit(project.cli("apply"), 0)
    assert "bom" in project.tables()


def test_crlf_checksum_equals_lf_checksum(project: Project) -> None:
    lf = (b"-- cryomigrate:apply\nCREATE TABLE c (id INTEGER);\n"
          b"-- cryomigrate:rollback\nDROP TABLE c;\n")
    path = project.add("001_c.sql", lf)
    assert_clean_exit(project.cli("apply"), 0)
    path.write_bytes(lf.replace(b"\n", b"\r\n"))
    status = json_doc(project.cli("status", "--format", "json"))
    assert status["migrations"][0]["state"] == "applied"
    assert status["migrations"][0]["checksum"] == checksum_of(lf)
    assert_clean_exit(project.cli("rollback"), 0)  # CRLF markers still split sections
    assert "c" not in project.tables()


def test_failing_statement_reports_file_line(project: Project) -> None:
    project.add("001_bad.sql", """
        -- cryomigrate:apply
        CREATE TABLE ok (id INTEGER);

        INSERT INTO missing_table VALUES (1);
    """)
    result = project.cli("apply", "--format", "json")
    assert_clean_exit(result, 1)
    document = json.loads(result.stdout)
    assert "001_bad.sql line 4" in document["error"]["message"]
    assert "ok" not in project.tables()


def test_prepare_transaction_is_refused_in_a_transactional_migration(project: Project) -> None:
    project.add("001_two_phase.sql", "CREATE TABLE t (id INTEGER);\nPREPARE TRANSACTION 'x';\n")
    result = project.cli("apply")
    assert result.exit_code == 2, result.output
    assert "001_two_phase.sql line 2" in result.stderr and "PREPARE TRANSACTION" in result.stderr
    assert "t" not in project.tables()
