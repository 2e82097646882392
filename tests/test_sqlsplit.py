"""The lexical splitter: where statements end, their lines, and what is transaction control."""

from __future__ import annotations

import pytest

from cryomigrate.errors import MigrationFileError
from cryomigrate.sqlscript import parse_sections, prepare
from cryomigrate.sqlsplit import split


def texts(sql: str) -> list[str]:
    return [s.text.strip() for s in split(sql)]


def test_semicolons_in_strings_and_identifiers() -> None:
    sql = "INSERT INTO t VALUES ('a;b', 'it''s;');\nSELECT \"odd;name\" FROM t;"
    assert texts(sql) == ["INSERT INTO t VALUES ('a;b', 'it''s;');",
                          'SELECT "odd;name" FROM t;']


def test_escape_string_with_backslash_quote() -> None:
    assert texts(r"SELECT E'a\';b'; SELECT 2;") == [r"SELECT E'a\';b';", "SELECT 2;"]


def test_comments_hide_semicolons() -> None:
    sql = "-- a; b\nSELECT 1; /* x; /* nested; */ y; */ SELECT 2;\n-- only a comment;\n"
    assert texts(sql) == ["SELECT 1;", "SELECT 2;"]


def test_dollar_quoted_bodies() -> None:
    sql = ("CREATE FUNCTION f() RETURNS int AS $body$ BEGIN; RETURN 1; END; $body$ "
           "LANGUAGE plpgsql;\nDO $$ BEGIN PERFORM 1; END $$;")
    assert len(split(sql)) == 2
    assert split(sql)[1].text.startswith("DO $$")


def test_jinja_like_braces_are_plain_text() -> None:
    assert texts("SELECT '{{ x }}'; SELECT '{% y %}';") == ["SELECT '{{ x }}';",
                                                           "SELECT '{% y %}';"]


def test_begin_atomic_body_is_one_statement() -> None:
    sql = ("CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n"
           "  SELECT CASE WHEN true THEN 2 END;\nEND;\nSELECT f();")
    statements = split(sql)
    assert len(statements) == 2
    assert statements[0].control is None
    assert statements[1].line == 6


def test_sqlite_trigger_body_is_one_statement() -> None:
    sql = ("CREATE TRIGGER trg AFTER INSERT ON t\nBEGIN\n  INSERT INTO log VALUES (new.id);\n"
           "  UPDATE c SET n = n + 1;\nEND;\nINSERT INTO t VALUES (1);")
    assert len(split(sql)) == 2


def test_a_name_begin_in_a_create_statement_opens_no_block() -> None:
    # "AS begin" used to open a block that swallowed the rest of the script, so a COMMIT
    # after it was neither split off nor stripped, and ran on the server.
    sql = "CREATE VIEW v AS SELECT 1 AS begin;\nCOMMIT;\nSELECT 1;"
    assert texts(sql) == ["CREATE VIEW v AS SELECT 1 AS begin;", "COMMIT;", "SELECT 1;"]
    assert split(sql)[1].control == "commit"


def test_statement_lines() -> None:
    sql = "\n-- header\nSELECT 1;\n\nSELECT\n  2;\n"
    assert [s.line for s in split(sql)] == [3, 5]


@pytest.mark.parametrize(("sql", "control"), [
    ("BEGIN;", "begin"),
    ("begin transaction;", "begin"),
    ("START TRANSACTION;", "begin"),
    ("COMMIT;", "commit"),
    ("END;", "commit"),
    ("ROLLBACK;", "rollback"),
    ("ROLLBACK TO SAVEPOINT s;", None),
    ("ROLLBACK TRANSACTION TO SAVEPOINT s;", None),
    ("COMMIT PREPARED 'x';", None),
    ("SAVEPOINT s;", None),
    ("SELECT 1;", None),
])
def test_transaction_control_recognised(sql: str, control: str | None) -> None:
    assert split(sql)[0].control == control


def test_prepare_drops_control_and_reports_notice_lines() -> None:
    notices: list[str] = []
    script = prepare("BEGIN;\nCREATE TABLE a (x int);\nCOMMIT;\n", origin="001_a.sql",
                     first_line=10, notice=notices.append)
    assert script.statements == ("CREATE TABLE a (x int);",)
    assert script.file_line(0) == 11
    assert "BEGIN" not in script.text and "COMMIT" not in script.text
    assert script.text.count("\n") == 3  # lines still line up with the file
    assert len(notices) == 2
    assert "001_a.sql line 10" in notices[0] and "001_a.sql line 12" in notices[1]


def test_prepare_rejects_top_level_rollback() -> None:
    with pytest.raises(MigrationFileError, match=r"001_a.sql line 2: .*ROLLBACK"):
        prepare("SELECT 1;\nROLLBACK;\n", origin="001_a.sql")


def test_prepare_keeps_control_when_not_transactional() -> None:
    script = prepare("BEGIN;\nSELECT 1;\nCOMMIT;", origin="x.sql", transactional=False)
    assert len(script.statements) == 3


def test_sections() -> None:
    text = ("-- Create a\n-- cryomigrate:apply\nCREATE TABLE a (x int);\n"
            "-- cryomigrate:rollback\nDROP TABLE a;\n")
    sections = parse_sections(text, "001_a.sql")
    assert sections.apply.strip() == "CREATE TABLE a (x int);"
    assert sections.apply_line == 3
    assert sections.rollback is not None and sections.rollback.strip() == "DROP TABLE a;"
    assert sections.rollback_line == 5
    assert sections.transactional


def test_no_markers_is_all_apply_and_irreversible() -> None:
    sections = parse_sections("CREATE TABLE a (x int);\n", "001_a.sql")
    assert sections.apply_line == 1 and sections.rollback is None


def test_no_transaction_marker() -> None:
    sections = parse_sections("-- cryomigrate:no-transaction\n-- cryomigrate:apply\nVACUUM;\n",
                              "001_v.sql")
    assert not sections.transactional


@pytest.mark.parametrize(("text", "message"), [
    ("-- cryomigrate:aply\nSELECT 1;", "unknown marker"),
    ("-- cryomigrate:apply\nSELECT 1;\n-- cryomigrate:apply\nSELECT 2;", "second"),
    ("SELECT 0;\n-- cryomigrate:apply\nSELECT 1;", "before the first"),
    ("-- cryomigrate:rollback\nSELECT 1;", "no -- cryomigrate:apply"),
    # The rollback section present, the apply marker forgotten: said as that, at its line.
    ("CREATE TABLE t (id int);\n\n-- cryomigrate:rollback\nDROP TABLE t;",
     "001_x.sql line 3: -- cryomigrate:rollback starts a section, but the file has no "
     "-- cryomigrate:apply"),
    ("-- cryomigrate:apply\nSELECT 1;\n-- cryomigrate:no-transaction\n", "must come before"),
])
def test_bad_sections(text: str, message: str) -> None:
    with pytest.raises(MigrationFileError, match=message):
        parse_sections(text, "001_x.sql")


def test_regions_tell_comments_from_quoted_text() -> None:
    from cryomigrate.sqlsplit import regions

    sql = ("SELECT 'a -- b', E'\\'--', \"x--y\", $t$ -- $ $t$, a$b$c; -- real\n"
           "/* block /* nested */ */ SELECT $1;")
    found = [(r.kind, sql[r.start : r.end]) for r in regions(sql)]
    assert found == [("quoted", "'a -- b'"), ("quoted", "'\\'--'"),
                     ("quoted", '"x--y"'), ("quoted", "$t$ -- $ $t$"),
                     ("comment", "-- real"), ("comment", "/* block /* nested */ */")]


@pytest.mark.parametrize("text", [
    "-- cryomigrate:apply\nSELECT 1;\n-- cryomigrate: rollback\nSELECT 2;",
    "-- cryomigrate:apply\nSELECT 1;\n--  CryoMigrate:rollback\nSELECT 2;",
    "-- cryomigrate:apply\nSELECT 1; /*\n cryomigrate:rollback */\nSELECT 2;",
])
def test_near_miss_markers_name_their_line(text: str) -> None:
    with pytest.raises(MigrationFileError, match=r"001_x.sql line 3: "):
        parse_sections(text, "001_x.sql")


def test_markers_in_quoted_text_are_data() -> None:
    text = "SELECT 'x\n-- cryomigrate:rollback\n';\nSELECT $$\n-- cryomigrate:apply\n$$;\n"
    sections = parse_sections(text, "001_x.sql")
    assert sections.apply == text and sections.rollback is None


def test_prepare_records_dropped_transaction_control() -> None:
    script = prepare("START TRANSACTION;\nSELECT 1;\nEND;\n", origin="x.sql", first_line=4)
    assert script.dropped_control == ((4, "START TRANSACTION"), (6, "END"))
    assert prepare("SELECT 1;", origin="x.sql").dropped_control == ()
