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


def _read_with(backend_class: type, project: Project) -> tuple[object, object, str]:
    from pathlib import Path

    from cryomigrate.backends import ConnectOptions
    from cryomigrate.tracker import Tracker

    backend = backend_class.connect(project.url, ConnectOptions(base_dir=Path(project.root),
                                                                read_only=True))
    try:
        tracker = Tracker(backend, "cryomigrate_history", "development")
        return tracker.read_all(), tracker.read_journal(), backend.display_url
    finally:
        backend.close()


def test_libpq_reader_reads_exactly_what_psycopg_reads(pg_project: Project) -> None:
    # status and the planning step read through libpq directly (no psycopg import); what
    # they see must be the same rows, times and texts psycopg sees.
    from cryomigrate.backends import libpq
    from cryomigrate.backends.postgres import PostgresBackend

    assert libpq.available()
    pg_project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    pg_project.add("002_b.sql", "CREATE TABLE b (id int);\nSELECT 1/0;\n")
    assert pg_project.cli("apply").exit_code == 1
    assert _read_with(libpq.LibpqReader, pg_project) == _read_with(PostgresBackend, pg_project)
    history, journal, _ = _read_with(libpq.LibpqReader, pg_project)
    assert list(history) == [1] and len(journal) == 2  # type: ignore[call-overload, arg-type]


def test_status_without_psycopg_import(pg_project: Project) -> None:
    import subprocess
    import sys

    pg_project.add("001_a.sql", "CREATE TABLE a (id int);\n")
    assert pg_project.cli("apply").exit_code == 0
    code = ("import sys\nfrom cryomigrate.cli import main\ntry:\n    main()\nexcept SystemExit "
            "as e:\n    assert e.code == 0, e.code\nassert 'psycopg' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code, "--config", str(pg_project.config),
                           "status"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "applied" in done.stdout


def test_scripts_reach_the_server_as_utf8_whatever_the_url_says(pg_project: Project) -> None:
    pg_project.write_config(f"""
        environments:
          development:
            database: {pg_project.url}?client_encoding=latin1
    """)
    pg_project.add("001_cafe.sql", "CREATE TABLE t (v text);\nINSERT INTO t VALUES ('café');\n")
    assert pg_project.cli("apply").exit_code == 0
    assert pg_project.query("SELECT v, length(v) FROM t") == [("café", 4)]


def test_a_malformed_url_is_bad_input_not_a_connection_failure(pg_project: Project) -> None:
    pg_project.write_config("""
        environments:
          development:
            database: postgresql://postgres:s3cr%zzet@127.0.0.1:5432/x
    """)
    for command in ("status", "apply"):
        result = pg_project.cli(command)
        assert result.exit_code == 2, result.output
        assert "invalid PostgreSQL URL" in result.stderr and "s3cr" not in result.output


def test_a_failure_at_commit_is_journaled_and_nothing_stays(pg_project: Project) -> None:
    # A deferred foreign key fails only when the migration's transaction commits.
    pg_project.add("001_deferred.sql", """
        CREATE TABLE p (id int PRIMARY KEY);
        CREATE TABLE c (pid int REFERENCES p DEFERRABLE INITIALLY DEFERRED);
        INSERT INTO c VALUES (1);
    """)
    result = pg_project.cli("apply")
    assert result.exit_code == 1, result.output
    assert "001_deferred.sql" in result.stderr and "Traceback" not in result.stderr
    assert not {"p", "c"} & pg_project.tables()
    assert pg_project.query("SELECT count(*) FROM cryomigrate_history") == [(0,)]
    assert pg_project.journal() == [("001", "apply", "failed")]
