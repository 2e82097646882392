"""PostgreSQL specifics of the backend: client-side literals and round trips."""

from __future__ import annotations

from tests.conftest import Project


def test_journal_keeps_quotes_and_backslashes_of_an_error(pg_project: Project) -> None:
    # Journal rows are sent with the COMMIT as inline literals; a quote or a backslash
    # in the server's message must arrive unchanged (and must not break the SQL).
    pg_project.add("001_fails.sql", r"""
        DO $$ BEGIN RAISE EXCEPTION 'it''s a \ test'; END $$;
    """)
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    errors = pg_project.query("SELECT error FROM cryomigrate_history_journal")
    assert len(errors) == 1 and "it's a \\ test" in errors[0][0]


def test_history_rows_round_trip_through_inline_literals(pg_project: Project) -> None:
    pg_project.add("001_o_reilly.sql", "CREATE TABLE t (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    assert pg_project.query(
        "SELECT version, version_text, name, state, duration_ms >= 0 FROM cryomigrate_history"
    ) == [(1, "001", "o_reilly", "applied", True)]
