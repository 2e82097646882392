"""A password planted in a database URL never leaves the process (DESIGN §6, Secrets).

Each test plants a fresh password, so one test's registered secret cannot hide a leak
in another. PostgreSQL here trusts local connections, so the password is accepted and
ignored: every command really runs.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from click.testing import Result

from tests.conftest import PgDatabase, Project
from tests.helpers_core import add_tables, assert_clean_exit, json_doc

COMMANDS: list[tuple[str, ...]] = [
    ("status",), ("validate",), ("apply", "--dry-run"), ("apply",), ("history",),
    ("rollback", "--dry-run"), ("rollback", "--steps", "1"), ("repair",), ("baseline", "1"),
    ("new", "later"),
]


def _secret() -> str:
    return f"Pw-{uuid.uuid4().hex[:12]}"


def _with_password(url: str, password: str) -> str:
    return url.replace("postgres@", f"postgres:{quote(password, safe='')}@", 1)


def _assert_hidden(result: Result, *secrets: str) -> None:
    text = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in text, text


def _run_everything(project: Project, *secrets: str, env: dict[str, str] | None = None
                    ) -> None:
    add_tables(project, "001_t1", "002_t2")
    project.add("003_bad.sql", "SELECT * FROM nowhere;")
    for fmt in ("text", "json"):
        for command in COMMANDS:
            args = command if command[0] == "new" and fmt == "text" else (
                *command, "--format", fmt)
            result = project.cli(*args, env=env)
            assert result.exit_code in (0, 1, 4), (args, result.stderr)
            _assert_hidden(result, *secrets)
        failing = project.cli("apply", "--format", fmt, env=env)  # 003 fails: exit 1
        assert failing.exit_code == 1
        _assert_hidden(failing, *secrets)


@pytest.fixture
def secret_pg(pg_project: Project, pg_database: PgDatabase) -> tuple[Project, str]:
    secret = _secret()
    pg_project.write_config(f"""
        environments:
          development:
            database: {_with_password(pg_database.url, secret)}
    """)
    return pg_project, secret


def test_password_in_url_never_printed(secret_pg: tuple[Project, str]) -> None:
    project, secret = secret_pg
    _run_everything(project, secret)


def test_password_from_variable_never_printed(pg_project: Project,
                                              pg_database: PgDatabase) -> None:
    secret = _secret()
    pg_project.write_config("""
        environments:
          development:
            database: ${CM_TEST_DATABASE_URL}
    """)
    _run_everything(pg_project, secret,
                    env={"CM_TEST_DATABASE_URL": _with_password(pg_database.url, secret)})


def test_percent_encoded_password_never_printed(pg_project: Project,
                                                pg_database: PgDatabase) -> None:
    secret = f"p@ss/{uuid.uuid4().hex[:8]}"
    pg_project.write_config(f"""
        environments:
          development:
            database: {_with_password(pg_database.url, secret)}
    """)
    _run_everything(pg_project, secret, quote(secret, safe=""))


@pytest.mark.parametrize("template", [
    "postgresql://postgres:{pw}@127.0.0.1:1/nowhere",
    "postgres://postgres:{pw}@127.0.0.1:1/nowhere",
    "postgresql://postgres@127.0.0.1:1/nowhere?password={pw}",
    "postgresql://postgres:{pw}@no-such-host.invalid/nowhere",
])
def test_password_not_in_connection_failure(sqlite_project: Project, template: str) -> None:
    secret = _secret()
    sqlite_project.write_config(f"environments:\n  development:\n"
                                f"    database: \"{template.format(pw=secret)}\"\n")
    add_tables(sqlite_project, "001_t1")
    for command in (("status",), ("apply",), ("validate",), ("history",)):
        for fmt in ("text", "json"):
            result = sqlite_project.cli(*command, "--format", fmt)
            assert result.exit_code in (0, 6), result.stderr
            _assert_hidden(result, secret)
    assert_clean_exit(sqlite_project.cli("apply"), 6)


def test_password_not_in_invalid_url_error(sqlite_project: Project) -> None:
    secret = _secret()
    sqlite_project.write_config(f"environments:\n  development:\n"
                                f"    database: postgresql://u:{secret}@host:notaport/db\n")
    add_tables(sqlite_project, "001_t1")
    for fmt in ("text", "json"):
        result = sqlite_project.cli("apply", "--format", fmt)
        assert result.exit_code in (2, 6), result.stderr
        _assert_hidden(result, secret)


def test_password_not_in_config_error_messages(sqlite_project: Project) -> None:
    secret = _secret()
    sqlite_project.write_config(f"""
        environments:
          development:
            database: postgresql://u:{secret}@127.0.0.1:1/db
            policies: {{allow_rolback: true}}
    """)
    result = sqlite_project.cli("status", "--format", "json")
    assert_clean_exit(result, 2)
    _assert_hidden(result, secret)


def test_unencoded_at_sign_in_a_password_is_refused_masked_whole(pg_project: Project) -> None:
    pg_project.write_config("""
        environments:
          development:
            database: postgresql://postgres:ab@cdpwsecret@127.0.0.1:5432/x
    """)
    result = pg_project.cli("status")
    assert_clean_exit(result, 2)  # refused before any URL parser sees it
    assert "percent-encode" in result.stderr
    assert "cdpwsecret" not in result.output and "ab@" not in result.output


def test_a_secret_variable_rendered_into_a_template_is_masked(sqlite_project: Project,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("APP_PASSWORD", "hunter2secret")
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            vars: {app_pw: "${APP_PASSWORD}"}
    """)
    sqlite_project.add("001_user.sql.j2", "CREATE TABLE u (pw TEXT);\n"
                                          "INSERT INTO u VALUES ({{ vars.app_pw | literal }});\n")
    result = sqlite_project.cli("apply", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "hunter2secret" not in result.output and "***" in result.stdout


def test_vars_named_like_secrets_are_masked_where_written_directly(
        pg_project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "tokABCDEF123456xyz")
    pg_project.write_config(f"""
        defaults:
          vars:
            app_password: "Zq8!vLm2#pQ"
            nested: {{api: {{secret_value: hunter2hunter2x}}}}
            token: "${{MY_TOKEN}}"
            label: visible-label-text
        environments:
          development:
            database: {pg_project.url}
    """)
    pg_project.add("001_role.sql.j2",
                   "SELECT {{ vars.app_password | literal }}, "
                   "{{ vars.nested.api.secret_value | literal }}, "
                   "{{ vars.label | literal }};\n")
    for fmt in ("text", "json"):
        dry = pg_project.cli("apply", "--dry-run", "--format", fmt)
        assert_clean_exit(dry, 0)
        for secret in ("Zq8!vLm2#pQ", "hunter2hunter2x"):
            assert secret not in dry.output
        assert "visible-label-text" in dry.stdout  # a var not named like a secret
    # Rendered unquoted by mistake, PostgreSQL reads the token as an identifier, folds it
    # to lower case and names it in its error, which the journal keeps too.
    pg_project.add("002_bad.sql.j2", "SELECT {{ vars.token }};\n")
    result = pg_project.cli("apply")
    assert_clean_exit(result, 1)
    assert "does not exist" in result.stderr
    errors = pg_project.query("SELECT error FROM cryomigrate_history_journal")
    for output in (result.output, str(errors)):
        assert "tokabcdef123456xyz" not in output.lower()


def test_vars_named_like_keys_of_tables_are_not_taken_for_secrets(
        sqlite_project: Project) -> None:
    """A word-like match (partition_key, bypass_rls, api_tokens_table, password_column)
    names a column or a table, which output is made of: shown."""
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            vars: {partition_key: created_at_month, api_tokens_table: api_tokens_v2,
                   password_column: password_digest}
    """)
    sqlite_project.add("001_partition_by_created_at_month.sql.j2",
                       "CREATE TABLE {{ vars.api_tokens_table }} ({{ vars.partition_key }} "
                       "INTEGER, {{ vars.password_column }} TEXT);\n")
    status = sqlite_project.cli("status", "--format", "json")
    assert json_doc(status)["migrations"][0]["name"] == "partition_by_created_at_month"
    dry = sqlite_project.cli("apply", "--dry-run")
    assert "CREATE TABLE api_tokens_v2 (created_at_month INTEGER, password_digest TEXT)" \
        in dry.stdout, dry.output
