"""Fleets (issue 13): one `cryomigrate apply` on a fleet vs a shell loop of single applies.

    python3 bench/fleet.py                    # 100 databases x 10 migrations, parallel 8
    python3 bench/fleet.py --databases 20     # a quick check
    python3 bench/fleet.py --no-loopback      # at distance (40 ms round trip) only

Three ways to migrate D fresh databases with the same M migrations, each timed
wall-clock from start to exit, on loopback and through ``delayproxy`` at ``--rtt-ms``:

- ``cryomigrate fleet``: one process, ``databases_file:`` listing every database,
  ``--parallel`` databases at once;
- ``cryomigrate loop``: ``for url in ...; do cryomigrate apply; done`` in bash, as a user
  without fleets writes it;
- ``dbmate loop``: the same loop over ``dbmate migrate``.

cryomigrate runs from the bench's own venv, installed from ``--ref`` (as run.py does).
Afterwards every database must hold exactly M tables, else the row says FAILED.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delayproxy import DelayProxy  # noqa: E402
from peers import ensure_peers, install_cryomigrate  # noqa: E402
from run import snapshot  # noqa: E402
from tools import CM_SCRIPT, NPM_BIN, base_env, create_sql, drop_sql, table_name  # noqa: E402


def psql_admin(args: argparse.Namespace, sql: str) -> str:
    return subprocess.run(["psql", "-X", "-q", "-At", "-h", args.host, "-p", str(args.port),
                           "-U", args.user, "-d", "postgres", "-c", sql], check=True,
                          capture_output=True, text=True, timeout=120).stdout


def layout(root: Path, m: int) -> None:
    for i in range(1, m + 1):
        cm = root / "migrations" / f"{i:04d}_{table_name(i)}.sql"
        cm.parent.mkdir(parents=True, exist_ok=True)
        cm.write_text(f"-- cryomigrate:apply\n{create_sql(i)}-- cryomigrate:rollback\n"
                      f"{drop_sql(i)}")
        db = root / "db" / "migrations" / f"{i:04d}_{table_name(i)}.sql"
        db.parent.mkdir(parents=True, exist_ok=True)
        db.write_text(f"-- migrate:up\n{create_sql(i)}\n-- migrate:down\n{drop_sql(i)}")


def scripts(root: Path, urls: list[str], parallel: int) -> dict[str, list[str]]:
    """The three commands, each given the databases' URLs."""
    (root / "fleet.txt").write_text("".join(f"{u}\n" for u in urls))
    (root / "environments.yaml").write_text(
        "environments:\n  fleet:\n    databases_file: fleet.txt\n"
        f"    parallel: {parallel}\n  one:\n    database: ${{BENCH_DATABASE_URL}}\n")
    nossl = [u + "?sslmode=disable" for u in urls]
    loop = "set -e; for url in {urls}; do {cmd}; done"
    cm_one = (f"BENCH_DATABASE_URL=$url {shlex.quote(str(CM_SCRIPT))} --config "
              f"{shlex.quote(str(root / 'environments.yaml'))} apply --env one >/dev/null")
    dbmate = (f"{shlex.quote(str(NPM_BIN / 'dbmate'))} --url $url --migrations-dir "
              f"{shlex.quote(str(root / 'db' / 'migrations'))} --no-dump-schema migrate "
              ">/dev/null")
    return {
        "cryomigrate fleet": [str(CM_SCRIPT), "--config", str(root / "environments.yaml"),
                              "apply", "--env", "fleet"],
        "cryomigrate loop": ["bash", "-c", loop.format(urls=" ".join(urls), cmd=cm_one)],
        "dbmate loop": ["bash", "-c", loop.format(urls=" ".join(nossl), cmd=dbmate)],
    }


def measure(args: argparse.Namespace, root: Path, tool: str, port: int) -> float | str:
    names = [f"cm_fleetbench_{uuid.uuid4().hex[:8]}" for _ in range(args.databases)]
    for name in names:
        psql_admin(args, f'CREATE DATABASE "{name}"')
    try:
        urls = [f"postgresql://{args.user}@{args.host}:{port}/{n}" for n in names]
        argv = scripts(root, urls, args.parallel)[tool]
        clock = time.perf_counter()
        proc = subprocess.run(argv, cwd=root, env=base_env(), capture_output=True, text=True,
                              timeout=args.timeout, check=False)
        seconds = time.perf_counter() - clock
        if proc.returncode != 0:
            return f"FAILED exit {proc.returncode}: {(proc.stderr or proc.stdout)[-200:]}"
        for name in names:
            count = subprocess.run(
                ["psql", "-X", "-At", "-h", args.host, "-p", str(args.port), "-U", args.user,
                 "-d", name, "-c", "SELECT count(*) FROM pg_tables WHERE tablename LIKE "
                 "'bench_t%'"], capture_output=True, text=True, check=True).stdout.strip()
            if count != str(args.migrations):
                return f"FAILED: {name} holds {count} tables, not {args.migrations}"
        return seconds
    finally:
        for name in names:
            psql_admin(args, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=100)
    parser.add_argument("--migrations", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--no-loopback", action="store_true")
    parser.add_argument("--no-distance", action="store_true")
    parser.add_argument("--tools", default="cryomigrate fleet,cryomigrate loop,dbmate loop")
    parser.add_argument("--ref", default="HEAD", help="commit of cryomigrate to install")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",")]
    if not args.no_install:
        with tempfile.TemporaryDirectory() as tmp:
            error = install_cryomigrate(snapshot(args.ref, Path(tmp) / "src"))
        errors = ensure_peers(["dbmate"])
        if error or errors:
            print(f"install: {error or errors}", file=sys.stderr)
            return 1
    rows: list[tuple[str, str, float | str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        layout(root, args.migrations)
        settings = ([] if args.no_loopback else [("loopback", 0.0)]) + \
            ([] if args.no_distance else [(f"{args.rtt_ms:g} ms RTT", args.rtt_ms)])
        for label, rtt in settings:
            for tool in tools:
                if rtt:
                    with DelayProxy(target_port=args.port, delay=rtt / 2000,
                                    lifetime=args.timeout) as proxy:
                        result = measure(args, root, tool, proxy.port)
                else:
                    result = measure(args, root, tool, args.port)
                print(f"{label:>12}  {tool:<18} {result if isinstance(result, str) else f'{result:.1f} s'}",
                      flush=True)
                rows.append((label, tool, result))
    print_table(args, rows)
    return 0


def print_table(args: argparse.Namespace, rows: list[tuple[str, str, float | str]]) -> None:
    print(f"\n`python3 bench/fleet.py --databases {args.databases} --migrations "
          f"{args.migrations} --parallel {args.parallel}`, {dt.date.today()}:\n")
    print("| where | tool | wall clock | vs cryomigrate fleet |")
    print("| --- | --- | --- | --- |")
    for label, tool, result in rows:
        fleet = next((r for w, t, r in rows if w == label and t == "cryomigrate fleet"), None)
        if isinstance(result, str):
            print(f"| {label} | {tool} | {result} | |")
            continue
        ratio = f"{result / fleet:.1f}x" if isinstance(fleet, float) else ""
        print(f"| {label} | {tool} | {result:.1f} s | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
