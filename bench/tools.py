"""The tools under test: how each lays out N identical migrations and how each is invoked.

Every tool gets the same logical migration (a table with three columns plus an index on
one of them; rollback drops the table) written in that tool's own file layout, so that the
benchmark compares the tools, not the SQL. Database URLs are passed per command (option or
environment variable) so one generated folder serves every fresh database of a run.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / ".peers"
VENV_BIN = PEERS_DIR / "venv" / "bin"
# cryomigrate gets a venv of its own, installed the way users install it (a wheel, with
# bytecode), so it starts like the Python peers do from theirs: see bench/README.md.
CM_BIN = PEERS_DIR / "cryomigrate-venv" / "bin"
NPM_BIN = PEERS_DIR / "npm" / "node_modules" / ".bin"

# Roles: the floor is what any tool must pay at least; peers are what users compare with.
FLOOR, OURS, PEER = "floor", "cryomigrate", "peer"


def table_name(i: int) -> str:
    return f"bench_t{i:04d}"


def create_sql(i: int) -> str:
    """The apply SQL every tool runs: three columns and one index (no PK: exactly one index).

    Written to be valid on PostgreSQL and SQLite alike, so the SQLite rows run the very
    same migration files as the PostgreSQL rows."""
    t = table_name(i)
    return (
        f"CREATE TABLE {t} (id bigint NOT NULL, name text NOT NULL, "
        f"created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP);\n"
        f"CREATE INDEX {t}_name_idx ON {t} (name);\n"
    )


def drop_sql(i: int) -> str:
    return f"DROP TABLE {table_name(i)};\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@dataclass(frozen=True)
class Cmd:
    """One process to time: argv, working folder and extra environment variables."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Urls:
    """The same database spelled for each client library (they disagree on schemes)."""

    host: str
    port: int
    user: str
    dbname: str

    @property
    def libpq(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def sqlalchemy(self) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.dbname}"

    @property
    def nossl(self) -> str:
        """Go clients (dbmate, Supabase) insist on TLS unless told; the local server has none."""
        return self.libpq + "?sslmode=disable"


@dataclass(frozen=True)
class Tool:
    """A tool's layout writer and command builders. ``status``/``help`` may be absent."""

    name: str
    role: str
    label: str
    layout: Callable[[Path, int], None]
    apply: Callable[[Path, Urls], Cmd]
    status: Callable[[Path, Urls], Cmd] | None
    help: Cmd | None
    binary: Path | None  # what must exist for the tool to count as installed
    sqlite: Callable[[Path, Path], Cmd] | None = None  # apply on SQLite (cryomigrate only)
    sqlite_status: Callable[[Path, Path], Cmd] | None = None
    noop: Callable[[Path, Urls], Cmd] | None = None  # the no-op run when it is not ``apply``


# --------------------------------------------------------------------------- floor: psql


def _floor_layout(root: Path, n: int) -> None:
    """Apply-only SQL files plus one driver script: one psql session, BEGIN/\\i/COMMIT each."""
    lines = ["\\set ON_ERROR_STOP on"]
    for i in range(1, n + 1):
        path = root / "sql" / f"{i:04d}_{table_name(i)}.sql"
        _write(path, create_sql(i))
        lines += ["BEGIN;", f"\\i {path}", "COMMIT;"]
    _write(root / "driver.sql", "\n".join(lines) + "\n")


def _psql(urls: Urls, *args: str) -> list[str]:
    return ["psql", "-X", "-q", "-h", urls.host, "-p", str(urls.port), "-U", urls.user,
            "-d", urls.dbname, *args]


FLOOR_TOOL = Tool(
    name="floor", role=FLOOR, label="psql -X -q, 1 session, BEGIN/\\i/COMMIT per file",
    layout=_floor_layout,
    apply=lambda root, urls: Cmd(_psql(urls, "-f", str(root / "driver.sql")), root),
    # The least a no-op run or a status must do: start a client, connect, run one query.
    status=lambda root, urls: Cmd(_psql(urls, "-c", "SELECT 1"), root),
    help=None, binary=None,
    noop=lambda root, urls: Cmd(_psql(urls, "-c", "SELECT 1"), root),
)


# --------------------------------------------------------------------------- cryomigrate

# lint: off, because no peer lints: with the default (warn) every apply would also pay
# squawk over its pending migrations, which README's Production safety section measures.
_CONFIG = """\
migrations: migrations
environments:
  bench:
    database: ${BENCH_DATABASE_URL}
    policies:
      lint: "off"
"""


def _cm_sql_layout(root: Path, n: int) -> None:
    _write(root / "environments.yaml", _CONFIG)
    for i in range(1, n + 1):
        _write(root / "migrations" / f"{i:04d}_{table_name(i)}.sql",
               f"-- bench table {i}\n-- cryomigrate:apply\n{create_sql(i)}"
               f"-- cryomigrate:rollback\n{drop_sql(i)}")


def _cm_py_layout(root: Path, n: int) -> None:
    _write(root / "environments.yaml", _CONFIG)
    for i in range(1, n + 1):
        body = create_sql(i).replace("\n", " ").strip()
        _write(root / "migrations" / f"{i:04d}_{table_name(i)}.py",
               f'"""bench table {i}"""\n\n\n'
               f"def apply(conn, environment):\n    conn.sql({body!r}).execute()\n\n\n"
               f"def rollback(conn, environment):\n"
               f"    conn.sql({drop_sql(i).strip()!r}).execute()\n")


CM_SCRIPT = CM_BIN / "cryomigrate"  # the console script of the bench's own install


def _cm(root: Path, url: str, *args: str) -> Cmd:
    return Cmd([str(CM_SCRIPT), "--config", str(root / "environments.yaml"), *args,
                "--env", "bench"], root, {"BENCH_DATABASE_URL": url})


def _cm_tool(name: str, label: str, layout: Callable[[Path, int], None]) -> Tool:
    return Tool(
        name=name, role=OURS, label=label, layout=layout,
        apply=lambda root, urls: _cm(root, urls.libpq, "apply"),
        status=lambda root, urls: _cm(root, urls.libpq, "status"),
        help=Cmd([str(CM_SCRIPT), "--help"], REPO_DIR),
        binary=CM_SCRIPT,
        sqlite=lambda root, db: _cm(root, f"sqlite:///{db}", "apply"),
        sqlite_status=lambda root, db: _cm(root, f"sqlite:///{db}", "status"),
    )


# --------------------------------------------------------------------------- Alembic

_ALEMBIC_INI = "[alembic]\nscript_location = %(here)s\n"
_ALEMBIC_ENV = '''\
"""Minimal env.py: no models, no logging config; one transaction per migration."""
import os

from alembic import context
from sqlalchemy import create_engine, pool

engine = create_engine(os.environ["BENCH_DATABASE_URL"], poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
'''


def _alembic_layout(root: Path, n: int) -> None:
    _write(root / "alembic.ini", _ALEMBIC_INI)
    _write(root / "env.py", _ALEMBIC_ENV)
    for i in range(1, n + 1):
        down = f'"r{i - 1:04d}"' if i > 1 else "None"
        statements = "".join(f"    op.execute({s!r})\n"
                             for s in create_sql(i).strip().split("\n"))
        _write(root / "versions" / f"r{i:04d}_{table_name(i)}.py",
               f'"""bench table {i}"""\nfrom alembic import op\n\n'
               f'revision = "r{i:04d}"\ndown_revision = {down}\n'
               f"branch_labels = None\ndepends_on = None\n\n\n"
               f"def upgrade():\n{statements}\n\n"
               f"def downgrade():\n    op.execute({drop_sql(i).strip()!r})\n")


def _alembic(root: Path, urls: Urls, *args: str) -> Cmd:
    return Cmd([str(VENV_BIN / "alembic"), "-c", str(root / "alembic.ini"), *args], root,
               {"BENCH_DATABASE_URL": urls.sqlalchemy})


# --------------------------------------------------------------------------- yoyo


def _yoyo_layout(root: Path, n: int) -> None:
    for i in range(1, n + 1):
        stem = f"{i:04d}_{table_name(i)}"
        _write(root / "migrations" / f"{stem}.sql", create_sql(i))
        _write(root / "migrations" / f"{stem}.rollback.sql", drop_sql(i))


def _yoyo(root: Path, urls: Urls, command: str, *extra: str) -> Cmd:
    return Cmd([str(VENV_BIN / "yoyo"), command, "--no-config-file", *extra,
                "--database", urls.sqlalchemy, str(root / "migrations")], root)


# --------------------------------------------------------------------------- dbmate


def _dbmate_layout(root: Path, n: int) -> None:
    for i in range(1, n + 1):
        _write(root / "db" / "migrations" / f"{i:04d}_{table_name(i)}.sql",
               f"-- migrate:up\n{create_sql(i)}\n-- migrate:down\n{drop_sql(i)}")


def _dbmate(root: Path, urls: Urls, command: str) -> Cmd:
    return Cmd([str(NPM_BIN / "dbmate"), "--url", urls.nossl, "--migrations-dir",
                str(root / "db" / "migrations"), "--no-dump-schema", command], root)


# --------------------------------------------------------------------------- Supabase CLI

_EPOCH = dt.datetime(2024, 1, 1)


def _supabase_layout(root: Path, n: int) -> None:
    """Timestamp versions, as ``supabase migration new`` writes them; no down migrations."""
    for i in range(1, n + 1):
        stamp = (_EPOCH + dt.timedelta(seconds=i)).strftime("%Y%m%d%H%M%S")
        _write(root / "supabase" / "migrations" / f"{stamp}_{table_name(i)}.sql", create_sql(i))


def _supabase(root: Path, urls: Urls, *args: str) -> Cmd:
    return Cmd([str(NPM_BIN / "supabase"), *args, "--db-url", urls.nossl, "--workdir",
                str(root)], root, {"DO_NOT_TRACK": "1", "SUPABASE_TELEMETRY_DISABLED": "1"})


# --------------------------------------------------------------------------- registry

TOOLS: dict[str, Tool] = {t.name: t for t in [
    FLOOR_TOOL,
    _cm_tool("cryomigrate-sql", "cryomigrate, .sql migrations", _cm_sql_layout),
    _cm_tool("cryomigrate-py", "cryomigrate, .py migrations (conn.sql)", _cm_py_layout),
    Tool("alembic", PEER, "Alembic, op.execute, transaction_per_migration", _alembic_layout,
         apply=lambda root, urls: _alembic(root, urls, "upgrade", "head"),
         status=lambda root, urls: _alembic(root, urls, "current"),
         help=Cmd([str(VENV_BIN / "alembic"), "--help"], REPO_DIR),
         binary=VENV_BIN / "alembic"),
    Tool("yoyo", PEER, "yoyo-migrations, .sql + .rollback.sql", _yoyo_layout,
         apply=lambda root, urls: _yoyo(root, urls, "apply", "--batch"),
         status=lambda root, urls: _yoyo(root, urls, "list"),
         help=Cmd([str(VENV_BIN / "yoyo"), "--help"], REPO_DIR), binary=VENV_BIN / "yoyo"),
    Tool("dbmate", PEER, "dbmate (npm binary), -- migrate:up/down", _dbmate_layout,
         apply=lambda root, urls: _dbmate(root, urls, "migrate"),
         status=lambda root, urls: _dbmate(root, urls, "status"),
         help=Cmd([str(NPM_BIN / "dbmate"), "--help"], REPO_DIR),
         binary=NPM_BIN / "dbmate"),
    Tool("supabase", PEER, "Supabase CLI, migration up --db-url", _supabase_layout,
         apply=lambda root, urls: _supabase(root, urls, "migration", "up"),
         status=lambda root, urls: _supabase(root, urls, "migration", "list"),
         help=Cmd([str(NPM_BIN / "supabase"), "--help"], REPO_DIR),
         binary=NPM_BIN / "supabase"),
]}

# The interpreter floor is the very interpreter (and venv) cryomigrate runs from.
PYTHON_PASS = Cmd([str(CM_BIN / "python"), "-c", "pass"], REPO_DIR)


PYTHON_M_HELP = Cmd([str(CM_BIN / "python"), "-m", "cryomigrate", "--help"], REPO_DIR)


def base_env() -> dict[str, str]:
    """The parent's environment without anything that could steer a tool elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CRYOMIGRATE_", "PG", "DATABASE_URL", "PYTHONPROFILE",
                                "PYTHONPATH", "PYTHONDONTWRITEBYTECODE"))}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env
