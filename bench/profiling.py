#!/usr/bin/env python3
"""Where cryomigrate's time goes, without changing it: round trips, Python time, imports.

    python3 bench/profiling.py            # N=1000 .sql migrations on the local PostgreSQL
    python3 bench/profiling.py --n 200

Profiles four commands: cold apply of N migrations into a fresh database, the no-op apply
and the status with all N applied, and ``--help``. Raw output (pstats text, py-spy
collapsed stacks, strace and importtime logs) goes to bench/.peers/profiles/ (git-ignored);
a summary goes to stdout. py-spy is installed into the bench venv, never into the project.
"""

from __future__ import annotations

import argparse
import io
import pstats
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import PROFILERS, install_cryomigrate, pip_install
from pgadmin import PREFIX, Server
from tools import (
    CM_BIN,
    CM_SCRIPT,
    PEERS_DIR,
    REPO_DIR,
    TOOLS,
    VENV_BIN,
    Cmd,
    base_env,
)

OUT = PEERS_DIR / "profiles"
TIMEOUT = 900.0


def run(cmd: Cmd, prefix: list[str] | None = None, stderr_to: Path | None = None
        ) -> tuple[float, float, str]:
    """Run (optionally under a wrapper such as strace); wall seconds, child CPU seconds and
    stderr text. Raises on failure: a profile of a failed run would mislead."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([*(prefix or []), *cmd.argv], cwd=cmd.cwd, env=base_env() | cmd.env,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                          check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    err = proc.stderr.decode("utf-8", "replace")
    if stderr_to is not None:
        stderr_to.write_text(err)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd.argv[:4])}... exit {proc.returncode}: {err[-500:]}")
    return wall, cpu, err


def strace_counts(cmd: Cmd, name: str) -> dict[str, int]:
    """Socket syscalls of the whole process tree: each query is one send, so sendto
    counts round trips (psql and libpq send one message per query)."""
    log = OUT / f"strace_{name}.txt"
    run(cmd, ["strace", "-f", "-c", "-o", str(log), "-e",
              "trace=sendto,recvfrom,sendmsg,recvmsg,poll,ppoll,openat,read,newfstatat"])
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    return counts


def xact_commits(server: Server, dbname: str) -> int:
    return int(server.sql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = "
                          f"'{dbname}'"))


def cprofile(cmd: Cmd, name: str, top: int = 18) -> str:
    """cProfile the command; return the top functions by own time and by cumulative time."""
    prof = OUT / f"cprofile_{name}.prof"
    argv = [str(CM_BIN / "python"), "-m", "cProfile", "-o", str(prof), *cmd.argv]
    run(Cmd(argv, cmd.cwd, cmd.env))
    text = io.StringIO()
    stats = pstats.Stats(str(prof), stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top + 10)
    (OUT / f"cprofile_{name}.txt").write_text(text.getvalue())
    return text.getvalue()


def pyspy(cmd: Cmd, name: str) -> tuple[Counter[str], Counter[str], int]:
    """Sample with py-spy; (own samples per function, inclusive samples, total samples)."""
    raw = OUT / f"pyspy_{name}.txt"
    run(cmd, [str(VENV_BIN / "py-spy"), "record", "--rate", "400", "--format", "raw",
              "--output", str(raw), "--"])
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    return own, inclusive, total


def _short(frame: str) -> str:
    """'func (path/to/site-packages/pkg/mod.py:12)' -> 'func (pkg/mod.py)'."""
    match = re.match(r"(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame
    func, path = match.groups()
    for marker in ("site-packages/", "/lib/python3.11/", str(REPO_DIR) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


def importtime(cmd: Cmd, name: str) -> tuple[list[tuple[str, int]], int]:
    """``-X importtime``: (microseconds per top-level package, summed self time), total.
    ``cmd.argv`` is what follows the interpreter: a script and its arguments, or -c CODE."""
    log = OUT / f"importtime_{name}.txt"
    argv = [str(CM_BIN / "python"), "-X", "importtime", *cmd.argv]
    run(Cmd(argv, cmd.cwd, cmd.env), stderr_to=log)
    per: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            per[match[4].split(".")[0]] += int(match[1])
    return per.most_common(), sum(per.values())


def standalone_imports(cwd: Path) -> list[tuple[str, str]]:
    """Wall-clock of ``python -c 'import X'`` minus ``python -c pass``, round-robin: the
    price of each dependency for a short command, attributed without importtime's nesting."""
    codes = ["pass", "import click", "import yaml", "import jinja2", "import pydantic",
             "import psycopg", "import cryomigrate.cli", "import cryomigrate.config",
             "import cryomigrate.api", "import cryomigrate.backends.postgres"]
    env = base_env()
    samples: dict[str, list[float]] = {c: [] for c in codes}
    for _ in range(7):
        for code in codes:
            start = time.perf_counter()
            subprocess.run([str(CM_BIN / "python"), "-c", code], cwd=cwd, env=env, check=True,
                           timeout=60, stdin=subprocess.DEVNULL)
            samples[code].append(time.perf_counter() - start)
    base = statistics.median(samples["pass"])
    rows = [(f"{base * 1000:7.1f} ms", "python -c pass (absolute)")]
    rows += [(f"+{(statistics.median(samples[c]) - base) * 1000:6.1f} ms", c)
             for c in codes[1:]]
    return rows


def table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="number of migrations")
    args = parser.parse_args()
    n: int = args.n
    OUT.mkdir(parents=True, exist_ok=True)
    if not (VENV_BIN / "py-spy").exists():
        error = pip_install(PROFILERS)
        if error:
            print(f"py-spy could not be installed: {error}", file=sys.stderr)
    error = install_cryomigrate(REPO_DIR)
    if error:
        print(f"cryomigrate could not be installed: {error}", file=sys.stderr)
        return 2
    server = Server()
    server.drop_leftovers()
    work = Path(tempfile.mkdtemp(prefix="cm_bench_prof_"))
    cm, floor = TOOLS["cryomigrate-sql"], TOOLS["floor"]
    cm.layout(work / "cm", n)
    floor.layout(work / "floor", n)
    script = str(CM_SCRIPT)
    applied_db = ""
    try:
        print(f"# cryomigrate profile, N={n} .sql migrations, PostgreSQL "
              f"{server.sql('SHOW server_version')}\n")

        # 1. wall, client CPU, round trips and transactions: cryomigrate vs the psql floor
        rows = [("run", "wall s", "client CPU s", "CPU ms/mig", "sendto", "sendto/mig",
                 "recvfrom/mig", "commits/mig", "openat")]
        for label, tool, root in (("psql floor", floor, work / "floor"),
                                  ("cryomigrate", cm, work / "cm")):
            db = f"{PREFIX}prof_{label.split()[0]}"
            server.create(db)
            cmd = tool.apply(root, server.urls(db))
            wall, cpu, _ = run(cmd)
            server.drop(db)
            server.create(db)  # the counts below are of this second run, on a fresh database
            before = xact_commits(server, db)
            counts = strace_counts(cmd, f"cold_{label.split()[0]}")
            commits = xact_commits(server, db) - before
            rows.append((f"{label} cold apply", f"{wall:.2f}", f"{cpu:.2f}",
                         f"{cpu / n * 1000:.2f}", str(counts.get("sendto", 0)),
                         f"{counts.get('sendto', 0) / n:.1f}",
                         f"{counts.get('recvfrom', 0) / n:.1f}", f"{commits / n:.2f}",
                         str(counts.get("openat", 0))))
            if label == "cryomigrate":
                urls = server.urls(db)
                for what, c in (("no-op apply", cm.apply(root, urls)),
                                ("status", cm.status(root, urls) if cm.status else None)):
                    assert c is not None
                    wall, cpu, _ = run(c)
                    counts = strace_counts(c, what.replace(" ", "_"))
                    rows.append((f"cryomigrate {what}", f"{wall:.2f}", f"{cpu:.2f}", "-",
                                 str(counts.get("sendto", 0)), "-", "-", "-",
                                 str(counts.get("openat", 0))))
                applied_db = db
            else:
                server.drop(db)
        print("## wall, CPU and round trips (strace -f -c; commits from pg_stat_database)")
        print(table(rows))

        # 2. Python time: cProfile and py-spy of the cold apply, cProfile of the no-op runs
        print("\n## cProfile, cold apply (full text in bench/.peers/profiles/)")
        db = f"{PREFIX}prof_cprofile"
        server.create(db)
        text = cprofile(cm.apply(work / "cm", server.urls(db)), "cold")
        print("\n".join(text.splitlines()[:45]))
        server.drop(db)

        if (VENV_BIN / "py-spy").exists():
            db = f"{PREFIX}prof_pyspy"
            server.create(db)
            own, inclusive, total = pyspy(cm.apply(work / "cm", server.urls(db)), "cold")
            server.drop(db)
            print(f"\n## py-spy, cold apply ({total} samples; idle waits on the server "
                  "included)")
            print("own time:")
            print(table([(f"{c / total:6.1%}", f) for f, c in own.most_common(15)]))
            print("inclusive time:")
            print(table([(f"{c / total:6.1%}", f) for f, c in inclusive.most_common(30)]))

        urls = server.urls(applied_db)
        for what, c in (("noop_apply", cm.apply(work / "cm", urls)),
                        ("status", cm.status(work / "cm", urls) if cm.status else None)):
            assert c is not None
            text = cprofile(c, what, top=25)
            print(f"\n## cProfile, {what} with {n} applied")
            print("\n".join(text.splitlines()[:60]))

        # 3. imports: --help and status
        for what, c in (("help", Cmd([script, "--help"], work)),
                        ("status", cm.status(work / "cm", urls) if cm.status else None)):
            assert c is not None
            per, total_us = importtime(c, what)
            print(f"\n## -X importtime, cryomigrate {what}: {total_us / 1000:.0f} ms of imports")
            print(table([(f"{us / 1000:7.1f} ms", pkg) for pkg, us in per[:14]]))
        per, total_us = importtime(Cmd(["-c", "pass"], work), "python_pass")
        print(f"\n## -X importtime, python -c pass: {total_us / 1000:.0f} ms of imports")
        print(table([(f"{us / 1000:7.1f} ms", pkg) for pkg, us in per[:8]]))

        # 4. what each dependency costs on its own, in a fresh interpreter (wall, median)
        print("\n## import cost in a fresh interpreter, over `python -c pass` (median of 7)")
        print(table(standalone_imports(work)))
    finally:
        server.drop_leftovers()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nraw profiles: {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
