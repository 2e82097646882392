"""Migration states and what each allows: applied, pending, modified, missing, dirty,
and pending migrations older than the newest applied one (DESIGN §3.1, §5, §6)."""

from __future__ import annotations

from tests.conftest import Project
from tests.helpers_core import (
    add_tables,
    assert_clean_exit,
    config_with,
    execute,
    history_versions,
    json_doc,
    table_sql,
)


def states(project: Project) -> dict[str, str]:
    result = project.cli("status", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return {m["version"]: m["state"] for m in json_doc(result)["migrations"]}


def test_applied_and_pending(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    assert states(project) == {"001": "applied", "002": "pending"}
    text = project.cli("status")
    assert "1 applied" in text.stdout and "1 pending" in text.stdout


# --- modified -------------------------------------------------------------------------

def _modify(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply", "--target", "1"), 0)
    project.add("001_t1.sql", table_sql("t1") + "-- edited after it was applied\n")


def test_modified_file_shows_in_status(project: Project) -> None:
    _modify(project)
    assert states(project) == {"001": "modified", "002": "pending"}


def test_modified_file_blocks_apply_with_exit_4(project: Project) -> None:
    _modify(project)
    result = project.cli("apply")
    assert_clean_exit(result, 4)
    assert "001_t1.sql" in result.stderr
    assert "cryomigrate repair" in result.stderr
    assert "allow_modified" in result.stderr
    assert history_versions(project) == ["001"]


def test_modified_file_blocks_rollback_with_exit_4(project: Project) -> None:
    _modify(project)
    result = project.cli("rollback")
    assert_clean_exit(result, 4)
    assert history_versions(project) == ["001"]


def test_allow_modified_turns_it_into_a_warning(project: Project) -> None:
    config_with(project, "policies: {allow_modified: true}")
    _modify(project)
    result = project.cli("apply")
    assert_clean_exit(result, 0)
    assert "001_t1.sql" in result.stderr and "warning" in result.stderr
    assert "warning" not in result.stdout
    assert history_versions(project) == ["001", "002"]


def test_repair_accepts_changed_checksum(project: Project) -> None:
    _modify(project)
    result = project.cli("repair")
    assert_clean_exit(result, 0)
    assert "001_t1.sql" in result.stdout
    assert states(project) == {"001": "applied", "002": "pending"}
    assert project.journal()[-1] == ("001", "repair", "ok")
    assert_clean_exit(project.cli("apply"), 0)


# --- missing --------------------------------------------------------------------------

def test_missing_file_shows_and_blocks(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply"), 0)
    (project.migrations / "002_t2.sql").unlink()
    assert states(project) == {"001": "applied", "002": "missing"}
    for command in ("apply", "rollback"):
        result = project.cli(command)
        assert_clean_exit(result, 4)
        assert "002_t2" in result.stderr and "missing" in result.stderr
    assert history_versions(project) == ["001", "002"]


def test_missing_file_forgotten_with_mark_pending(project: Project) -> None:
    add_tables(project, "001_t1", "002_t2")
    assert_clean_exit(project.cli("apply"), 0)
    (project.migrations / "002_t2.sql").unlink()
    assert_clean_exit(project.cli("repair", "--mark-pending", "2"), 0)
    assert states(project) == {"001": "applied"}
    assert_clean_exit(project.cli("apply"), 0)


# --- dirty ----------------------------------------------------------------------------

DIRTY = """
    -- cryomigrate:no-transaction
    -- cryomigrate:apply
    CREATE TABLE partly (id INTEGER);
    INSERT INTO no_such_table VALUES (1);
    -- cryomigrate:rollback
    DROP TABLE partly;
"""


def _make_dirty(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_partly.sql", DIRTY)
    add_tables(project, "003_t3")
    result = project.cli("apply")
    assert_clean_exit(result, 1)
    assert "002_partly.sql" in result.stderr and "dirty" in result.stderr


def test_failed_non_transactional_migration_is_dirty(project: Project) -> None:
    _make_dirty(project)
    assert states(project) == {"001": "applied", "002": "dirty", "003": "pending"}
    assert "partly" in project.tables()  # outside a transaction, its first statement stayed
    assert project.journal()[-1] == ("002", "apply", "failed")


def test_dirty_blocks_apply_and_rollback(project: Project) -> None:
    _make_dirty(project)
    for command in ("apply", "rollback"):
        # A dirty row may belong to a live run, so it is waited for like the lock.
        result = project.cli(command, "--lock-wait", "0.5")
        assert_clean_exit(result, 4)
        # Said once, when the wait starts; then what a person does about it.
        assert result.stderr.count(
            "002_partly.sql is marked dirty: another run may be inside it; waiting up to "
            "0.5s (--lock-wait) for it to finish") == 1, result.stderr
        assert "002_partly.sql is dirty: a run stopped inside" in result.stderr
        assert "--mark-applied 002" in result.stderr and "--mark-pending 002" in result.stderr
    assert "t3" not in project.tables()


def test_bare_repair_lists_dirty_and_exits_4(project: Project) -> None:
    _make_dirty(project)
    result = project.cli("repair")
    assert_clean_exit(result, 4)
    assert "002_partly" in result.stderr and "--mark-applied" in result.stderr
    json_result = project.cli("repair", "--format", "json")
    assert_clean_exit(json_result, 4)
    document = json_doc(json_result)
    assert document["error"]["code"] == 4
    assert document["dirty"] == ["002_partly"]
    assert states(project)["002"] == "dirty"


def test_repair_mark_applied_settles_dirty(project: Project) -> None:
    _make_dirty(project)
    result = project.cli("repair", "--mark-applied", "2")
    assert_clean_exit(result, 0)
    assert "002_partly.sql" in result.stdout
    assert states(project) == {"001": "applied", "002": "applied", "003": "pending"}
    assert_clean_exit(project.cli("apply"), 0)
    assert "t3" in project.tables()
    assert_clean_exit(project.cli("rollback", "--target", "1"), 0)
    assert "partly" not in project.tables()


def test_repair_mark_pending_settles_dirty(project: Project) -> None:
    _make_dirty(project)
    execute(project, "DROP TABLE partly")
    project.add("002_partly.sql", DIRTY.replace("INSERT INTO no_such_table VALUES (1);", ""))
    assert_clean_exit(project.cli("repair", "--mark-pending", "002"), 0)
    assert states(project) == {"001": "applied", "002": "pending", "003": "pending"}
    assert_clean_exit(project.cli("apply"), 0)
    assert history_versions(project) == ["001", "002", "003"]


def test_repair_does_not_accept_checksum_of_dirty(project: Project) -> None:
    _make_dirty(project)
    project.add("002_partly.sql", DIRTY + "-- edited\n")
    assert_clean_exit(project.cli("repair"), 4)
    assert states(project)["002"] == "dirty"


def test_dirty_rollback_of_non_transactional(project: Project) -> None:
    add_tables(project, "001_t1")
    project.add("002_nt.sql", """
        -- cryomigrate:no-transaction
        -- cryomigrate:apply
        CREATE TABLE nt (id INTEGER);
        -- cryomigrate:rollback
        DROP TABLE nt;
        DROP TABLE not_there;
    """)
    assert_clean_exit(project.cli("apply"), 0)
    result = project.cli("rollback")
    assert_clean_exit(result, 1)
    assert states(project)["002"] == "dirty"
    assert history_versions(project) == ["001", "002"]


# --- out of order ---------------------------------------------------------------------

def test_out_of_order_blocks_apply(project: Project) -> None:
    add_tables(project, "001_t1", "003_t3")
    assert_clean_exit(project.cli("apply"), 0)
    add_tables(project, "002_t2")
    result = project.cli("apply")
    assert_clean_exit(result, 4)
    assert "002_t2.sql" in result.stderr and "allow_out_of_order" in result.stderr
    assert "t2" not in project.tables()
    assert states(project)["002"] == "pending"


def test_allow_out_of_order_applies_it(project: Project) -> None:
    config_with(project, "policies: {allow_out_of_order: true}")
    add_tables(project, "001_t1", "003_t3")
    assert_clean_exit(project.cli("apply"), 0)
    add_tables(project, "002_t2", "004_t4")
    assert_clean_exit(project.cli("apply"), 0)
    assert history_versions(project) == ["001", "002", "003", "004"]


def test_out_of_order_does_not_block_rollback(project: Project) -> None:
    add_tables(project, "001_t1", "003_t3")
    assert_clean_exit(project.cli("apply"), 0)
    add_tables(project, "002_t2")
    assert_clean_exit(project.cli("rollback", "--steps", "1"), 0)
    assert history_versions(project) == ["001"]
