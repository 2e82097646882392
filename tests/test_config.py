"""environments.yaml: how it is found, which environment is used, and every bad input.

Bad input is exit 2 with a message that names the file, the key path and the line, no
traceback, and nothing written: the SQLite database file is not even created.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cryomigrate.config import load_config
from cryomigrate.errors import ConfigError
from tests.conftest import Project
from tests.helpers_core import add_tables, assert_clean_exit, json_doc, run_cli, write

TWO_ENVS = """
    environments:
      development:
        database: sqlite:///dev.db
      staging:
        database: sqlite:///staging.db
"""


@pytest.fixture
def two_envs(sqlite_project: Project) -> Project:
    sqlite_project.write_config(TWO_ENVS)
    add_tables(sqlite_project, "001_t1")
    return sqlite_project


def _applied_in(project: Project, db: str) -> bool:
    return (project.root / db).exists()


# --- finding the file -----------------------------------------------------------------

def test_config_option_is_used_from_any_folder(two_envs: Project, tmp_path_factory:
                                                pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = run_cli("--config", str(two_envs.config), "apply", cwd=elsewhere)
    assert_clean_exit(result, 0)
    assert _applied_in(two_envs, "dev.db")  # relative to the config file, not the cwd
    assert not (elsewhere / "dev.db").exists()


def test_config_from_environment_variable(two_envs: Project, tmp_path_factory:
                                          pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = run_cli("apply", cwd=elsewhere, env={"CRYOMIGRATE_CONFIG": str(two_envs.config)})
    assert_clean_exit(result, 0)
    assert _applied_in(two_envs, "dev.db")


def test_config_option_wins_over_environment_variable(two_envs: Project, tmp_path: Path
                                                      ) -> None:
    other = write(tmp_path / "other" / "environments.yaml", "environments: {}\n")
    result = run_cli("--config", str(two_envs.config), "apply",
                     env={"CRYOMIGRATE_CONFIG": str(other)})
    assert_clean_exit(result, 0)
    assert _applied_in(two_envs, "dev.db")


def test_nearest_config_upwards_from_cwd(two_envs: Project) -> None:
    deep = two_envs.root / "src" / "pkg"
    deep.mkdir(parents=True)
    result = run_cli("apply", cwd=deep, env={"CRYOMIGRATE_CONFIG": None})
    assert_clean_exit(result, 0)
    assert _applied_in(two_envs, "dev.db")


def test_no_config_anywhere_is_exit_2(tmp_path: Path) -> None:
    result = run_cli("status", cwd=tmp_path, env={"CRYOMIGRATE_CONFIG": None})
    assert_clean_exit(result, 2)
    assert "environments.yaml" in result.stderr
    assert "--config" in result.stderr


def test_config_path_that_does_not_exist_is_exit_2(tmp_path: Path) -> None:
    result = run_cli("--config", str(tmp_path / "nope.yaml"), "status")
    assert_clean_exit(result, 2)
    assert "nope.yaml" in result.stderr


# --- choosing the environment ---------------------------------------------------------

def test_default_environment_is_development(two_envs: Project) -> None:
    result = two_envs.cli("apply", env={"CRYOMIGRATE_ENV": None})
    assert_clean_exit(result, 0)
    assert _applied_in(two_envs, "dev.db")
    assert not _applied_in(two_envs, "staging.db")


def test_env_option_selects_environment(two_envs: Project) -> None:
    result = two_envs.cli("apply", "--env", "staging")
    assert_clean_exit(result, 0)
    assert _applied_in(two_envs, "staging.db")
    assert not _applied_in(two_envs, "dev.db")


def test_env_variable_selects_environment(two_envs: Project) -> None:
    result = two_envs.cli("status", "--format", "json", env={"CRYOMIGRATE_ENV": "staging"})
    assert_clean_exit(result, 0)
    assert json_doc(result)["environment"] == "staging"


def test_env_option_wins_over_env_variable(two_envs: Project) -> None:
    result = two_envs.cli("status", "--env", "development", "--format", "json",
                          env={"CRYOMIGRATE_ENV": "staging"})
    assert_clean_exit(result, 0)
    assert json_doc(result)["environment"] == "development"


def test_unknown_environment_is_exit_2(two_envs: Project) -> None:
    result = two_envs.cli("apply", "--env", "prod")
    assert_clean_exit(result, 2)
    assert "prod" in result.stderr
    assert str(two_envs.config) in result.stderr
    assert "development" in result.stderr and "staging" in result.stderr  # what exists
    assert not _applied_in(two_envs, "dev.db")


@pytest.mark.parametrize("how", ["--env", "CRYOMIGRATE_ENV", "library"])
def test_an_empty_environment_name_is_refused(two_envs: Project, how: str) -> None:
    """`--env "$DEPLOY_ENV"` with the variable unset must not migrate the default
    environment instead."""
    if how == "library":
        from cryomigrate import apply_migrations
        from cryomigrate.errors import ConfigError

        with pytest.raises(ConfigError, match="environment name is empty"):
            apply_migrations(environment="", config=two_envs.config)
    else:
        args = ("--env", "") if how == "--env" else ()
        variable = {"CRYOMIGRATE_ENV": "" if how == "CRYOMIGRATE_ENV" else "staging"}
        result = two_envs.cli("apply", *args, "--format", "json", env=variable)
        assert_clean_exit(result, 2)
        message = json_doc(result)["error"]["message"]
        assert "empty" in message or "blank" in message, message
        assert "development, staging" in message, message
    assert not _applied_in(two_envs, "dev.db") and not _applied_in(two_envs, "staging.db")


def test_an_environment_named_by_an_empty_string_is_refused(sqlite_project: Project) -> None:
    sqlite_project.write_config("environments:\n  '':\n    database: sqlite:///x.db\n")
    result = sqlite_project.cli("validate")
    assert_clean_exit(result, 2)
    assert "environment name is empty" in result.stderr


def test_a_database_that_resolves_to_nothing_says_so(sqlite_project: Project) -> None:
    sqlite_project.write_config("environments:\n  development:\n"
                                "    database: ${CM_TEST_EMPTY_DB}\n")
    result = sqlite_project.cli("status", env={"CM_TEST_EMPTY_DB": ""})
    assert_clean_exit(result, 2)
    assert (f"{sqlite_project.config}:3: environments.development.database: "
            "'${CM_TEST_EMPTY_DB}' is empty once its variables are resolved") in result.stderr


def test_sqlite_urls_relative_and_absolute(sqlite_project: Project, tmp_path_factory:
                                           pytest.TempPathFactory) -> None:
    absolute = tmp_path_factory.mktemp("abs") / "abs.db"
    sqlite_project.write_config(f"""
        environments:
          development:
            database: sqlite:///data/rel.db
          other:
            database: sqlite:///{absolute}
    """)
    (sqlite_project.root / "data").mkdir()
    add_tables(sqlite_project, "001_t1")
    assert_clean_exit(sqlite_project.cli("apply"), 0)
    assert (sqlite_project.root / "data" / "rel.db").exists()
    assert_clean_exit(sqlite_project.cli("apply", "--env", "other"), 0)
    assert absolute.exists()


# --- variables ------------------------------------------------------------------------

def test_variable_is_resolved_from_process_environment(sqlite_project: Project) -> None:
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///${DB_FILE}
    """)
    add_tables(sqlite_project, "001_t1")
    assert_clean_exit(sqlite_project.cli("apply", env={"DB_FILE": "from_var.db"}), 0)
    assert (sqlite_project.root / "from_var.db").exists()


def test_variable_default_is_used_when_unset(sqlite_project: Project) -> None:
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///${CM_TEST_UNSET_FILE:-fallback.db}
    """)
    add_tables(sqlite_project, "001_t1")
    assert_clean_exit(sqlite_project.cli("apply", env={"CM_TEST_UNSET_FILE": None}), 0)
    assert (sqlite_project.root / "fallback.db").exists()


def test_unset_variable_is_exit_2_naming_variable_environment_key_and_line(
        sqlite_project: Project) -> None:
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
          production:
            database: ${CM_TEST_PROD_URL}
    """)
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("apply", "--env", "production",
                                env={"CM_TEST_PROD_URL": None})
    assert_clean_exit(result, 2)
    message = result.stderr
    assert "CM_TEST_PROD_URL" in message and "production" in message
    assert str(sqlite_project.config) in message
    assert "environments.production.database" in message
    assert ":5" in message  # the line of the key
    assert not (sqlite_project.root / "app.db").exists()


def test_variable_of_another_environment_is_not_resolved(sqlite_project: Project) -> None:
    sqlite_project.write_config("""
        environments:
          development:
            database: sqlite:///app.db
          production:
            database: ${CM_TEST_PROD_URL}
            vars: {secret: "${CM_TEST_PROD_SECRET}"}
    """)
    add_tables(sqlite_project, "001_t1")
    result = sqlite_project.cli("apply", env={"CM_TEST_PROD_URL": None,
                                              "CM_TEST_PROD_SECRET": None})
    assert_clean_exit(result, 0)
    assert "t1" in sqlite_project.tables()


# --- every class of bad input: exit 2, file + key path + line, nothing written --------

def _assert_bad_config(project: Project, text: str, *needles: str,
                       env: dict[str, str] | None = None) -> None:
    project.write_config(text)
    add_tables(project, "001_t1")
    for command in (("apply",), ("status",), ("validate",)):
        result = project.cli(*command, env=env)
        assert_clean_exit(result, 2)
        assert result.stdout == "" or "Traceback" not in result.stdout
        assert str(project.config) in result.stderr, result.stderr
        for needle in needles:
            assert needle in result.stderr, (needle, result.stderr)
    assert not (project.root / "app.db").exists()


def test_yaml_syntax_error(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            database: sqlite:///app.db
            vars: {a: [1, 2}
    """, "environments.yaml:4: invalid YAML", "column")


def test_misspelt_policy_key_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            database: sqlite:///app.db
            policies:
              allow_rolback: false
    """, "environments.development.policies.allow_rolback", ":5", "unknown key")


def test_unknown_top_level_key_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        migration: db/migrations
        environments:
          development:
            database: sqlite:///app.db
    """, "migration", ":1", "unknown key")


def test_wrong_type_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            database: sqlite:///app.db
            policies:
              require_confirmation: "yes"
    """, "environments.development.policies.require_confirmation", ":5")


def test_environments_must_be_a_mapping(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          - development
    """, "environments", ":1")


def test_bad_duration_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        defaults:
          lock_timeout: 10s
        environments:
          development:
            database: sqlite:///app.db
            statement_timeout: 5 parsecs
    """, "environments.development.statement_timeout", ":6", "5 parsecs")


@pytest.mark.parametrize("too_long", ["2147484s", "35792min", "99999999999min"])
def test_a_timeout_past_what_postgresql_allows_is_rejected(sqlite_project: Project,
                                                          too_long: str) -> None:
    # The server keeps timeouts as int4 milliseconds: 2147483647 is the longest.
    _assert_bad_config(sqlite_project, f"""
        environments:
          development:
            database: sqlite:///app.db
            statement_timeout: {too_long}
    """, "environments.development.statement_timeout", ":4", "2147483647 ms")


def test_the_longest_timeout_postgresql_allows_is_accepted(sqlite_project: Project) -> None:
    sqlite_project.write_config("environments:\n  development:\n    database: sqlite:///a.db\n"
                                "    lock_timeout: 35791min\n    statement_timeout: 2147483647ms\n")
    assert_clean_exit(sqlite_project.cli("validate"), 0)


def test_bad_duration_from_variable_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            database: sqlite:///app.db
            lock_timeout: ${CM_TEST_TIMEOUT}
    """, "environments.development.lock_timeout", "soon", env={"CM_TEST_TIMEOUT": "soon"})


@pytest.mark.parametrize("tail, needle", [
    (":notaport/app", "the port 'notaport' is not a port number"),
    (":70000/app", "the port '70000' is not a port number"),
    ("/app?sslmode=requir", "sslmode 'requir' is not one of"),
])
def test_a_url_value_libpq_would_refuse_is_bad_input(sqlite_project: Project, tail: str,
                                                    needle: str) -> None:
    # Refused as it is read, naming where it is written, never as "cannot connect" (6).
    _assert_bad_config(sqlite_project, f"""
        environments:
          development:
            database: postgresql://app:Hidden-Pw-77@127.0.0.1{tail}
    """, "environments.yaml:3: environments.development.database", needle,
        "postgresql://app:***@127.0.0.1")


@pytest.mark.parametrize("url", [
    "postgresql://app@[::1]:5432/app", "postgresql://app@[::1]/app",
    "postgresql://app@h1:5432,h2:5433/app?sslmode=require", "postgresql:///app?host=/tmp",
    "postgresql://%2Ftmp/app", "postgresql://%2Ftmp:5432/app", "postgres://h",
    "postgresql://app@h/app?sslmode=verify%2Dfull", "postgresql://app@h/app?connect_timeout=-1",
])
def test_urls_libpq_accepts_are_accepted(sqlite_project: Project, url: str) -> None:
    from cryomigrate.urls import check_database_url

    check_database_url(url)  # raises on a refusal


@pytest.mark.parametrize(("one", "other", "same"), [
    ("postgresql://a@db:5432/t", "postgres://b:pw@DB/t?sslmode=require", True),
    ("postgresql://u@[::1]/t", "postgresql://u@[::1]:5432/t", True),
    ("postgresql://u@h1:5433,h2/t", "postgresql://u@H1:5433,h2:5432/t", True),
    ("postgresql://u@db/t_a", "postgresql://u@db/t_b", False),
    ("postgresql://u@db:5433/t", "postgresql://u@db:5434/t", False),
    # Not read without doubt: each is its own, never taken for another database.
    ("postgresql://tenant_a@db", "postgresql://tenant_b@db", False),
    ("postgresql://u@h/t?host=fd00::10&port=5433", "postgresql://u@h/t?host=fd00::10&port=5434",
     False),
    ("postgresql://u@h:5433/t?port=5434", "postgresql://u@h:5433/t?port=5435", False),
    ("postgresql://%2Ftmp%2FA/t", "postgresql://%2Ftmp%2Fa/t", False),
    ("postgresql://u@h/t?options=-csearch_path%3Da", "postgresql://u@h/t?options=-csearch_path%3Db",
     False),
    ("postgresql://a,b,c/t?port=1,2", "postgresql://a,b,c/t?port=1,3", False),
])
def test_one_database_is_told_from_two(one: str, other: str, same: bool) -> None:
    from cryomigrate.urls import database_identity

    assert (database_identity(one) == database_identity(other)) is same


def test_bad_url_scheme_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            database: mysql://user@localhost/app
    """, "environments.development.database", ":3", "mysql")


def test_bad_url_scheme_from_variable_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            database: ${CM_TEST_URL}
    """, "environments.development.database", "oracle", env={"CM_TEST_URL": "oracle://db/x"})


def test_missing_database_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            vars: {a: 1}
    """, "environments.development.database")


def test_bad_history_table_name_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        history_table: "history; DROP TABLE x"
        environments:
          development:
            database: sqlite:///app.db
    """, "history_table", ":1")


def test_bad_pooler_value_is_rejected(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        environments:
          development:
            database: sqlite:///app.db
            pooler: statement
    """, "environments.development.pooler", ":4")


# --- the cache of validated configurations ---------------------------------------------

def test_config_cache_serves_repeat_runs_and_follows_every_edit(
        two_envs: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    cache = tmp_path / "cache"
    monkeypatch.setenv("CRYOMIGRATE_CACHE_DIR", str(cache))
    assert_clean_exit(two_envs.cli("status"), 0)  # a miss: validated, then stored
    # A repeat run is served from the cache: pydantic and PyYAML are never imported.
    code = ("import sys\nfrom cryomigrate.cli import main\ntry:\n    main()\nexcept SystemExit "
            "as e:\n    assert e.code == 0, e.code\n"
            "assert 'pydantic' not in sys.modules and 'yaml' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code, "--config", str(two_envs.config),
                           "status", "--env", "staging"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    # An edit is never served stale: a new mistake is reported at its own line...
    two_envs.write_config(TWO_ENVS + "        databse: typo\n")
    broken = two_envs.cli("apply", "--env", "staging")
    assert_clean_exit(broken, 2)
    assert "environments.yaml:6: environments.staging.databse" in broken.stderr, broken.stderr
    # ...and a fixed file takes effect at once.
    two_envs.write_config(TWO_ENVS.replace("staging.db", "elsewhere.db"))
    assert_clean_exit(two_envs.cli("apply", "--env", "staging"), 0)
    assert _applied_in(two_envs, "elsewhere.db") and not _applied_in(two_envs, "staging.db")
    assert len(list(cache.glob("config-*.json"))) == 1  # one entry per file, not per edit


def test_config_cache_entries_are_readable_by_their_owner_only(
        sqlite_project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A shared folder given as the cache: a literal password in the file is in the entry.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setenv("CRYOMIGRATE_CACHE_DIR", str(shared))
    monkeypatch.delenv("CRYOMIGRATE_NO_CACHE", raising=False)
    sqlite_project.write_config("environments:\n  development:\n    database: sqlite:///a.db\n"
                                "  other:\n    database: postgresql://app:Literal-Pw-99@db/app\n")
    assert_clean_exit(sqlite_project.cli("status"), 0)
    entries = list(shared.glob("config-*.json"))
    assert entries and "Literal-Pw-99" in entries[0].read_text()
    assert all(entry.stat().st_mode & 0o077 == 0 for entry in entries)


def test_a_tab_in_the_file_is_named_as_a_tab(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, "environments:\n\tdevelopment:\n"
                       "    database: sqlite:///app.db\n",
                       "environments.yaml:2: invalid YAML", "a tab; YAML indents with spaces")


def test_a_variable_in_the_migrations_folder_is_refused(sqlite_project: Project) -> None:
    _assert_bad_config(sqlite_project, """
        migrations: ${CM_TEST_FOLDER:-migrations}
        environments:
          development:
            database: sqlite:///app.db
    """, "environments.yaml:1: migrations", "resolved only in an environment's values",
        env={"CM_TEST_FOLDER": "migrations"})


def test_a_migrations_folder_that_is_a_file_says_so(sqlite_project: Project) -> None:
    sqlite_project.write_config("migrations: environments.yaml\nenvironments:\n"
                                "  development:\n    database: sqlite:///app.db\n")
    result = sqlite_project.cli("status")
    assert_clean_exit(result, 2)
    assert "environments.yaml is not a folder" in result.stderr, result.stderr


@pytest.mark.parametrize("key", ["allow_rollback", "require_confirmation", "lint",
                                 "destructive", "require_applied_in"])
def test_a_policy_written_empty_is_refused_not_read_as_its_default(tmp_path: Path,
                                                                   key: str) -> None:
    config = tmp_path / "environments.yaml"
    config.write_text("environments:\n  development:\n    database: sqlite:///dev.db\n"
                      f"    policies:\n      {key}:\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf":5: environments\.development\.policies\.{key}: "
                                          "is empty"):
        load_config(config).environment("development")


def test_a_config_path_naming_a_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder; name the file"):
        load_config(tmp_path)
