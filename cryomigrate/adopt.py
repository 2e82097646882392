"""``cryomigrate adopt --from TOOL``: take over a database another tool migrated (DESIGN §9.2).

The other tool's history table is only read, never written, so the team can keep that
tool for a while. Each of its applied versions that has a local file is recorded in
cryomigrate's history (the local file's checksum, journal action ``adopt``), all in one
locked transaction. A version applied there without a local file, or a row there that
says a migration failed or stopped half-way, is exit 4 naming it, and nothing is
written: adopting it would record a state nobody can vouch for.

Each tool's table says "applied" its own way, read here from its own columns:

- supabase, dbmate, cryoprotect: one row per applied version;
- golang-migrate: one row, the current version (everything up to it is applied) and
  ``dirty``;
- goose: rows appended per apply and rollback; a version's latest row (highest id) says
  whether it is applied (``is_applied``); version 0 is goose's own first row;
- sqlx: one row per version; ``success = false`` is a migration sqlx left half-applied;
- flyway: rows in ``installed_rank`` order; ``success = false`` is a failed migration,
  ``UNDO_SQL`` un-applies a version, ``BASELINE`` stands for every version up to it;
  repeatable rows (no version) are left to cryomigrate's repeatables, which run once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cryomigrate.backends import Backend, QueryError
from cryomigrate.backends.base import UNDEFINED_COLUMN
from cryomigrate.discovery import MigrationFile
from cryomigrate.errors import StateBlocked

TABLES = {
    "supabase": "supabase_migrations.schema_migrations",
    "dbmate": "schema_migrations",
    "golang-migrate": "schema_migrations",
    "goose": "goose_db_version",
    "flyway": "flyway_schema_history",
    "sqlx": "_sqlx_migrations",
    "cryoprotect": "migrations",
}
# A column that marks another tool's table under the same name: dbmate and golang-migrate
# both default to schema_migrations, and golang-migrate's (one row, the current version,
# and dirty) read as dbmate's would be misread, not refused. A table lacking a column a
# reader reads is refused by the reader's own query.
_LOOKALIKES = {"dbmate": ("dirty", "golang-migrate")}


@dataclass(frozen=True)
class AdoptResult:
    """What ``adopt`` recorded (or, dry, would record) from another tool's history."""
    environment: str
    tool: str
    table: str
    dry_run: bool
    adopted: tuple[str, ...]  # labels of the files recorded (or, dry, to be recorded)

    def to_dict(self) -> dict[str, object]:
        return {"environment": self.environment, "from": self.tool, "table": self.table,
                "dry_run": self.dry_run, "adopted": list(self.adopted)}


@dataclass
class Applied:
    """What the other tool's table says: applied versions as spelled there, and problems."""

    versions: dict[int, str] = field(default_factory=dict)
    upto: int | None = None  # golang-migrate and a Flyway baseline: all versions up to it
    problems: list[str] = field(default_factory=list)

    def add(self, spelled: object, table: str) -> None:
        text = str(spelled).strip()
        if text.isascii() and text.isdigit():
            self.versions[int(text)] = text
        else:
            self.problems.append(f"{table} has version '{text}', which is not a whole "
                                 "number and so has no local file cryomigrate can read")


def _simple(backend: Backend, table: str) -> Applied:
    applied = Applied()
    for row in backend.query(f"SELECT version FROM {backend.quote_table(table)}").data:
        applied.add(row["version"], table)
    return applied


def _golang_migrate(backend: Backend, table: str) -> Applied:
    applied = Applied()
    for row in backend.query(f"SELECT version, dirty FROM {backend.quote_table(table)}").data:
        if row["dirty"]:
            applied.problems.append(
                f"golang-migrate's {table} says version {row['version']} is dirty (it failed "
                "half-way); fix the database and run `migrate force V` first")
        elif int(row["version"]) >= 0:
            applied.add(row["version"], table)
            applied.upto = int(row["version"])
    return applied


def _goose(backend: Backend, table: str) -> Applied:
    latest: dict[int, bool] = {}
    rows = backend.query(f"SELECT version_id, is_applied FROM {backend.quote_table(table)} "
                         "ORDER BY id").data
    for row in rows:
        latest[int(row["version_id"])] = bool(row["is_applied"])
    applied = Applied()
    for version, is_applied in latest.items():
        if is_applied and version != 0:
            applied.add(version, table)
    return applied


def _flyway(backend: Backend, table: str) -> Applied:
    applied = Applied()
    rows = backend.query(f"SELECT version, type, script, success FROM "
                         f"{backend.quote_table(table)} ORDER BY installed_rank").data
    for row in rows:
        version, kind = row["version"], str(row["type"])
        if not row["success"]:
            applied.problems.append(f"Flyway's {table} says {row['script']} failed "
                                    "(success = false); run `flyway repair` first")
        elif version is None or kind == "SCHEMA":
            continue  # a repeatable migration, or Flyway creating a schema
        elif kind == "UNDO_SQL":
            applied.versions.pop(_number(version), None)
        elif kind == "BASELINE":
            applied.add(version, table)
            applied.upto = _number(version)
        else:
            applied.add(version, table)
    return applied


def _sqlx(backend: Backend, table: str) -> Applied:
    applied = Applied()
    rows = backend.query(f"SELECT version, success FROM {backend.quote_table(table)} "
                         "ORDER BY version").data
    for row in rows:
        if not row["success"]:
            applied.problems.append(
                f"sqlx's {table} says version {row['version']} is partially applied "
                "(success = false); fix the database and delete that row, as sqlx asks, first")
        else:
            applied.add(row["version"], table)
    return applied


def _number(spelled: object) -> int:
    text = str(spelled).strip()
    return int(text) if text.isascii() and text.isdigit() else -1


_READERS: dict[str, Callable[[Backend, str], Applied]] = {
    "supabase": _simple, "dbmate": _simple, "cryoprotect": _simple,
    "golang-migrate": _golang_migrate, "goose": _goose, "flyway": _flyway, "sqlx": _sqlx,
}


def read_applied(backend: Backend, tool: str, table: str) -> Applied:
    if not backend.table_exists(table):
        raise StateBlocked(f"there is no table {table} to adopt from; name {tool}'s history "
                           "table with --table")
    # Read outside any transaction: a query that fails on a missing column aborts nothing.
    _refuse_lookalike(backend, tool, table)
    try:
        return _READERS[tool](backend, table)
    except QueryError as exc:
        if exc.sqlstate != UNDEFINED_COLUMN:
            raise
        raise StateBlocked(
            f"{table} is not {tool}'s history table ({exc}); name {tool}'s table with "
            "--table, or give the tool that made this one with --from") from None


def _refuse_lookalike(backend: Backend, tool: str, table: str) -> None:
    """A table of another tool under the same name has the columns read, and more."""
    if tool not in _LOOKALIKES:
        return
    column, owner = _LOOKALIKES[tool]
    quoted = backend.quote_table(table)
    try:
        backend.query(f"SELECT {column} FROM {quoted} WHERE 1 = 0")
    except QueryError:
        return
    raise StateBlocked(f"{table} has a {column} column, which {tool}'s table does not: it "
                       f"looks like {owner}'s (both name it {TABLES[tool]}); if {owner} "
                       f"migrated this database, run adopt --from {owner}")


def to_adopt(tool: str, table: str, applied: Applied, files: list[MigrationFile],
             recorded: set[int]) -> list[MigrationFile]:
    """The local files to record as applied; raises StateBlocked for any problem."""
    by_version = {f.version: f for f in files}
    problems = list(applied.problems)
    baseline = {v for v in applied.versions if v == applied.upto} if tool == "flyway" else set()
    for version, spelled in sorted(applied.versions.items()):
        if version not in by_version and version not in baseline:
            problems.append(f"version {spelled} is applied according to {tool}'s {table}, "
                            "but no local migration file has it; check out the files that "
                            "migrated this database first")
    if problems:
        raise StateBlocked("nothing adopted: " + "; ".join(problems))
    chosen = set(applied.versions)
    if applied.upto is not None:
        chosen |= {v for v in by_version if v <= applied.upto}
    return [by_version[v] for v in sorted(chosen - recorded) if v in by_version]
