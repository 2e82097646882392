"""The benchmark's printed report: every measurement as text, then the two Markdown tables
(loopback and at distance) that the README's Performance section shows.

The Markdown is generated, never typed, so the README's numbers are always one run's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    Target,
    find,
    median_of,
)

# The README's typography, spelled as escapes so no look-alike characters hide in the code.
DASH, TIMES, MINUS = "\u2013", "\u00d7", "\u2212"

# README column order and headings: the floor, ours, then the peers.
COLUMNS = {"floor": "floor (psql)", "cryomigrate-sql": "cryomigrate .sql",
           "cryomigrate-py": "cryomigrate .py", "dbmate": "dbmate", "alembic": "Alembic",
           "yoyo": "yoyo", "supabase": "Supabase CLI"}


def _fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "-" if x is None else format(x, spec) + suffix


def display_order(results: list[Measurement]) -> Callable[[Measurement], Any]:
    """Rows grouped by measurement (loopback PostgreSQL by N, then at distance, SQLite,
    --help), tools in the order they ran, so each group reads as one comparison."""
    backends = {PG: 0, FAR: 1, SQLITE: 2, NONE: 3}
    metrics = {COLD: 0, NOOP: 1, STATUS: 2, HELP: 3}
    tools: dict[str, int] = {"floor": 0, "python -c pass": 1}
    for m in results:
        tools.setdefault(m.tool, len(tools))
    return lambda m: (backends[m.backend], m.n, metrics[m.metric], tools[m.tool])


def render(results: list[Measurement], extra: dict[str, dict[str, float | None]],
           rounds: dict[str, dict[str, float | None]], targets: list[Target], facts: dict[str, Any],
           plan: Plan) -> str:
    small, large = plan.sizes[0], plan.sizes[-1]
    lines = [f"cryomigrate benchmark  {facts['date']}",
             "machine: " + ", ".join(f"{k}={v}" for k, v in facts["machine"].items()),
             "versions: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()),
             f"runs: median of {facts['repeat']} (at distance: {facts['far_repeat']}; "
             f"warm-up {facts['warmup']} for no-op commands), wall-clock per process"]
    if plan.far_n is not None:
        lines.append(f"at distance: {FAR}, {plan.rtt * 1000:g} ms RTT nominal; the proxy "
                     f"held chunks {facts['proxy']['delay_applied_mean'] * 1000:.2f} ms on "
                     f"average (max {facts['proxy']['delay_applied_max'] * 1000:.2f} ms)")
    lines.append("")
    header = (f"{'measurement':<40} {'tool':<24} {'median':>9} {'min':>8} {'max':>8} "
              f"{'x floor':>8} {'x fastest peer':>14}  note")
    lines += [header, "-" * len(header)]
    previous = None
    for m in sorted(results, key=display_order(results)):
        label = f"{m.metric}" + (f" N={m.n}" if m.n else "") + (
            f" [{m.backend}]" if m.backend != NONE else "")
        if previous is not None and previous != m.key:
            lines.append("")
        previous = m.key
        if m.median is None:
            lines.append(f"{label:<40} {m.tool:<24} {'FAILED':>9} {'':>8} {'':>8} {'':>8} "
                         f"{'':>14}  {m.error}")
            continue
        lines.append(
            f"{label:<40} {m.tool:<24} {m.median:>8.3f}s {min(m.samples):>7.3f}s "
            f"{max(m.samples):>7.3f}s {_fmt(m.ratio_floor, '.2f', 'x'):>8} "
            f"{_fmt(m.ratio_fastest_peer, '.2f', 'x'):>14}")
    lines += ["", f"derived, loopback cold apply: overhead over floor at N={large} = "
                  f"(tool - floor) / N; growth = N={large} / N={small}",
              f"{'tool':<24} {'ms/migration':>13} {'growth':>8}"]
    for tool, values in extra.items():
        lines.append(f"{tool:<24} {_fmt(values['overhead_ms_per_migration'], '.3f'):>13} "
                     f"{_fmt(values['growth'], '.2f', 'x'):>8}")
    if plan.far_n is not None:
        lines += ["", f"derived, at {plan.rtt * 1000:g} ms RTT, round trips per migration: "
                      f"timed = (cold - no-op) / (N={plan.far_n} x RTT); counted = (cold - "
                      "no-op) / N of the waits the proxy counted",
                  f"{'tool':<24} {'timed':>13} {'counted':>8}"]
        lines += [f"{tool:<24} {_fmt(v['timed'], '.2f'):>13} {_fmt(v['counted'], '.2f'):>8}"
                  for tool, v in rounds.items()]
    lines += ["", "targets"]
    lines += [f"  [{t.verdict:<4}] {t.tool:<16} {t.text:<62} {t.detail}" for t in targets]
    lines += ["", "floor: PostgreSQL rows use psql (-X -q, one session; cold apply feeds "
                  "BEGIN; \\i file; COMMIT; per file; no-op/status rows: connect + SELECT 1); "
                  "--help rows use python -c pass"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- Markdown


def _cell(results: list[Measurement], metric: str, backend: str, n: int, tool: str) -> str:
    m = find(results, metric, backend, n, tool)
    if m is None:
        return ""
    return "failed" if m.median is None else f"{m.median:.3f}"


def _row(label: str, cells: list[str]) -> str:
    return "| " + " | ".join([label, *cells]) + " |"


def _head(columns: list[str]) -> list[str]:
    return [_row("measurement", [COLUMNS[c] for c in columns]),
            "|" + "---|" * (len(columns) + 1)]


def _pair(results: list[Measurement], metric: str, backend: str, sizes: list[int],
          tool: str) -> str:
    cells = [_cell(results, metric, backend, n, tool) for n in sizes]
    return "" if not any(cells) else " / ".join(c or "-" for c in cells)


def markdown(results: list[Measurement], extra: dict[str, dict[str, float | None]],
             rounds: dict[str, dict[str, float | None]], facts: dict[str, Any],
             plan: Plan) -> str:
    """Both tables, ready to paste into README's Performance section."""
    measured = {m.tool for m in results}
    columns = [c for c in COLUMNS if c in measured]
    tables = []
    if plan.loopback:
        tables.append(_loopback(results, extra, facts, plan, columns))
    if plan.far_n is not None:
        tables.append(_distance(results, rounds, facts, plan, columns))
    return "\n\n".join(tables)


def _loopback(results: list[Measurement], extra: dict[str, dict[str, float | None]],
              facts: dict[str, Any], plan: Plan, columns: list[str]) -> str:
    sizes, large = plan.sizes, plan.sizes[-1]
    slash = " / ".join(f"N={n}" for n in sizes)
    lines = [f"Loopback: PostgreSQL {facts['versions']['postgresql']} on 127.0.0.1, "
             f"median of {facts['repeat']}, seconds.", "", *_head(columns)]
    for n in sizes:
        lines.append(_row(f"cold apply N={n}", [_cell(results, COLD, PG, n, c)
                                                for c in columns]))
    lines.append(_row(f"overhead over the floor at N={large}, ms per migration",
                      [DASH if c == "floor" else
                       _fmt(extra.get(c, {}).get("overhead_ms_per_migration"), ".2f")
                       for c in columns]))
    if len(sizes) > 1:
        lines.append(_row(f"growth, cold apply N={large} / N={sizes[0]}",
                          [DASH if c == "floor" else
                           _fmt(extra.get(c, {}).get("growth"), ".2f", TIMES)
                           for c in columns]))
    for metric, name in ((NOOP, "no-op apply"), (STATUS, "status")):
        probe = _pair(results, metric, PG, sizes, PROBE) or "-"
        lines.append(_row(f"{name}, {slash} applied (psycopg probe: {probe})",
                          [_pair(results, metric, PG, sizes, c) for c in columns]))
    sqlite = [f"{_cell(results, NOOP, SQLITE, large, c)} / "
              f"{_cell(results, STATUS, SQLITE, large, c)}"
              if find(results, NOOP, SQLITE, large, c) else DASH for c in columns]
    if any(s != DASH for s in sqlite):
        lines.append(_row(f"SQLite: no-op apply / status, N={large}", sqlite))
    py = median_of(results, HELP, NONE, 0, "python -c pass")
    if py is not None:
        helps = [_cell(results, HELP, NONE, 0, "cryomigrate" if c == "cryomigrate-sql" else c)
                 if c not in ("floor", "cryomigrate-py") else "" for c in columns]
        lines.append(_row(f"`--help` (`python -c pass`: {py:.3f})", helps))
    return "\n".join(lines)


def _distance(results: list[Measurement], rounds: dict[str, dict[str, float | None]],
              facts: dict[str, Any], plan: Plan, columns: list[str]) -> str:
    assert plan.far_n is not None
    n, rtt_ms = plan.far_n, plan.rtt * 1000
    lines = [f"At distance: the same server behind bench/delayproxy.py, {rtt_ms / 2:g} ms "
             f"each way ({rtt_ms:g} ms RTT), N={n}, median of {facts['far_repeat']}, "
             "seconds.", "", *_head(columns)]
    lines.append(_row(f"cold apply N={n}", [_cell(results, COLD, FAR, n, c) for c in columns]))
    for metric, name in ((NOOP, "no-op apply"), (STATUS, "status")):
        probe = _cell(results, metric, FAR, n, PROBE) or "-"
        lines.append(_row(f"{name}, N={n} applied (psycopg probe: {probe})",
                          [_cell(results, metric, FAR, n, c) for c in columns]))
    lines.append(_row(f"round trips per migration, (cold {MINUS} no-op) / (N {TIMES} RTT)",
                      [_fmt(rounds.get(c, {}).get("timed"), ".2f") for c in columns]))
    lines.append(_row("round trips per migration, counted by the proxy",
                      [_fmt(rounds.get(c, {}).get("counted"), ".2f") for c in columns]))
    return "\n".join(lines)
