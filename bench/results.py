"""What a benchmark run measured, the numbers derived from it, and the targets judged on it.

Kept apart from ``run.py`` (which only runs processes and collects samples) so that the
arithmetic behind every PASS/FAIL line can be read, and checked, in one place.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from tools import OURS, PEER, TOOLS, Tool

# Backends: loopback PostgreSQL, the same server behind the delaying proxy, SQLite, none.
PG, FAR, SQLITE, NONE = "postgresql", "postgresql via proxy", "sqlite", "-"
COLD, NOOP, STATUS, HELP = "cold apply", "no-op apply", "status", "--help"
# `python -c "import psycopg; psycopg.connect(URL).execute('select 1')"` in cryomigrate's
# venv: what any Python tool on psycopg pays to start, connect and ask one question.
PROBE = "psycopg probe"
PEERS = ("alembic", "yoyo", "dbmate", "supabase")


@dataclass
class Measurement:
    """Wall-clock samples of one (metric, backend, N, tool); ``error`` if it could not run."""

    metric: str
    backend: str
    n: int
    tool: str
    samples: list[float] = field(default_factory=list)
    round_trips: list[int] = field(default_factory=list)  # counted by the proxy, per run
    error: str | None = None
    median: float | None = None
    ratio_floor: float | None = None
    ratio_fastest_peer: float | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.metric, self.backend, self.n)

    def add(self, seconds: float, round_trips: int | None) -> None:
        self.samples.append(seconds)
        if round_trips is not None:
            self.round_trips.append(round_trips)

    def finish(self) -> None:
        if self.samples and self.error is None:
            self.median = statistics.median(self.samples)


def find(results: list[Measurement], metric: str, backend: str, n: int,
         tool: str) -> Measurement | None:
    return next((m for m in results if m.key == (metric, backend, n) and m.tool == tool), None)


def median_of(results: list[Measurement], metric: str, backend: str, n: int,
              tool: str) -> float | None:
    m = find(results, metric, backend, n, tool)
    return None if m is None else m.median


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


def derived(results: list[Measurement], tools: list[Tool], small: int,
            large: int) -> dict[str, dict[str, float | None]]:
    """Loopback: per-migration overhead over the floor at the large N, and growth
    large/small."""
    floor = median_of(results, COLD, PG, large, "floor")
    out: dict[str, dict[str, float | None]] = {}
    for tool in tools:
        hi = median_of(results, COLD, PG, large, tool.name)
        lo = median_of(results, COLD, PG, small, tool.name)
        overhead = (hi - floor) / large * 1000 if hi is not None and floor is not None else None
        growth = hi / lo if hi is not None and lo and small != large else None
        out[tool.name] = {"overhead_ms_per_migration": overhead, "growth": growth}
    return out


def round_trips(results: list[Measurement], tools: list[Tool], n: int,
                rtt: float) -> dict[str, dict[str, float | None]]:
    """At distance, per migration: ``timed`` = (cold - no-op) / (N x RTT), the issue's
    measure; ``counted`` = the same difference of the waits the proxy counted, divided by N,
    which load on the machine cannot blur. Subtracting the no-op run removes start-up,
    connection set-up and reading the history, leaving what the migrations wait for."""
    out: dict[str, dict[str, float | None]] = {}
    for tool in tools:
        cold = find(results, COLD, FAR, n, tool.name)
        noop = find(results, NOOP, FAR, n, tool.name)
        timed = counted = None
        if cold and noop and cold.median is not None and noop.median is not None:
            timed = (cold.median - noop.median) / (n * rtt)
            if cold.round_trips and noop.round_trips:
                counted = (statistics.median(cold.round_trips)
                           - statistics.median(noop.round_trips)) / n
        out[tool.name] = {"timed": timed, "counted": counted}
    return out


@dataclass
class Target:
    tool: str
    text: str
    verdict: str  # PASS, FAIL or n/a
    detail: str


@dataclass
class Plan:
    """The sizes a run used, so targets name the rows they judge."""

    sizes: list[int]
    far_n: int | None  # None: the scenario at distance was not run
    rtt: float
    loopback: bool = True  # False: the loopback PostgreSQL rows were not run


class Targets:
    """The product's performance targets (bench/README.md lists them), judged on one run."""

    def __init__(self, results: list[Measurement], plan: Plan,
                 extra: dict[str, dict[str, float | None]],
                 rounds: dict[str, dict[str, float | None]]) -> None:
        self.results, self.plan, self.extra, self.rounds = results, plan, extra, rounds
        self.out: list[Target] = []

    def add(self, tool: str, text: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        self.out.append(Target(tool, text, verdict, detail))

    def judge(self, tools: list[Tool]) -> list[Target]:
        for tool in (t for t in tools if t.role == OURS):
            self.loopback(tool.name)
            self.no_op(tool.name)
        if "cryomigrate-sql" in {t.name for t in tools}:
            self.at_distance("cryomigrate-sql")
        if any(t.role == OURS for t in tools):
            self.start_up()
        return self.out

    def faster(self, name: str, backend: str, n: int, peer: str, label: str) -> None:
        ours = find(self.results, COLD, backend, n, name)
        other = find(self.results, COLD, backend, n, peer)
        text = f"{label}: cold apply N={n} faster than {peer}"
        if ours is None or ours.median is None:
            self.add(name, text, None, "ours not measured")
        elif other is None or other.median is None:
            why = "not selected" if other is None else f"{peer} failed: {other.error}"
            self.add(name, text, None, why[:120])
        else:
            self.add(name, text, ours.median < other.median,
                     f"{ours.median:.3f}s vs {other.median:.3f}s")

    def loopback(self, name: str) -> None:
        small, large = self.plan.sizes[0], self.plan.sizes[-1]
        overhead = self.extra.get(name, {}).get("overhead_ms_per_migration")
        self.add(name, f"loopback: overhead over the floor at N={large} <= 0.5 ms/migration",
                 None if overhead is None else overhead <= 0.5,
                 "n/a" if overhead is None else f"{overhead:.2f} ms/migration")
        for peer in ("alembic", "yoyo", "supabase"):
            self.faster(name, PG, small, peer, "loopback")
        growth = self.extra.get(name, {}).get("growth")
        self.add(name, f"loopback: cold apply N={large} <= 5.5x N={small}",
                 None if growth is None else growth <= 5.5,
                 "n/a" if growth is None else f"{growth:.2f}x")

    def no_op(self, name: str) -> None:
        """No-op apply and status: on PostgreSQL against the psycopg probe of the same row
        group (measured interleaved with them), on SQLite against a fixed limit."""
        for metric in (NOOP, STATUS):
            for n in self.plan.sizes:
                m = find(self.results, metric, PG, n, name)
                probe = median_of(self.results, metric, PG, n, PROBE)
                text = f"{metric} N={n} on postgresql <= psycopg probe + 40 ms"
                if m is None or m.median is None or probe is None:
                    why = ("not measured" if m is None else m.error if m.median is None
                           else "probe not measured")
                    self.add(name, text, None, str(why))
                else:
                    self.add(name, text, m.median <= probe + 0.040,
                             f"{m.median:.3f}s vs probe {probe:.3f}s")
        for metric in (NOOP, STATUS):
            for n in self.plan.sizes:
                m = find(self.results, metric, SQLITE, n, name)
                text = f"{metric} N={n} on sqlite <= 0.10 s"
                if m is None or m.median is None:
                    self.add(name, text, None, "not measured" if m is None else str(m.error))
                else:
                    self.add(name, text, m.median <= 0.10, f"{m.median:.3f}s")

    def at_distance(self, name: str) -> None:
        n, rtt_ms = self.plan.far_n, self.plan.rtt * 1000
        if n is None:
            self.add(name, f"at {rtt_ms:g} ms RTT: round trips per migration <= 1.15", None,
                     "scenario at distance not run")
            return
        label = f"at {rtt_ms:g} ms RTT"
        rounds = self.rounds.get(name, {})
        timed, counted = rounds.get("timed"), rounds.get("counted")
        counted_text = "" if counted is None else f" (counted by the proxy: {counted:.2f})"
        self.add(name, f"{label}: round trips per migration <= 1.15",
                 None if timed is None else timed <= 1.15,
                 "not measured" if timed is None else f"{timed:.2f}{counted_text}")
        for peer in PEERS:
            self.faster(name, FAR, n, peer, label)

    def start_up(self) -> None:
        py = median_of(self.results, HELP, NONE, 0, "python -c pass")
        for label in ("cryomigrate", "python -m cryomigrate"):
            h = median_of(self.results, HELP, NONE, 0, label)
            text = f"{label} --help <= 2 x (python -c pass) + 60 ms"
            if h is None or py is None:
                self.add("cryomigrate", text, None, "not measured")
            else:
                limit = 2 * py + 0.060
                self.add("cryomigrate", text, h <= limit,
                         f"{h * 1000:.0f} ms vs limit {limit * 1000:.0f} ms")
