"""`.sql.j2` migrations: sandboxed Jinja, strict undefined, vars merged per environment."""

from __future__ import annotations

from typing import Any

import pytest

from cryomigrate.errors import TemplateError
from cryomigrate.templating import quote_ident, quote_literal, render
from tests.conftest import Project
from tests.helpers_core import add_tables, assert_clean_exit, history_versions, json_doc


def _config_with_vars(project: Project) -> None:
    project.write_config(f"""
        defaults:
          vars: {{owner: app_owner, greeting: hello, shared: from_defaults}}
        environments:
          development:
            database: {project.url}
            vars: {{greeting: "hi 'dev'", only_dev: 1}}
          staging:
            database: {project.url}
    """)


GREETINGS = """
    -- cryomigrate:apply
    CREATE TABLE greetings (k TEXT, v TEXT);
    INSERT INTO greetings VALUES ('env', {{ environment | literal }});
    INSERT INTO greetings VALUES ('greeting', {{ vars.greeting | literal }});
    INSERT INTO greetings VALUES ('owner', '{{ vars.owner }}');
    INSERT INTO greetings VALUES ('shared', {{ vars.shared | literal }});
    -- cryomigrate:rollback
    DROP TABLE {{ "greetings" | ident }};
"""


def test_template_rendered_with_merged_vars(project: Project) -> None:
    _config_with_vars(project)
    project.add("001_greetings.sql.j2", GREETINGS)
    assert_clean_exit(project.cli("apply"), 0)
    assert dict(project.query("SELECT k, v FROM greetings")) == {
        "env": "development", "greeting": "hi 'dev'", "owner": "app_owner",
        "shared": "from_defaults"}
    assert_clean_exit(project.cli("rollback"), 0)
    assert "greetings" not in project.tables()


def test_template_rendered_per_environment(project: Project) -> None:
    _config_with_vars(project)
    project.add("001_greetings.sql.j2", GREETINGS)
    assert_clean_exit(project.cli("apply", "--env", "staging"), 0)
    assert dict(project.query("SELECT k, v FROM greetings"))["greeting"] == "hello"
    assert dict(project.query("SELECT k, v FROM greetings"))["env"] == "staging"


def test_template_kind_recorded(project: Project) -> None:
    project.add("001_t.sql.j2", "CREATE TABLE {{ 't' | ident }} (id INTEGER);")
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT kind FROM cryomigrate_history") == [("template",)]


def test_template_syntax_error_is_exit_2_naming_file_and_line(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_broken.sql.j2", "SELECT 1;\nSELECT {{ vars.owner ;\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_broken.sql.j2 line 2" in result.stderr
    assert "t1" not in project.tables()
    assert history_versions(project) == []


def test_undefined_variable_is_exit_2_naming_file_and_line(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_undefined.sql.j2",
                "SELECT 1;\n\nGRANT ALL ON t1 TO {{ vars.missing_role }};\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "002_undefined.sql.j2 line 3" in result.stderr
    assert "missing_role" in result.stderr
    assert "t1" not in project.tables()


def test_undefined_top_level_name(project: Project) -> None:
    project.add("001_u.sql.j2", "SELECT {{ app_schema }};\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_u.sql.j2 line 1" in result.stderr and "app_schema" in result.stderr


@pytest.mark.parametrize("expression", [
    "''.__class__.__mro__[1].__subclasses__()",
    "cycler.__init__.__globals__",
], ids=["internals", "function_globals"])
def test_sandbox_blocks_unsafe_access(project: Project, expression: str) -> None:
    project.add("001_escape.sql.j2", f"SELECT '{{{{ {expression} }}}}';\n")
    result = project.cli("apply")
    assert_clean_exit(result, 2)
    assert "001_escape.sql.j2" in result.stderr and "unsafe" in result.stderr
    assert history_versions(project) == []


@pytest.mark.parametrize(("body", "said"), [
    ("SELECT {{ 1/0 }};", "ZeroDivisionError"),
    ("SELECT {{ range(10**8)|list|length }};", "OverflowError"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "RecursionError"),
    ('{% include "other.sql" %}', "include, import and extends are not supported"),
], ids=["division", "range", "recursion", "include"])
def test_what_a_template_raises_while_rendering_is_bad_input(project: Project, body: str,
                                                             said: str) -> None:
    project.add("001_t.sql.j2", body + "\n")
    for command in (("validate",), ("apply",), ("apply", "--dry-run"), ("lint",)):
        result = project.cli(*command)
        assert_clean_exit(result, 2)
        assert "001_t.sql.j2 line 1: cannot render template" in result.stderr, command
        assert said in result.stderr
    document = json_doc(project.cli("apply", "--format", "json"))
    assert document["error"]["code"] == 2
    project.add("R_t.sql.j2", body + "\n")
    (project.migrations / "001_t.sql.j2").unlink()
    assert_clean_exit(project.cli("status", "--format", "json"), 2)
    assert history_versions(project) == []


def test_a_query_failing_inside_conn_render_is_the_migration_failing(
        project: Project) -> None:
    """Exit 1 as for any failing statement (DESIGN 6), not a template error (exit 2)."""
    project.add("001_r.py", "def apply(conn, environment):\n"
                            "    def count():\n"
                            "        return conn.sql('SELECT count(*) AS n FROM missing_table')"
                            ".execute().data[0]['n']\n"
                            "    conn.render('SELECT {{ count() }}', count=count)\n")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "missing_table" in result.stderr and "cannot render template" not in result.stderr
    assert history_versions(project) == []


def test_rendered_sql_with_braces_from_values_is_not_rerendered(project: Project) -> None:
    project.write_config(f"""
        environments:
          development:
            database: {project.url}
            vars: {{text: "{{{{ not again }}}}"}}
    """)
    project.add("001_t.sql.j2",
                "CREATE TABLE t (v TEXT);\nINSERT INTO t VALUES ({{ vars.text | literal }});\n")
    assert_clean_exit(project.cli("apply"), 0)
    assert project.query("SELECT v FROM t") == [("{{ not again }}",)]


def test_dry_run_shows_rendered_sql(project: Project) -> None:
    _config_with_vars(project)
    project.add("001_greetings.sql.j2", GREETINGS)
    result = project.cli("apply", "--dry-run")
    assert_clean_exit(result, 0)
    assert "'hi ''dev'''" in result.stdout
    assert "{{" not in result.stdout


@pytest.mark.parametrize(("value", "quoted"), [
    ("users", '"users"'),
    ("app.users", '"app"."users"'),
    ('we"ird', '"we""ird"'),
])
def test_ident_filter(value: str, quoted: str) -> None:
    assert quote_ident(value) == quoted


@pytest.mark.parametrize(("value", "quoted"), [
    ("it's", "'it''s'"),
    (None, "NULL"),
    (True, "TRUE"),
    (42, "42"),
    ("x'); DROP TABLE t; --", "'x''); DROP TABLE t; --'"),
])
def test_literal_filter(value: object, quoted: str) -> None:
    assert quote_literal(value) == quoted


def test_values_are_not_quoted_unless_asked() -> None:
    assert render("{{ v }}", origin="x", environment="dev", vars={}, extra={"v": "a'b"}) == "a'b"


def test_render_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"x\.sql\.j2 line 1"):
        render("{{ nope }}", origin="x.sql.j2", environment="dev", vars={})


def test_an_after_run_template_error_is_found_by_validate_and_named_where_written(
        project: Project) -> None:
    project.write_config("""
        environments:
          development:
            database: sqlite:///dev.db
          production:
            database: sqlite:///prod.db
            after_run: "SELECT {{ vars.nope }};"
    """)
    add_tables(project, "001_t1")
    where = f"{project.config}:6: environments.production.after_run line 1"
    result = project.cli("validate")
    assert_clean_exit(result, 2)
    assert where in result.stderr and "nope" in result.stderr, result.stderr
    refused = project.cli("apply", "--env", "production", "--yes")
    assert_clean_exit(refused, 2)
    assert where in refused.stderr, refused.stderr
    assert not (project.root / "prod.db").exists()  # rendered before anything runs


def test_a_failing_statement_of_a_template_names_its_rendered_line(project: Project) -> None:
    # The loop makes the rendered SQL longer than the file: its line is the rendered one,
    # which --dry-run shows, and the message says so.
    text = ("{% for i in range(3) %}\nCREATE TABLE t{{ i }} (id INTEGER);\n{% endfor %}\n"
            "INSERT INTO no_such_table VALUES (1);\n")
    project.add("001_loop.sql.j2", text)
    rendered = render(text, origin="001_loop.sql.j2", environment="development", vars={})
    line = next(n for n, sql in enumerate(rendered.splitlines(), 1) if "no_such_table" in sql)
    assert line > 4  # past the file's own line of it
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert f"001_loop.sql.j2 (rendered) line {line}:" in result.stderr, (line, result.stderr)


@pytest.mark.parametrize("quote", [quote_literal, quote_ident])
def test_a_nul_character_is_refused_by_the_quoting_filters(quote: Any) -> None:
    # PostgreSQL text cannot hold it: refused while rendering (bad input, exit 2), not by
    # the server in the middle of a run.
    with pytest.raises(ValueError, match="NUL"):
        quote("bad\x00value")
