#!/usr/bin/env python3
"""Benchmark cryomigrate against its floor (psql) and its peers on the local PostgreSQL.

    python3 bench/run.py            # everything: loopback median of 5, at distance of 3
    python3 bench/run.py --sizes 200 --repeat 3 --tools cryomigrate-sql,alembic
    python3 bench/run.py --no-loopback --no-sqlite --no-help --far-repeat 1

Why each measurement exists (see bench/README.md for the full story):

* cold apply of N migrations into a fresh database: the cost of a real deploy, and with
  two sizes, how that cost grows (per-migration overhead, growth ratio);
* no-op ``apply`` and ``status`` with all N applied: what every CI job pays on every run;
* ``--help`` against ``python -c pass``: start-up cost, the floor of every command;
* the same no-op commands on SQLite, the embedded default;
* at network distance: cold, no-op and status of N=50 through bench/delayproxy.py (40 ms
  round trip), from which round trips per migration follow: against a hosted database
  they, not the client's CPU, decide the speed;
* ``python -c "import psycopg; psycopg.connect(URL).execute('select 1')"`` next to every
  no-op and status: the least a Python tool on psycopg pays, the yardstick of their targets.

Each tool runs as a separate process exactly as a user would start it, timed wall-clock
from ``fork`` to exit. Every cold run is checked to have created exactly N tables and N
indexes, so a tool that "finishes fast" by doing nothing is reported as failed, not fast.
Tools that fail to install or run are reported as such in the table, never dropped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from delayproxy import Counters, DelayProxy, combine
from peers import NPM_PACKAGES, PIP_PACKAGES, ensure_peers, install_cryomigrate, version_of
from pgadmin import PREFIX, Server
from report import markdown, render
from results import (
    COLD,
    FAR,
    HELP,
    NONE,
    NOOP,
    PG,
    PROBE,
    SQLITE,
    STATUS,
    Measurement,
    Plan,
    Targets,
    add_ratios,
    derived,
    round_trips,
)
from tools import (
    BENCH_DIR,
    CM_BIN,
    FLOOR,
    OURS,
    PYTHON_M_HELP,
    PYTHON_PASS,
    REPO_DIR,
    TOOLS,
    Cmd,
    Tool,
    Urls,
    base_env,
)

# Safety net only: the scenario stops its proxy when it ends.
PROXY_LIFETIME = 6 * 3600.0


def probe_cmd(urls: Urls) -> Cmd:
    """The issue's yardstick, verbatim, from the interpreter cryomigrate runs from."""
    code = f"import psycopg; psycopg.connect({urls.libpq!r}).execute('select 1')"
    return Cmd([str(CM_BIN / "python"), "-c", code], REPO_DIR)


class Bench:
    """Runs the plan and collects measurements; owns the databases it creates."""

    def __init__(self, args: argparse.Namespace, server: Server, work: Path) -> None:
        self.args = args
        self.server = server
        self.work = work
        self.results: list[Measurement] = []
        self.tool_errors: dict[str, str] = {}
        self.tool_notes: dict[str, str] = {}
        # While the at-distance rows run: the proxy, and the round trips of the last command.
        self.proxy: DelayProxy | None = None
        self.last_round_trips = 0
        self.proxied: list[Counters] = []  # one per command, for the report's facts

    # -- process timing ----------------------------------------------------------------

    def timed(self, cmd: Cmd, timeout: float | None = None) -> tuple[float, str | None]:
        """Seconds from start to exit; an error text when it failed or timed out."""
        env = base_env() | cmd.env
        if self.proxy is not None:
            self.proxy.reset()
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd.argv, cwd=cmd.cwd, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout or self.args.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            return time.perf_counter() - start, f"timed out after {timeout or self.args.timeout:g}s"
        except OSError as exc:
            return 0.0, f"cannot start: {exc}"
        elapsed = time.perf_counter() - start
        if self.proxy is not None:
            self.proxied.append(self.proxy.counters())
            self.last_round_trips = self.proxied[-1].round_trips
        if proc.returncode != 0:
            text = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
            tail = " | ".join(text.splitlines()[-2:])[:300]
            return elapsed, f"exit {proc.returncode}: {tail}"
        return elapsed, None

    def record(self, m: Measurement) -> Measurement:
        m.finish()
        self.results.append(m)
        shown = f"{m.median:.3f}s" if m.median is not None else f"FAILED ({m.error})"
        label = f"N={m.n}" if m.n else ""
        print(f"  {m.metric:<12} {m.backend:<20} {label:<7} {m.tool:<16} {shown}", flush=True)
        return m

    def repeat(self, m: Measurement, cmd: Cmd, warmup: int) -> Measurement:
        """Warm-up runs (not kept) then ``--repeat`` timed runs of a command that changes
        nothing; the first failure stops it and becomes the measurement's error."""
        return self.interleaved([(m, cmd)], warmup)[0]

    def interleaved(self, plan: list[tuple[Measurement, Cmd]], warmup: int,
                    repeat: int | None = None) -> list[Measurement]:
        """Time commands that change nothing, round-robin: run 1 of every tool, then run 2
        of every tool, ... so that load from other work on this small machine drifts over
        all tools alike instead of skewing whichever tool ran during it."""
        for i in range(warmup + (repeat or self.args.repeat)):
            for m, cmd in plan:
                if m.error is not None:
                    continue
                seconds, error = self.timed(cmd)
                if error:
                    m.error = error
                elif i >= warmup:
                    m.add(seconds, self.last_round_trips if self.proxy else None)
        return [self.record(m) for m, _ in plan]

    # -- PostgreSQL --------------------------------------------------------------------

    def run_pg(self, tools: list[Tool], n: int, backend: str = PG,
               via: Server | None = None, repeat: int | None = None) -> None:
        """Cold apply of every tool into fresh databases, round-robin ``repeat`` times; then
        the no-op apply and the status on each tool's last database (all N applied), next
        to the psycopg probe. ``via`` is where the tools connect (the delaying proxy at
        distance); databases are always created, checked and dropped directly."""
        via = via or self.server
        repeat = repeat or self.args.repeat
        tag = "far" if backend == FAR else "lo"
        ready: list[tuple[Tool, Path, Measurement]] = []
        for tool in tools:
            if tool.name in self.tool_errors:
                for metric in (COLD, NOOP, STATUS):
                    self.record(Measurement(metric, backend, n, tool.name,
                                            error=self.tool_errors[tool.name]))
                continue
            root = self.work / tool.name / f"n{n}"
            if not root.exists():
                tool.layout(root, n)
            ready.append((tool, root, Measurement(COLD, backend, n, tool.name)))
        dbs: dict[str, str] = {}
        try:
            for rep in range(repeat):
                for tool, root, cold in ready:
                    if cold.error is None:
                        self._cold_pg(tool, root, n, cold, via, f"{tag}{rep}", dbs)
            for _, _, cold in ready:
                self.record(cold)
            for metric in (NOOP, STATUS):
                plan = self._no_op_plan(ready, metric, backend, n, via, dbs)
                self.interleaved(plan, self.args.warmup, repeat)
        finally:
            for dbname in dbs.values():
                self.server.drop(dbname)

    def _no_op_plan(self, ready: list[tuple[Tool, Path, Measurement]], metric: str,
                    backend: str, n: int, via: Server,
                    dbs: dict[str, str]) -> list[tuple[Measurement, Cmd]]:
        """No-op apply or status of every tool whose cold apply worked, then the probe."""
        plan: list[tuple[Measurement, Cmd]] = []
        for tool, root, cold in ready:
            m = Measurement(metric, backend, n, tool.name)
            make = (tool.noop or tool.apply) if metric == NOOP else tool.status
            if cold.error:
                m.error = "not measured: cold apply failed"
            elif make is None:
                m.error = "tool has no such command"
            else:
                plan.append((m, make(root, via.urls(dbs[tool.name]))))
                continue
            self.record(m)
        if dbs and any(t.role == OURS for t, _, _ in ready):
            plan.append((Measurement(metric, backend, n, PROBE),
                         probe_cmd(via.urls(next(iter(dbs.values()))))))
        return plan

    def _cold_pg(self, tool: Tool, root: Path, n: int, cold: Measurement, via: Server,
                 tag: str, dbs: dict[str, str]) -> None:
        """One cold apply into a fresh database, checked to hold exactly N tables and N
        indexes afterwards; the previous database of this tool is dropped first."""
        if tool.name in dbs:
            self.server.drop(dbs.pop(tool.name))
        dbname = f"{PREFIX}{tool.name.replace('-', '_')}_{n}_{tag}"
        self.server.create(dbname)
        dbs[tool.name] = dbname
        seconds, error = self.timed(tool.apply(root, via.urls(dbname)))
        if error is None:
            tables, indexes = self.server.bench_objects(dbname)
            if (tables, indexes) != (n, n):
                error = (f"exit 0 but the database holds {tables} tables and "
                         f"{indexes} indexes, not {n}")
        if error:
            cold.error = error
        else:
            cold.add(seconds, self.last_round_trips if self.proxy else None)

    def run_far(self, tools: list[Tool]) -> Counters:
        """The same measurements at network distance: every tool through the delaying
        proxy, half the RTT each way. The proxy lives for this scenario only."""
        args = self.args
        proxy = DelayProxy(self.server.host, self.server.port, args.rtt_ms / 2000.0,
                           lifetime=PROXY_LIFETIME)
        with proxy:
            via = Server("127.0.0.1", proxy.port, self.server.user)
            print(f"at distance: proxy 127.0.0.1:{proxy.port} -> {self.server.host}:"
                  f"{self.server.port}, {args.rtt_ms / 2:g} ms each way", flush=True)
            self.proxy = proxy
            try:
                self.run_pg(tools, args.far_n, FAR, via, args.far_repeat)
            finally:
                self.proxy = None
        return combine(self.proxied)

    # -- SQLite ------------------------------------------------------------------------

    def run_sqlite(self, tool: Tool, n: int) -> None:
        """cryomigrate on the embedded default: cold apply, then no-op apply and status."""
        if tool.sqlite is None or tool.sqlite_status is None:
            return
        root = self.work / tool.name / f"n{n}"
        if not root.exists():
            tool.layout(root, n)
        db = self.work / f"{tool.name}_{n}.db"
        cold = Measurement(COLD, SQLITE, n, tool.name)
        for _ in range(self.args.repeat):
            db.unlink(missing_ok=True)
            seconds, error = self.timed(tool.sqlite(root, db))
            if error is None:
                with sqlite3.connect(db) as conn:
                    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = "
                                          "'table' AND name LIKE 'bench_t%'").fetchone()[0]
                conn.close()
                if tables != n:
                    error = f"exit 0 but the database holds {tables} tables, not {n}"
            if error:
                cold.error = error
                break
            cold.samples.append(seconds)
        self.record(cold)
        for metric, cmd in ((NOOP, tool.sqlite(root, db)), (STATUS, tool.sqlite_status(root, db))):
            m = Measurement(metric, SQLITE, n, tool.name)
            if cold.error:
                m.error = "not measured: cold apply failed"
                self.record(m)
            else:
                self.repeat(m, cmd, self.args.warmup)
        db.unlink(missing_ok=True)

    # -- start-up ----------------------------------------------------------------------

    def run_help(self, tools: list[Tool]) -> None:
        """Start-up cost: ``--help`` of each tool against the bare interpreter."""
        warmup = max(1, self.args.warmup)
        plan: list[tuple[Measurement, Cmd]] = [
            (Measurement(HELP, NONE, 0, "python -c pass"), PYTHON_PASS)]
        seen: set[tuple[str, ...]] = set()
        for tool in tools:
            if tool.help is None or tuple(tool.help.argv) in seen:
                continue  # both cryomigrate variants share one --help
            seen.add(tuple(tool.help.argv))
            m = Measurement(HELP, NONE, 0, "cryomigrate" if tool.role == OURS else tool.name)
            if tool.name in self.tool_errors:
                m.error = self.tool_errors[tool.name]
                self.record(m)
                continue
            plan.append((m, tool.help))
        if any(t.role == OURS for t in tools):
            plan.append((Measurement(HELP, NONE, 0, "python -m cryomigrate"), PYTHON_M_HELP))
        self.interleaved(plan, warmup)


# --------------------------------------------------------------------------- facts


def describe_source(ref: str) -> str:
    """Which cryomigrate was measured: a commit, CM_BENCH_SRC, or the working tree."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_DIR), *args], capture_output=True,
                              text=True, timeout=30, check=False).stdout.strip()

    if os.environ.get("CM_BENCH_SRC"):
        return f"CM_BENCH_SRC={os.environ['CM_BENCH_SRC']}"
    if ref != "live":
        return f"git {git('rev-parse', '--short', ref) or ref} (exported)"
    dirty = git("status", "--porcelain", "--", "cryomigrate")
    return f"git {git('rev-parse', '--short', 'HEAD')}" + (
        " + uncommitted changes (working tree)" if dirty else " (working tree)")


def machine_facts(server: Server, tools: list[Tool], ref: str) -> dict[str, Any]:
    """What a reader needs to compare two result files: hardware, versions, settings."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pg = server.facts()
    versions = {"python": platform.python_version(),
                "postgresql": pg.pop("server_version"),
                "cryomigrate": describe_source(ref)}
    for tool in tools:
        if tool.name in PIP_PACKAGES or tool.name in NPM_PACKAGES:
            versions[tool.name] = version_of(tool.name)
    psql = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=30,
                          check=False)
    versions["psql"] = psql.stdout.split()[2] if len(psql.stdout.split()) > 2 else "?"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": os.cpu_count(), "cpu": cpu, "os": platform.platform(),
                    "loadavg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                    **{f"pg_{k}": v for k, v in pg.items()}},
        "versions": versions,
    }


# --------------------------------------------------------------------------- main


def snapshot(ref: str, dest: Path) -> Path:
    """Export the package as committed at ``ref``: the run then measures one commit."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO_DIR), "archive", ref, "cryomigrate",
                              "pyproject.toml", "README.md"],
                             capture_output=True, timeout=60, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, timeout=60, check=True)
    return dest


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="200,1000",
                        help="migration counts N, comma-separated (default 200,1000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs before no-op/status/--help measurements")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated subset of: {', '.join(TOOLS)} (the floor is "
                             "always included)")
    parser.add_argument("--no-loopback", action="store_true",
                        help="skip the PostgreSQL rows on loopback (--sizes still names the "
                             "SQLite rows)")
    parser.add_argument("--no-distance", action="store_true",
                        help="skip the PostgreSQL rows through the delaying proxy")
    parser.add_argument("--rtt-ms", type=float, default=40.0,
                        help="round trip the proxy adds, half each way (default 40)")
    parser.add_argument("--far-n", type=int, default=50,
                        help="migrations applied at distance (default 50)")
    parser.add_argument("--far-repeat", type=int, default=3,
                        help="timed runs per measurement at distance (default 3)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite rows")
    parser.add_argument("--no-help", action="store_true", help="skip the --help rows")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one tool invocation may take before it counts as failed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--json", default=str(BENCH_DIR / "results.json"),
                        help="where to write the results (default bench/results.json)")
    parser.add_argument("--no-install", action="store_true",
                        help="do not install missing peers; report them as not installed")
    parser.add_argument("--reinstall", action="store_true", help="reinstall the peers")
    parser.add_argument("--ref", default="HEAD",
                        help="benchmark cryomigrate as committed at this git ref (default "
                             "HEAD), exported to the work folder, so code edited during the "
                             "run cannot mix into it; --ref live uses the working tree")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the generated migration folders (path is printed)")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    names = [s.strip() for s in args.tools.split(",") if s.strip()]
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        parser.error(f"unknown tools: {', '.join(unknown)}; choose from {', '.join(TOOLS)}")
    if "floor" not in names:
        names.insert(0, "floor")
    args.tools = [TOOLS[n] for n in TOOLS if n in names]  # registry order: floor first
    if args.repeat < 1 or args.far_repeat < 1 or not args.sizes:
        parser.error("--repeat and --far-repeat must be >= 1 and --sizes non-empty")
    if args.rtt_ms <= 0 or args.far_n < 1:
        parser.error("--rtt-ms must be > 0 and --far-n >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools: list[Tool] = args.tools
    server = Server(args.host, args.port, args.user)
    try:
        server.sql("SELECT 1")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"cannot reach PostgreSQL at {args.host}:{args.port}: {exc}\n"
              "start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start",
              file=sys.stderr)
        return 2
    leftovers = server.drop_leftovers()
    if leftovers:
        print(f"dropped {len(leftovers)} leftover {PREFIX}* database(s)")

    names = [t.name for t in tools]
    tool_errors: dict[str, str] = {}
    if args.no_install:
        for t in tools:
            if t.role != OURS and t.binary is not None and not t.binary.exists():
                tool_errors[t.name] = f"not installed ({t.binary} missing)"
    else:
        tool_errors = ensure_peers(names, reinstall=args.reinstall)
    if shutil.which("psql") is None:
        print("psql is required (it is the floor)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="cm_bench_"))
    chosen = os.environ.get("CM_BENCH_SRC")
    source = (Path(chosen) if chosen else REPO_DIR if args.ref == "live"
              else snapshot(args.ref, work / "src"))
    error = install_cryomigrate(source)
    if error:
        for tool in tools:
            if tool.role == OURS:
                tool_errors[tool.name] = error
    facts = machine_facts(server, tools, args.ref)
    facts["repeat"], facts["warmup"], facts["far_repeat"] = (args.repeat, args.warmup,
                                                             args.far_repeat)
    bench = Bench(args, server, work)
    bench.tool_errors = tool_errors
    started = time.perf_counter()
    print(f"work folder {work}; tools: {', '.join(names)}; sizes: {args.sizes}", flush=True)
    try:
        if not args.no_loopback:
            for n in args.sizes:
                bench.run_pg(tools, n)
        if not args.no_distance:
            facts["proxy"] = bench.run_far(tools).to_dict()
        if not args.no_sqlite:
            for n in args.sizes:
                for tool in tools:
                    if tool.role == OURS and tool.name not in tool_errors:
                        bench.run_sqlite(tool, n)
        if not args.no_help:
            bench.run_help(tools)
    finally:
        server.drop_leftovers()
        if args.keep_work:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    results = bench.results
    add_ratios(results)
    plan = Plan(args.sizes, None if args.no_distance else args.far_n, args.rtt_ms / 1000.0,
                not args.no_loopback)
    measured = [t for t in tools if t.role != FLOOR]
    extra = derived(results, measured, args.sizes[0], args.sizes[-1])
    rounds = round_trips(results, tools, args.far_n, plan.rtt) if plan.far_n else {}
    targets = Targets(results, plan, extra, rounds).judge(tools)
    facts["duration_s"] = round(time.perf_counter() - started, 1)
    # Other work on the same 2 cores skews timings: show how busy the machine was.
    facts["machine"]["loadavg_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    print(render(results, extra, rounds, targets, facts, plan))
    print("\nMarkdown for README's Performance section:\n")
    print(markdown(results, extra, rounds, facts, plan))
    print(f"\nbench took {facts['duration_s']}s; results written to {args.json}")
    document = {
        "facts": facts,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "tools": {t.name: {"role": t.role, "label": t.label,
                           "error": tool_errors.get(t.name)} for t in tools},
        "measurements": [asdict(m) for m in results],
        "derived": extra,
        "round_trips_per_migration": rounds,
        "targets": [asdict(t) for t in targets],
    }
    Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
