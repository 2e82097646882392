"""The pure planner: states, targets, steps and what blocks a plan, with plain values."""

from __future__ import annotations

import pytest

from cryomigrate import planner
from cryomigrate.config import Policies
from cryomigrate.discovery import MigrationFile
from cryomigrate.errors import InputError, StateBlocked
from cryomigrate.models import HistoryRow, RepeatableRow

STRICT = Policies()


def file(version: int, text: str | None = None) -> MigrationFile:
    text = text or f"{version:03d}"
    return MigrationFile(version, text, f"m{version}", "sql", f"/m/{text}_m{version}.sql",
                         f"{text}_m{version}.sql")


def row(version: int, state: str = "applied", checksum: str = "sha256:same") -> HistoryRow:
    return HistoryRow(version, f"{version:03d}", f"m{version}", "sql", checksum,
                      state,  # type: ignore[arg-type]
                      "2024-01-01T00:00:00+00:00", "me", 1)


def entries(files: list[int], applied: list[int], **rows: HistoryRow) -> list[planner.Entry]:
    history = {v: row(v) for v in applied}
    history.update({int(k[1:]): r for k, r in rows.items()})
    return planner.entries([file(v) for v in files], history,
                           {v: "sha256:same" for v in files})


def test_states() -> None:
    found = planner.entries(
        [file(1), file(2), file(3), file(5)],
        {1: row(1), 2: row(2, checksum="sha256:old"), 4: row(4), 5: row(5, "dirty")},
        {1: "sha256:same", 2: "sha256:new", 3: "sha256:x", 5: "sha256:same"},
    )
    assert [(e.version, e.state) for e in found] == [
        (1, "applied"), (2, "modified"), (3, "pending"), (4, "missing"), (5, "dirty")]
    assert found[3].label == "004_m4"


def test_plan_apply_all_and_target() -> None:
    found = entries([1, 2, 3, 4], [1])
    plan, warnings = planner.plan_apply(found, None, STRICT)
    assert [f.version for f in plan] == [2, 3, 4] and warnings == []
    plan, _ = planner.plan_apply(found, 3, STRICT)
    assert [f.version for f in plan] == [2, 3]


def test_resolve_target() -> None:
    found = entries([1, 5], [])
    assert planner.resolve_target(5, found) == 5
    assert planner.resolve_target(None, found) is None
    assert planner.resolve_target(0, found) == 0
    # A gap in the numbering is a position like any other (issue 8, item 16).
    assert planner.resolve_target(4, found) == 4
    # Past the newest version it is a typo, shown as the files spell versions (item 14).
    with pytest.raises(InputError, match="no migration has version 006 "):
        planner.resolve_target(6, found)
    with pytest.raises(InputError, match="no migration has version 1: there are no migr"):
        planner.resolve_target(1, [])


def test_target_in_a_gap_plans_up_to_it_and_rolls_back_above_it() -> None:
    found = entries([1, 2, 5, 6], [1, 2, 5, 6])
    chosen, _ = planner.plan_rollback(found, planner.resolve_target(4, found), None, STRICT)
    assert [e.version for e in chosen] == [6, 5]
    pending = entries([1, 2, 5, 6], [])
    plan, _ = planner.plan_apply(pending, planner.resolve_target(4, pending), STRICT)
    assert [f.version for f in plan] == [1, 2]


def test_spell_uses_the_folders_padding() -> None:
    assert planner.spell(5, entries([1, 5], [])) == "005"
    assert planner.spell(4, entries([1, 5], [])) == "004"
    assert planner.spell(1234, entries([1], [])) == "1234"
    assert planner.pad(7, ["1", "20240101120000"]) == "7"
    assert planner.pad(7, []) == "7"


def test_out_of_order_blocks_unless_allowed() -> None:
    found = entries([1, 2, 3], [1, 3])
    with pytest.raises(StateBlocked, match=r"002_m2\.sql"):
        planner.plan_apply(found, None, STRICT)
    plan, _ = planner.plan_apply(found, None, Policies(allow_out_of_order=True))
    assert [f.version for f in plan] == [2]


def test_modified_blocks_unless_allowed() -> None:
    found = entries([1, 2], [], _1=row(1, checksum="sha256:old"))
    with pytest.raises(StateBlocked, match="cryomigrate repair"):
        planner.plan_apply(found, None, STRICT)
    with pytest.raises(StateBlocked):
        planner.plan_rollback(found, None, None, STRICT)
    plan, warnings = planner.plan_apply(found, None, Policies(allow_modified=True))
    assert [f.version for f in plan] == [2]
    assert len(warnings) == 1 and "001_m1.sql" in warnings[0]


def test_missing_and_dirty_block_even_with_permissive_policies() -> None:
    lenient = Policies(allow_modified=True, allow_out_of_order=True)
    with pytest.raises(StateBlocked, match="missing"):
        planner.plan_apply(entries([1], [1, 2]), None, lenient)
    with pytest.raises(StateBlocked, match="--mark-applied 002"):
        planner.plan_rollback(entries([1, 2], [1], _2=row(2, "dirty")), None, None, lenient)


def test_plan_rollback_target_steps_all() -> None:
    found = entries([1, 2, 3, 4], [1, 2, 3])
    versions = lambda chosen: [e.version for e in chosen]  # noqa: E731
    assert versions(planner.plan_rollback(found, None, None, STRICT)[0]) == [3, 2, 1]
    assert versions(planner.plan_rollback(found, 2, None, STRICT)[0]) == [3]
    assert versions(planner.plan_rollback(found, 0, None, STRICT)[0]) == [3, 2, 1]
    assert versions(planner.plan_rollback(found, None, 2, STRICT)[0]) == [3, 2]
    assert versions(planner.plan_rollback(found, None, 3, STRICT)[0]) == [3, 2, 1]
    with pytest.raises(InputError):
        planner.plan_rollback(found, None, 0, STRICT)
    # More steps than applied migrations: a typo (10 for 1) must not take back everything.
    with pytest.raises(InputError, match=r"--steps 9: only 3 migration\(s\) are applied"):
        planner.plan_rollback(found, None, 9, STRICT)
    # Nothing applied: nothing could be lost, so nothing to do.
    assert planner.plan_rollback(entries([1, 2], []), None, 9, STRICT)[0] == []


def test_status_keeps_version_spelling_and_sorts_by_value() -> None:
    found = planner.entries([file(10, "10"), file(9, "9"), file(2, "0002")], {}, {})
    assert [planner.to_status(e).version for e in found] == ["0002", "9", "10"]


# --- repeatable migrations (issue 14) --------------------------------------------------

def repeatable(name: str) -> MigrationFile:
    return MigrationFile(-1, "R", name, "sql", f"/m/R_{name}.sql", f"R_{name}.sql",
                         repeatable=True)


def repeatable_row(name: str, checksum: str) -> RepeatableRow:
    return RepeatableRow(name, "sql", checksum, "2024-01-01T00:00:00+00:00", "me", 1)


def test_repeatable_states() -> None:
    found = planner.repeatable_entries(
        [repeatable("a"), repeatable("b"), repeatable("c")],
        {"a": repeatable_row("a", "sha256:same"), "b": repeatable_row("b", "sha256:old"),
         "gone": repeatable_row("gone", "sha256:x")},
        {"a": "sha256:same", "b": "sha256:new", "c": "sha256:c"},
    )
    assert [(e.file.name, e.state) for e in found] == [
        ("a", "applied"), ("b", "changed"), ("c", "pending")]
    status = planner.repeatable_status(found[1])
    assert (status.version, status.state, status.repeatable) == (None, "changed", True)


def test_repeatables_planned_only_when_nothing_versioned_stays_pending() -> None:
    due = planner.repeatable_entries([repeatable("a"), repeatable("b")],
                                     {"a": repeatable_row("a", "sha256:same")},
                                     {"a": "sha256:same", "b": "sha256:b"})
    found = entries([1, 2, 3], [1])
    assert [f.name for f in planner.plan_repeatables(due, found, [file(2), file(3)])] == ["b"]
    assert planner.plan_repeatables(due, found, [file(2)]) == []  # --target 2: 3 stays
    everything_applied = entries([1, 2], [1, 2])
    assert [f.name for f in planner.plan_repeatables(due, everything_applied, [])] == ["b"]
