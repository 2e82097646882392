"""Create, check and drop the throw-away databases (all named ``cm_bench_*``) via psql.

Administration goes through ``psql`` rather than a driver so the harness depends on
nothing the tools under test also load; each call is bounded by a timeout.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from tools import Urls

PREFIX = "cm_bench_"
ADMIN_TIMEOUT = 120.0


@dataclass(frozen=True)
class Server:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"

    def urls(self, dbname: str) -> Urls:
        return Urls(self.host, self.port, self.user, dbname)

    def sql(self, query: str, dbname: str = "postgres") -> str:
        """Run one statement, return its unaligned output; raise RuntimeError on failure."""
        argv = ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                "-p", str(self.port), "-U", self.user, "-d", dbname, "-c", query]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=ADMIN_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({query[:60]}): {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create(self, dbname: str) -> None:
        assert dbname.startswith(PREFIX)
        self.sql(f'DROP DATABASE IF EXISTS "{dbname}"')
        self.sql(f'CREATE DATABASE "{dbname}" TEMPLATE template0')

    def drop(self, dbname: str) -> None:
        assert dbname.startswith(PREFIX)
        self.sql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')

    def drop_leftovers(self) -> list[str]:
        """Drop every cm_bench_* database an interrupted earlier run left behind."""
        names = self.sql(f"SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'")
        dropped = [n for n in names.splitlines() if n]
        for name in dropped:
            self.drop(name)
        return dropped

    def bench_objects(self, dbname: str) -> tuple[int, int]:
        """(tables, indexes) named like the benchmark's: proves a run really applied N."""
        out = self.sql(
            "SELECT count(*) FILTER (WHERE c.relkind = 'r'), count(*) FILTER (WHERE "
            "c.relkind = 'i' AND c.relname LIKE 'bench\\_t%\\_name\\_idx') FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND "
            "c.relname LIKE 'bench\\_t%'", dbname)
        tables, indexes = out.split("|")
        return int(tables), int(indexes)

    def facts(self) -> dict[str, str]:
        """Server settings that decide commit cost, for the machine-facts block."""
        names = ["server_version", "fsync", "synchronous_commit", "shared_buffers", "wal_level"]
        return {name: self.sql(f"SHOW {name}") for name in names}
