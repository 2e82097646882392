"""environments.yaml near misses (issue 8, items 2, 4 and 14): refused, never reinterpreted.

- A database URL whose password is not percent-encoded is refused (exit 2) naming file,
  line and key, with the password masked and the advice to encode it, before any URL
  parser can read a piece of the password as a host, port or database name.
- Secrets are masked where they stand: a password that is an ordinary word (``postgres``)
  never turns ``postgresql://`` or a migration name into ``***``.
- A key written twice anywhere is refused, naming both lines.
- Every schema problem is one line, ``file:line: key.path: ...``, in the words of YAML.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import quote

import pytest
from click.testing import Result

from tests.conftest import PgDatabase, Project
from tests.helpers_core import add_tables, assert_clean_exit, assert_untouched

# Each password people paste into URLs, with the pieces a URL parser would print back.
UNENCODED = {
    "Tr0ub4dor/3": ["Tr0ub4dor"],
    "p@ss:word1": ["p@ss", "ss:word1", "word1"],
    "pa ss word": ["pa ss", "ss word"],
    "S3cr@t:pa/ss%word": ["S3cr", "t:pa", "pa/ss", "ss%word"],
    "Xy${9q@Secr3tPart": ["Xy${9q", "Secr3tPart"],  # "${" is no reason to skip the check
}
BAD_CONFIG_COMMANDS: list[tuple[str, ...]] = [
    ("status",), ("apply",), ("apply", "--dry-run", "--format", "json"), ("validate",),
    ("rollback", "--yes"), ("history",),
]


def _url_with_password(database: PgDatabase, password: str) -> str:
    return database.url.replace("postgres@", f"postgres:{password}@", 1)


def _output(result: Result) -> str:
    return result.stdout + result.stderr


def _assert_one_clean_line(result: Result) -> str:
    """Exit 2, no traceback, and the message is one line with no pydantic internals."""
    assert_clean_exit(result, 2)
    message = result.stderr.strip()
    assert "\n" not in message, message
    for internal in ("Model", "line None", "Value error", "Input should", "pydantic",
                     "[key]", "Traceback"):
        assert internal not in message, (internal, message)
    return message


# --- item 2: passwords that are not percent-encoded -------------------------------------

@pytest.mark.parametrize("password", list(UNENCODED))
@pytest.mark.parametrize("through_variable", [False, True], ids=["literal", "variable"])
def test_unencoded_password_is_refused_masked_with_file_line_and_advice(
        pg_project: Project, pg_database: PgDatabase, password: str,
        through_variable: bool) -> None:
    url = _url_with_password(pg_database, password)
    env = {"CM_TEST_DB_URL": url} if through_variable else None
    written = "${CM_TEST_DB_URL}" if through_variable else url
    pg_project.write_config(f"environments:\n  development:\n    database: '{written}'\n")
    add_tables(pg_project, "001_t1")
    for command in BAD_CONFIG_COMMANDS:
        result = pg_project.cli(*command, env=env)
        assert_clean_exit(result, 2)
        text = _output(result)
        for piece in [password, quote(password, safe=""), *UNENCODED[password]]:
            assert piece not in text, (command, piece, text)
        assert f"{pg_project.config}:3: environments.development.database" in text, text
        assert "postgresql://postgres:***@127.0.0.1:5432/" in text, text
        assert "percent-encode" in text and "@ as %40" in text and "/ as %2F" in text
        if "json" in command:
            assert json.loads(result.stdout)["error"]["code"] == 2
    assert_untouched(pg_project)


@pytest.mark.parametrize("password", [*UNENCODED, "postgres"])
def test_percent_encoded_password_keeps_working(pg_project: Project, pg_database: PgDatabase,
                                                password: str) -> None:
    url = _url_with_password(pg_database, quote(password, safe=""))
    pg_project.write_config(f"environments:\n  development:\n    database: '{url}'\n")
    add_tables(pg_project, "001_t1")
    for command in (("apply", "--dry-run"), ("apply",), ("status", "--format", "json")):
        result = pg_project.cli(*command)
        assert_clean_exit(result, 0)
        if password != "postgres":
            assert password not in _output(result) and quote(password, safe="") not in \
                _output(result)
    assert "t1" in pg_project.tables()


@pytest.mark.parametrize("url", [
    "postgresql://user@example.com:secretpw1@127.0.0.1:5432/db",  # '@' in the user name
    "postgresql://app@127.0.0.1:5432/db?password=pa ss word",  # space in password=
    "postgresql://app@127.0.0.1:5432/db?sslpassword=half%word",  # '%' not encoding
])
def test_other_unencoded_credentials_are_refused_masked(sqlite_project: Project,
                                                        url: str) -> None:
    sqlite_project.write_config(f"environments:\n  development:\n    database: '{url}'\n")
    result = sqlite_project.cli("status", "--format", "json")
    assert_clean_exit(result, 2)
    message = json.loads(result.stdout)["error"]["message"]
    assert "environments.yaml:3: environments.development.database" in message
    assert "percent-encode" in message
    for piece in ("secretpw1", "pa ss", "ss word", "half%w"):
        assert piece not in _output(result), (piece, _output(result))


def test_an_at_sign_after_host_and_port_is_refused_with_both_readings(
        pg_project: Project, pg_database: PgDatabase) -> None:
    """``host:5432/db?application_name=me@home`` reads exactly like ``user:5432/db...@home``
    (a password holding '/'): refused, saying how to write the @ in either case."""
    url = f"{pg_database.url}?application_name=me@home"
    pg_project.write_config(f"environments:\n  development:\n    database: '{url}'\n")
    add_tables(pg_project, "001_t1")
    refused = pg_project.cli("apply")
    assert_clean_exit(refused, 2)
    assert "query parameter, write it as %40" in refused.stderr
    assert_untouched(pg_project)
    pg_project.write_config("environments:\n  development:\n"
                            f"    database: '{url.replace('me@home', 'me%40home')}'\n")
    assert_clean_exit(pg_project.cli("apply"), 0)
    assert "t1" in pg_project.tables()


def test_a_common_word_password_masks_only_where_it_stands(pg_project: Project,
                                                           pg_database: PgDatabase) -> None:
    """Supabase's local password is ``postgres``: the URL scheme and the user name, the
    database and a migration's name that contain the word stay as they are."""
    url = _url_with_password(pg_database, "postgres")
    pg_project.write_config(f"environments:\n  development:\n    database: {url}\n")
    pg_project.add("001_postgres_things.sql", "CREATE TABLE postgres_things (id int);\n")
    for command in (("apply", "--dry-run"), ("apply", "--dry-run", "--format", "json"),
                    ("apply",), ("status",), ("status", "--format", "json"), ("history",)):
        result = pg_project.cli(*command)
        assert_clean_exit(result, 0)
        text = _output(result)
        assert "***" not in text, (command, text)
        assert "postgres:postgres@" not in text
    assert "postgres_things" in pg_project.cli("status").stdout


def test_a_common_word_password_is_masked_in_a_connection_error(
        sqlite_project: Project) -> None:
    sqlite_project.write_config("environments:\n  development:\n"
                                "    database: postgresql://postgres:postgres@127.0.0.1:1/x\n")
    sqlite_project.add("001_postgres_things.sql", "CREATE TABLE t (id int);\n")
    result = sqlite_project.cli("apply", "--format", "json")
    assert_clean_exit(result, 6)
    assert "postgres:postgres" not in _output(result)
    assert "***ql" not in _output(result)


@pytest.mark.parametrize("value, masked", [
    ("hunter2secret", True),      # long enough and not a word: masked wherever it shows
    ("correcthorsebattery", True),  # a passphrase of words: too long to be ordinary output
    ("Xy7#kq92LmPz", True),
    ("postgres", False),          # a word: masking it would garble postgresql:// and SQL
    ("created_at", False),        # an identifier (a ${SORT_KEY}, say)
    ("s3cr3t", False),            # too short to tell from ordinary output
])
def test_secret_variables_are_masked_only_where_that_is_safe(sqlite_project: Project,
                                                             value: str, masked: bool) -> None:
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            vars: {app_pw: "${CM_TEST_APP_PASSWORD}"}
    """)
    sqlite_project.add("001_postgres_created_at.sql.j2",
                       "CREATE TABLE created_at (pw TEXT);\n"
                       "INSERT INTO created_at VALUES ({{ vars.app_pw | literal }});\n"
                       "-- postgresql://example\n")
    for fmt in ("text", "json"):
        result = sqlite_project.cli("apply", "--dry-run", "--format", fmt,
                                    env={"CM_TEST_APP_PASSWORD": value})
        assert_clean_exit(result, 0)
        text = _output(result)
        assert (value not in text) is masked, text
        assert "postgresql://example" in text and "postgres_created_at" in text
        assert "CREATE TABLE created_at" in text


def test_a_pw_variable_and_a_password_written_in_sql_are_masked(sqlite_project: Project
                                                                ) -> None:
    # ${APP_PW} names a password too; and CREATE ROLE ... PASSWORD '...' in a dry run
    # shows a password wherever it came from.
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            vars: {pw: "${APP_PW}"}
    """)
    sqlite_project.add("001_role.sql.j2", "-- {{ vars.pw }}\n"
                       "SELECT 1; -- CREATE ROLE app PASSWORD 'it''s-Literal-42';\n"
                       "-- ALTER ROLE a PASSWORD E'esc\\'Literal-43';\n"
                       "-- ALTER ROLE b PASSWORD U&'uni-Literal-44';\n"
                       "-- ALTER ROLE c ENCRYPTED PASSWORD $p$dollar-Literal-45$p$;\n"
                       "-- ALTER ROLE d PASSWORD $$dollar-Literal-46$$;\n")
    for fmt in ("text", "json"):
        result = sqlite_project.cli("apply", "--dry-run", "--format", fmt,
                                    env={"APP_PW": "S3cr3t!Pass"})
        assert_clean_exit(result, 0)
        text = _output(result)
        assert "S3cr3t!Pass" not in text and "Literal-4" not in text, text
        assert text.count("PASSWORD '***'") == 5, text


def test_a_sql_password_is_masked_as_written_and_nothing_after_it(sqlite_project: Project
                                                                   ) -> None:
    """E'ab\\\\' is a whole string (the password ab\\): what follows it stays readable, and
    the JSON document stays valid. A long run of backslashes is read in one pass."""
    from cryomigrate.redact import redact

    sqlite_project.add("001_role.sql",
                       "SELECT 1; -- ALTER ROLE a PASSWORD E'ab\\\\' LOGIN; SELECT 'visible';\n")
    for fmt in ("text", "json"):
        result = sqlite_project.cli("apply", "--dry-run", "--format", fmt)
        assert_clean_exit(result, 0)
        text = result.stdout if fmt == "text" else json.loads(result.stdout)["applied"][0]["sql"]
        assert "PASSWORD '***' LOGIN; SELECT 'visible';" in text, text
    long = "PASSWORD E'" + "\\" * 5000 + "a\\"
    assert redact(long) == "PASSWORD '***'"


# --- item 4: duplicate keys ---------------------------------------------------------------

DUPLICATES = {
    "second policies block": ("""
        environments:
          production:
            database: sqlite:///app.db
            policies:
              allow_rollback: false
            policies:
              require_confirmation: true
    """, "environments.production.policies", 4, 6),
    "second environment": ("""
        environments:
          development:
            database: sqlite:///other.db
          development:
            database: sqlite:///app.db
    """, "environments.development", 2, 4),
    "second top-level key": ("""
        environments:
          development:
            database: sqlite:///app.db
        environments:
          development:
            database: sqlite:///app.db
    """, "environments", 1, 4),
    "same key quoted and plain in vars": ("""
        environments:
          development:
            database: sqlite:///app.db
            vars:
              schema: public
              "schema": app
    """, "environments.development.vars.schema", 5, 6),
    "in a flow mapping": ("""
        defaults:
          vars: {a: 1, a: 2}
        environments:
          development:
            database: sqlite:///app.db
    """, "defaults.vars.a", 2, 2),
    "inside a list in vars": ("""
        environments:
          development:
            database: sqlite:///app.db
            vars:
              roles:
                - {name: a, name: b}
    """, "environments.development.vars.roles.0.name", 6, 6),
}


@pytest.mark.parametrize("case", list(DUPLICATES))
def test_duplicate_key_is_refused_naming_both_lines(sqlite_project: Project, case: str) -> None:
    text, key, first, second = DUPLICATES[case]
    sqlite_project.write_config(text)
    add_tables(sqlite_project, "001_t1")
    for command in (("apply", "--env", "production" if "production" in text else "development"),
                    ("status",), ("validate",), ("rollback", "--yes")):
        message = _assert_one_clean_line(sqlite_project.cli(*command))
        assert f"{sqlite_project.config}:{second}: {key}: duplicate key" in message, message
        lines = f"twice on line {first}" if first == second else f"lines {first} and {second}"
        assert lines in message, message
    assert_untouched(sqlite_project)


def test_merge_keys_may_still_override_merged_values(sqlite_project: Project) -> None:
    """``<<: *anchor`` then an explicit key is YAML's way to override, not a duplicate."""
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
            vars:
              base: &base {schema: public, owner: app}
              mine: {<<: *base, schema: mine}
    """)
    sqlite_project.add("001_t.sql.j2", "CREATE TABLE {{ vars.mine.schema }}_t (id int);\n")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert "mine_t" in sqlite_project.tables()


# --- item 14: one-line messages in YAML's words --------------------------------------------

BAD_SHAPES = {
    "list where a mapping is expected": ("""
        environments:
          development:
            database: sqlite:///app.db
            policies: [allow_rollback]
    """, ":4: environments.development.policies: must be a mapping", "not a list"),
    "number as environment name": ("""
        environments:
          1:
            database: sqlite:///app.db
    """, ":2: environments.1: this key is read as the number 1", "quote it"),
    "yes/no as environment name": ("""
        environments:
          development:
            database: sqlite:///app.db
          no:
            database: sqlite:///no.db
    """, ":4: environments.no: this key is read as the boolean false", "quote it"),
    "environments empty": ("""
        environments:
    """, ":1: environments: must be a mapping", "not null"),
    "environments an empty mapping": ("""
        environments: {}
    """, ":1: environments: no environment is defined", "development:"),
    "environments missing": ("""
        migrations: db
    """, "environments: required key is missing", "yaml: environments"),
    "environment null": ("""
        environments:
          development:
    """, ":2: environments.development: must be a mapping", "not null"),
    "policies null": ("""
        environments:
          development:
            database: sqlite:///app.db
            policies:
    """, ":4: environments.development.policies: must be a mapping", "not null"),
    "defaults null": ("""
        defaults:
        environments:
          development:
            database: sqlite:///app.db
    """, ":1: defaults: must be a mapping", "not null"),
    "number where a string is expected": ("""
        environments:
          development:
            database: sqlite:///app.db
            lock_timeout: 5
    """, ":4: environments.development.lock_timeout: must be a string", "the number 5"),
    "string where a boolean is expected": ("""
        environments:
          development:
            database: sqlite:///app.db
            policies: {allow_rollback: "no"}
    """, ":4: environments.development.policies.allow_rollback: must be true or false",
        "the string 'no'"),
    "value not among the choices": ("""
        environments:
          development:
            database: sqlite:///app.db
            pooler: statement
    """, ":4: environments.development.pooler: must be 'transaction' or 'session'",
        "'statement'"),
    "bad history table": ("""
        history_table: "a b"
        environments:
          development:
            database: sqlite:///app.db
    """, ":1: history_table: must be a table name", "ops.history"),
    "alias that contains itself": ("""
        environments:
          development:
            database: sqlite:///app.db
            vars: {loop: &loop [1, *loop]}
    """, ":4: environments.development.vars.loop.1: this alias refers to", "never ends"),
    "top level not a mapping": ("""
        - development
    """, "environments.yaml:1: the top level must be a mapping", "environments:"),
}


@pytest.mark.parametrize("case", list(BAD_SHAPES))
def test_every_schema_problem_is_one_line_with_file_line_and_key(sqlite_project: Project,
                                                                 case: str) -> None:
    text, where, detail = BAD_SHAPES[case]
    sqlite_project.write_config(text)
    add_tables(sqlite_project, "001_t1")
    for command in (("status",), ("apply",), ("validate",)):
        message = _assert_one_clean_line(sqlite_project.cli(*command))
        assert str(sqlite_project.config) in message, message
        assert where in message and detail in message, message
    document = sqlite_project.cli("status", "--format", "json")
    assert_clean_exit(document, 2)
    assert where in json.loads(document.stdout)["error"]["message"]
    assert_untouched(sqlite_project)


# --- issue 9: no import circle; the schema stays off the fast path ---------------------------

def test_config_and_schema_import_without_each_other_and_help_stays_light() -> None:
    code = (
        "import sys\n"
        "import cryomigrate.configschema\n"
        "assert 'cryomigrate.config' not in sys.modules, 'configschema imports config'\n"
        "import cryomigrate.config\n"
        "from cryomigrate.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    light = ("import sys\nimport cryomigrate.config\nfrom cryomigrate.cli import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "assert 'pydantic' not in sys.modules and 'yaml' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
