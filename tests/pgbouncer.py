"""A private pgbouncer in transaction pool mode, in front of the test's fresh database.

``pool_mode = transaction`` hands each transaction whichever server connection is free,
so anything a run leaves on a session (a session-level advisory lock, a plain ``SET``, a
prepared statement, an open transaction) would leak into other clients. The pool is
deliberately small, so that concurrent clients share server connections.

pgbouncer refuses to run as root; as root we set ``user = postgres`` in its ini (it drops
privileges itself) and give that user its temporary folder. In CI (CI=true) a missing
pgbouncer fails the tests that need it, exactly like a missing PostgreSQL.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import IN_CI, PG_ADMIN_URL, PgDatabase, require_postgres

POOL_SIZE = 3
_RUN_AS = "postgres"


def pgbouncer_binary() -> str | None:
    for candidate in ("/usr/sbin/pgbouncer", shutil.which("pgbouncer")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_pgbouncer() -> str:
    binary = pgbouncer_binary()
    if binary is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    assert binary is not None
    return binary


@dataclass
class Bouncer:
    port: int
    dbname: str
    folder: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_address() -> tuple[str, int]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(PG_ADMIN_URL)
    return str(params.get("host") or "127.0.0.1"), int(params.get("port") or 5432)


def _write_ini(folder: Path, port: int, dbname: str, as_root: bool) -> Path:
    host, server_port = _server_address()
    (folder / "userlist.txt").write_text('"postgres" ""\n')
    ini = folder / "pgbouncer.ini"
    ini.write_text("\n".join([
        "[databases]",
        f"{dbname} = host={host} port={server_port} dbname={dbname}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {folder / 'userlist.txt'}",
        "pool_mode = transaction",
        f"default_pool_size = {POOL_SIZE}",
        "min_pool_size = 0",
        "max_client_conn = 200",
        "ignore_startup_parameters = extra_float_digits,options",
        f"logfile = {folder / 'pgbouncer.log'}",
        f"pidfile = {folder / 'pgbouncer.pid'}",
        "server_login_retry = 1",
        *([f"user = {_RUN_AS}"] if as_root else []),
        "",
    ]))
    return ini


def _ready(port: int, dbname: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/{dbname}",
                             connect_timeout=2, prepare_threshold=None, autocommit=True) as db:
            db.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def running_pgbouncer(database: PgDatabase) -> Iterator[Bouncer]:
    """Start pgbouncer for ``database`` on a free loopback port; stop it on exit."""
    require_postgres()
    binary = require_pgbouncer()
    as_root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="cm-pgbouncer-"))
    if as_root:
        account = pwd.getpwnam(_RUN_AS)
        os.chown(folder, account.pw_uid, account.pw_gid)
    process: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):  # the free port can be taken between probe and bind
            port = _free_port()
            ini = _write_ini(folder, port, database.name, as_root)
            process = subprocess.Popen([binary, str(ini)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, cwd=folder)
            deadline = time.monotonic() + 15
            while process.poll() is None and time.monotonic() < deadline:
                if _ready(port, database.name):
                    break
                time.sleep(0.05)
            if process.poll() is None and _ready(port, database.name):
                yield Bouncer(port, database.name, folder)
                return
            _stop(process)
        log = (folder / "pgbouncer.log")
        pytest.fail("pgbouncer did not start:\n"
                    + (log.read_text(errors="replace") if log.exists() else "(no log)"))
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(name="bouncer")
def bouncer_fixture(pg_database: PgDatabase) -> Iterator[Bouncer]:
    """A private transaction-mode pgbouncer in front of this test's fresh database."""
    with running_pgbouncer(pg_database) as bouncer:
        yield bouncer
