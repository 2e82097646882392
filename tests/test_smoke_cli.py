"""End-to-end through the CLI on both backends: the main job a newcomer runs."""

from __future__ import annotations

import json

from tests.conftest import Project

CREATE_A = """
    -- cryomigrate:apply
    CREATE TABLE a (id INTEGER PRIMARY KEY, note TEXT);
    INSERT INTO a (id, note) VALUES (1, 'semi;colon');
    -- cryomigrate:rollback
    DROP TABLE a;
"""

CREATE_B_PY = '''
    """Create table b."""


    def apply(conn, environment):
        conn.sql("CREATE TABLE b (id INTEGER PRIMARY KEY)").execute()


    def rollback(conn, environment):
        conn.sql("DROP TABLE b").execute()
'''


def test_apply_status_rollback_round_trip(project: Project) -> None:
    project.add("001_create_a.sql", CREATE_A)
    project.add("002_create_b.py", CREATE_B_PY)

    applied = project.cli("apply")
    assert applied.exit_code == 0, applied.output
    assert "001_create_a" in applied.stdout and "002_create_b" in applied.stdout
    assert {"a", "b"} <= project.tables()
    assert project.query("SELECT note FROM a") == [("semi;colon",)]
    assert project.history() == [("001", "create_a", "applied"), ("002", "create_b", "applied")]

    status = project.cli("status", "--format", "json")
    assert status.exit_code == 0
    document = json.loads(status.stdout)
    assert [m["state"] for m in document["migrations"]] == ["applied", "applied"]
    assert document["migrations"][0]["checksum"].startswith("sha256:")

    rolled = project.cli("rollback")
    assert rolled.exit_code == 0, rolled.output
    assert not {"a", "b"} & project.tables()
    assert project.history() == []
    assert [row[1:] for row in project.journal()] == [
        ("apply", "ok"), ("apply", "ok"), ("rollback", "ok"), ("rollback", "ok")]
