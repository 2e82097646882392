#!/usr/bin/env python3
"""Benchmark cryomigrate against its floor (psql) and its peers on the local PostgreSQL.

    python3 bench/run.py                                   # everything, median of 5
    python3 bench/run.py --sizes 200 --repeat 3 --tools cryomigrate-sql,alembic

Why each measurement exists (see bench/README.md for the full story):

* cold apply of N migrations into a fresh database: the cost of a real deploy, and with
  two sizes, how that cost grows (per-migration overhead, growth ratio);
* no-op ``apply`` and ``status`` with all N applied: what every CI job pays on every run;
* ``--help`` against ``python -c pass``: start-up cost, the floor of every command;
* the same no-op commands on SQLite, the embedded default.

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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import NPM_PACKAGES, PIP_PACKAGES, ensure_peers, install_cryomigrate, version_of
from pgadmin import PREFIX, Server
from tools import (
    BENCH_DIR,
    FLOOR,
    OURS,
    PEER,
    PYTHON_M_HELP,
    PYTHON_PASS,
    REPO_DIR,
    TOOLS,
    Cmd,
    Tool,
    base_env,
)

PG, SQLITE, NONE = "postgresql", "sqlite", "-"
COLD, NOOP, STATUS, HELP = "cold apply", "no-op apply", "status", "--help"


# --------------------------------------------------------------------------- measurements


@dataclass
class Measurement:
    """Wall-clock samples of one (metric, backend, N, tool); ``error`` if it could not run."""

    metric: str
    backend: str
    n: int
    tool: str
    samples: list[float] = field(default_factory=list)
    error: str | None = None
    median: float | None = None
    ratio_floor: float | None = None
    ratio_fastest_peer: float | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.metric, self.backend, self.n)


class Bench:
    """Runs the plan and collects measurements; owns the databases it creates."""

    def __init__(self, args: argparse.Namespace, server: Server, work: Path) -> None:
        self.args = args
        self.server = server
        self.work = work
        self.results: list[Measurement] = []
        self.tool_errors: dict[str, str] = {}
        self.tool_notes: dict[str, str] = {}

    # -- process timing ----------------------------------------------------------------

    def timed(self, cmd: Cmd, timeout: float | None = None) -> tuple[float, str | None]:
        """Seconds from start to exit; an error text when it failed or timed out."""
        env = base_env() | cmd.env
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
        if proc.returncode != 0:
            text = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip()
            tail = " | ".join(text.splitlines()[-2:])[:300]
            return elapsed, f"exit {proc.returncode}: {tail}"
        return elapsed, None

    def record(self, m: Measurement) -> Measurement:
        if m.samples and m.error is None:
            m.median = statistics.median(m.samples)
        self.results.append(m)
        shown = f"{m.median:.3f}s" if m.median is not None else f"FAILED ({m.error})"
        label = f"N={m.n}" if m.n else ""
        print(f"  {m.metric:<12} {m.backend:<10} {label:<7} {m.tool:<16} {shown}", flush=True)
        return m

    def repeat(self, m: Measurement, cmd: Cmd, warmup: int) -> Measurement:
        """Warm-up runs (not kept) then ``--repeat`` timed runs of a command that changes
        nothing; the first failure stops it and becomes the measurement's error."""
        return self.interleaved([(m, cmd)], warmup)[0]

    def interleaved(self, plan: list[tuple[Measurement, Cmd]],
                    warmup: int) -> list[Measurement]:
        """Time commands that change nothing, round-robin: run 1 of every tool, then run 2
        of every tool, ... so that load from other work on this small machine drifts over
        all tools alike instead of skewing whichever tool ran during it."""
        for i in range(warmup + self.args.repeat):
            for m, cmd in plan:
                if m.error is not None:
                    continue
                seconds, error = self.timed(cmd)
                if error:
                    m.error = error
                elif i >= warmup:
                    m.samples.append(seconds)
        return [self.record(m) for m, _ in plan]

    # -- PostgreSQL --------------------------------------------------------------------

    def run_pg(self, tools: list[Tool], n: int) -> None:
        """Cold apply of every tool into fresh databases, round-robin ``repeat`` times; then
        the no-op apply and the status on each tool's last database (all N applied)."""
        ready: list[tuple[Tool, Path, Measurement]] = []
        for tool in tools:
            if tool.name in self.tool_errors:
                for metric in (COLD, NOOP, STATUS):
                    self.record(Measurement(metric, PG, n, tool.name,
                                            error=self.tool_errors[tool.name]))
                continue
            root = self.work / tool.name / f"n{n}"
            tool.layout(root, n)
            ready.append((tool, root, Measurement(COLD, PG, n, tool.name)))
        dbs: dict[str, str] = {}
        try:
            for rep in range(self.args.repeat):
                for tool, root, cold in ready:
                    if cold.error is None:
                        self._cold_pg(tool, root, cold, rep, dbs)
            for _, _, cold in ready:
                self.record(cold)
            for metric in (NOOP, STATUS):
                plan: list[tuple[Measurement, Cmd]] = []
                for tool, root, cold in ready:
                    m = Measurement(metric, PG, n, tool.name)
                    make = (tool.noop or tool.apply) if metric == NOOP else tool.status
                    if cold.error:
                        m.error = "not measured: cold apply failed"
                    elif make is None:
                        m.error = "tool has no such command"
                    else:
                        plan.append((m, make(root, self.server.urls(dbs[tool.name]))))
                        continue
                    self.record(m)
                self.interleaved(plan, self.args.warmup)
        finally:
            for dbname in dbs.values():
                self.server.drop(dbname)

    def _cold_pg(self, tool: Tool, root: Path, cold: Measurement, rep: int,
                 dbs: dict[str, str]) -> None:
        """One cold apply into a fresh database, checked to hold exactly N tables and N
        indexes afterwards; the previous database of this tool is dropped first."""
        n = int(root.name[1:])
        if tool.name in dbs:
            self.server.drop(dbs.pop(tool.name))
        dbname = f"{PREFIX}{tool.name.replace('-', '_')}_{n}_{rep}"
        self.server.create(dbname)
        dbs[tool.name] = dbname
        seconds, error = self.timed(tool.apply(root, self.server.urls(dbname)))
        if error is None:
            tables, indexes = self.server.bench_objects(dbname)
            if (tables, indexes) != (n, n):
                error = (f"exit 0 but the database holds {tables} tables and "
                         f"{indexes} indexes, not {n}")
        if error:
            cold.error = error
        else:
            cold.samples.append(seconds)

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


# --------------------------------------------------------------------------- analysis


def add_ratios(results: list[Measurement]) -> None:
    """Ratio of each median to the floor and to the fastest peer of the same measurement.

    The floor is psql for PostgreSQL rows and ``python -c pass`` for ``--help``; SQLite rows
    have neither (no peer runs there), so their ratios stay empty."""
    by_key: dict[tuple[str, str, int], list[Measurement]] = {}
    for m in results:
        by_key.setdefault(m.key, []).append(m)
    for group in by_key.values():
        floor_name = "python -c pass" if group[0].metric == HELP else "floor"
        floor = next((m.median for m in group if m.tool == floor_name), None)
        peers = [m.median for m in group
                 if m.median is not None and m.tool in TOOLS and TOOLS[m.tool].role == PEER]
        fastest = min(peers) if peers else None
        for m in group:
            if m.median is None:
                continue
            m.ratio_floor = m.median / floor if floor else None
            m.ratio_fastest_peer = m.median / fastest if fastest else None


def find(results: list[Measurement], metric: str, backend: str, n: int,
         tool: str) -> Measurement | None:
    return next((m for m in results if m.key == (metric, backend, n) and m.tool == tool), None)


def derived(results: list[Measurement], tools: list[Tool], small: int,
            large: int) -> dict[str, dict[str, float | None]]:
    """Per-migration overhead over the floor at the large N, and growth large/small."""
    floor = find(results, COLD, PG, large, "floor")
    out: dict[str, dict[str, float | None]] = {}
    for tool in tools:
        lo, hi = find(results, COLD, PG, small, tool.name), find(results, COLD, PG, large,
                                                                  tool.name)
        hi_s = hi.median if hi else None
        lo_s = lo.median if lo else None
        overhead = ((hi_s - floor.median) / large * 1000
                    if hi_s is not None and floor and floor.median is not None else None)
        growth = hi_s / lo_s if hi_s is not None and lo_s and small != large else None
        out[tool.name] = {"overhead_ms_per_migration": overhead, "growth": growth}
    return out


@dataclass
class Target:
    tool: str
    text: str
    verdict: str  # PASS, FAIL or n/a
    detail: str


def check_targets(results: list[Measurement], tools: list[Tool], small: int, large: int,
                  extra: dict[str, dict[str, float | None]]) -> list[Target]:
    """The product's performance targets, judged for each cryomigrate variant."""
    targets: list[Target] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    def add(tool: str, text: str, ok: bool | None, detail: str) -> None:
        targets.append(Target(tool, text, verdict(ok), detail))

    ours = [t for t in tools if t.role == OURS]
    for tool in ours:
        name = tool.name
        overhead = extra.get(name, {}).get("overhead_ms_per_migration")
        add(name, f"overhead over the floor at N={large} <= 0.5 ms/migration",
            None if overhead is None else overhead <= 0.5,
            "n/a" if overhead is None else f"{overhead:.2f} ms/migration")

        cold = find(results, COLD, PG, small, name)
        for peer in ("alembic", "yoyo", "supabase"):
            other = find(results, COLD, PG, small, peer)
            if cold is None or cold.median is None:
                add(name, f"cold apply N={small} faster than {peer}", None, "ours not measured")
            elif other is None or other.median is None:
                why = "not selected" if other is None else f"{peer} failed: {other.error}"
                add(name, f"cold apply N={small} faster than {peer}", None, why[:120])
            else:
                add(name, f"cold apply N={small} faster than {peer}", cold.median < other.median,
                    f"{cold.median:.3f}s vs {other.median:.3f}s")
        floor = find(results, COLD, PG, small, "floor")
        if cold and cold.median is not None and floor and floor.median is not None:
            ratio = cold.median / floor.median
            add(name, f"cold apply N={small} <= 1.5x floor", ratio <= 1.5, f"{ratio:.2f}x")
        else:
            add(name, f"cold apply N={small} <= 1.5x floor", None, "not measured")

        for backend, limit in ((PG, 0.20), (SQLITE, 0.10)):
            for metric in (NOOP, STATUS):
                for n in sorted({small, large}):
                    m = find(results, metric, backend, n, name)
                    text = f"{metric} N={n} on {backend} <= {limit:.2f} s"
                    if m is None or m.median is None:
                        add(name, text, None, "not measured" if m is None else str(m.error))
                    else:
                        add(name, text, m.median <= limit, f"{m.median:.3f}s")

        growth = extra.get(name, {}).get("growth")
        add(name, f"cold apply N={large} <= 5.5x N={small}",
            None if growth is None else growth <= 5.5,
            "n/a" if growth is None else f"{growth:.2f}x")

    if ours:
        py = find(results, HELP, NONE, 0, "python -c pass")
        for label in ("cryomigrate", "python -m cryomigrate"):
            h = find(results, HELP, NONE, 0, label)
            shown = f"{label} --help"
            text = f"{shown} <= 2 x (python -c pass) + 60 ms"
            if h is None or h.median is None or py is None or py.median is None:
                add("cryomigrate", text, None, "not measured")
            else:
                limit = 2 * py.median + 0.060
                add("cryomigrate", text, h.median <= limit,
                    f"{h.median * 1000:.0f} ms vs limit {limit * 1000:.0f} ms")
    return targets


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "-" if x is None else format(x, spec) + suffix


def display_order(results: list[Measurement]) -> Any:
    """Rows grouped by measurement (PostgreSQL by N, then SQLite, then --help), tools in
    the order they ran, so each group reads as one comparison."""
    backends = {PG: 0, SQLITE: 1, NONE: 2}
    metrics = {COLD: 0, NOOP: 1, STATUS: 2, HELP: 3}
    tools: dict[str, int] = {"floor": 0, "python -c pass": 1}
    for m in results:
        tools.setdefault(m.tool, len(tools))
    return lambda m: (backends[m.backend], m.n, metrics[m.metric], tools[m.tool])


def render(results: list[Measurement], extra: dict[str, dict[str, float | None]],
           targets: list[Target], facts: dict[str, Any], large: int, small: int) -> str:
    lines: list[str] = []
    lines.append(f"cryomigrate benchmark  {facts['date']}")
    lines.append("machine: " + ", ".join(f"{k}={v}" for k, v in facts["machine"].items()))
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
    lines.append(f"runs: median of {facts['repeat']} (warm-up {facts['warmup']} for no-op "
                 "commands), wall-clock per process")
    lines.append("")
    header = (f"{'measurement':<31} {'tool':<24} {'median':>9} {'min':>8} {'max':>8} "
              f"{'x floor':>8} {'x fastest peer':>14}  note")
    lines.append(header)
    lines.append("-" * len(header))
    previous = None
    for m in sorted(results, key=display_order(results)):
        label = f"{m.metric}" + (f" N={m.n}" if m.n else "") + (
            f" [{m.backend}]" if m.backend != NONE else "")
        if previous is not None and previous != m.key:
            lines.append("")
        previous = m.key
        if m.median is None:
            lines.append(f"{label:<31} {m.tool:<24} {'FAILED':>9} {'':>8} {'':>8} {'':>8} "
                         f"{'':>14}  {m.error}")
            continue
        lines.append(
            f"{label:<31} {m.tool:<24} {m.median:>8.3f}s {min(m.samples):>7.3f}s "
            f"{max(m.samples):>7.3f}s {_fmt(m.ratio_floor, '.2f', 'x'):>8} "
            f"{_fmt(m.ratio_fastest_peer, '.2f', 'x'):>14}")
    lines.append("")
    lines.append(f"derived (PostgreSQL cold apply): overhead over floor at N={large} = "
                 f"(tool - floor) / N; growth = N={large} / N={small}")
    lines.append(f"{'tool':<24} {'ms/migration':>13} {'growth':>8}")
    for tool, values in extra.items():
        lines.append(f"{tool:<24} {_fmt(values['overhead_ms_per_migration'], '.3f'):>13} "
                     f"{_fmt(values['growth'], '.2f', 'x'):>8}")
    lines.append("")
    lines.append("targets")
    for t in targets:
        lines.append(f"  [{t.verdict:<4}] {t.tool:<16} {t.text:<52} {t.detail}")
    lines.append("")
    lines.append("floor: PostgreSQL rows use psql (-X -q, one session; cold apply feeds "
                 "BEGIN; \\i file; COMMIT; per file; no-op/status rows: connect + SELECT 1); "
                 "--help rows use python -c pass")
    return "\n".join(lines)


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
    if args.repeat < 1 or not args.sizes:
        parser.error("--repeat must be >= 1 and --sizes non-empty")
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
    facts["repeat"], facts["warmup"] = args.repeat, args.warmup
    bench = Bench(args, server, work)
    bench.tool_errors = tool_errors
    started = time.perf_counter()
    print(f"work folder {work}; tools: {', '.join(names)}; sizes: {args.sizes}", flush=True)
    try:
        for n in args.sizes:
            bench.run_pg(tools, n)
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
    small, large = args.sizes[0], args.sizes[-1]
    extra = derived(results, [t for t in tools if t.role != FLOOR], small, large)
    targets = check_targets(results, tools, small, large, extra)
    facts["duration_s"] = round(time.perf_counter() - started, 1)
    # Other work on the same 2 cores skews timings: show how busy the machine was.
    facts["machine"]["loadavg_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    print(render(results, extra, targets, facts, large, small))
    print(f"\nbench took {facts['duration_s']}s; results written to {args.json}")
    document = {
        "facts": facts,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "tools": {t.name: {"role": t.role, "label": t.label,
                           "error": tool_errors.get(t.name)} for t in tools},
        "measurements": [asdict(m) for m in results],
        "derived": extra,
        "targets": [asdict(t) for t in targets],
    }
    Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
