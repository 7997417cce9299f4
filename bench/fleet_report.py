"""The "## Fleet" section of bench/RESULTS.md, from one run of bench/fleet.py. Other benchmarks own
the file's other sections; only this one is replaced."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench import fleet_rollups, report
from bench.fleet_plot import PLOT_NAME, write_plot
from bench.fleet_queries import ALL_HOSTS as ALL
from bench.fleet_queries import INFLUXDB, PROMETHEUS, Case
from bench.fleet_sim import TICK
from bench.fleet_tables import larger_fleets, method, query_table, rows
from bench.report import percentile

if TYPE_CHECKING:
    from bench.fleet import Run, Stage

SECTION = "## Fleet"
AIM_BYTES_PER_S = 1000.0
AIM_QUERY_S = 1.0
__all__ = ["PLOT_NAME", "machine", "render", "write_plot", "write_section"]


@dataclass(frozen=True)
class Machine:
    date: str
    cpu: str
    cores: int
    ram_gib: float
    kernel: str
    python: str
    load: str
    duration_s: float


def machine(duration_s: float) -> Machine:
    cpu = "?"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal:"))
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    return Machine(
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        cpu,
        os.cpu_count() or 0,
        kib / 1024**2,
        platform.release(),
        platform.python_version(),
        load,
        duration_s,
    )


def _ok(good: bool) -> str:
    return "met" if good else "**missed**"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 10e6 else f"{n / 1e6:,.1f} MB"


def _kib_mb(kib: int) -> str:
    return _mb(kib * 1024)


def _load_rows(run: Run) -> list[str]:
    seconds = run.end - run.start
    rows = []

    def row(name: str, hosts: list) -> str:  # type: ignore[type-arg]
        n = len(hosts)
        pts = sum(h.lines for h in hosts) / n / seconds
        per_tick = sum(h.lines for h in hosts) / n / (seconds / TICK)
        b = sum(h.bytes for h in hosts) / n / seconds
        gz = [h for h in hosts if h.gzip_bytes]
        gzs = f"{sum(h.gzip_bytes for h in gz) / len(gz) / seconds:,.0f}" if gz else "-"
        req = sum(h.requests for h in hosts) / n / seconds
        worst = max(h.bytes for h in hosts) / seconds
        return (
            f"| {name} | {n} | {pts:.2f} | {per_tick:.1f} | {b:,.0f} (max {worst:,.0f}) | {gzs} "
            f"| {req:.3f} | < {AIM_BYTES_PER_S:,.0f} B/s: {_ok(worst < AIM_BYTES_PER_S)} |"
        )

    def pools(h: object) -> int:
        profile = getattr(h, "profile", None)
        return len(profile.pools) if profile is not None else 0

    def legacy(h: object) -> bool:
        profile = getattr(h, "profile", None)
        return bool(profile is not None and profile.legacy)

    one = [h for h in run.base if pools(h) == 1 and not legacy(h)]
    three = [h for h in run.base if pools(h) == 3 and not legacy(h)]
    old = [h for h in run.base if legacy(h)]
    for name, group in (
        ("1 pool", one),
        ("3 pools", three),
        ("1 pool + Plancton 0.6 series", old),
        ("all simulated hosts", run.base),
    ):
        if group:
            rows.append(row(name, group))
    return rows


def _stage_rows(stages: list[Stage]) -> list[str]:
    rows = []
    for s in stages:
        w = s.write
        what = (
            f"{s.hosts} hosts, {s.hours:g} h"
            if s is stages[0] or s.hours == 24
            else (f"to {s.hosts} hosts: +{s.hosts - stages[0].hosts} hosts x last {s.hours:g} h")
        )
        per_line = w.use.cpu_s / w.lines * 1e6 if w.lines else 0.0
        errors = f"; **{len(w.errors)} errors**: `{w.errors[0][:120]}`" if w.errors else ""
        rows.append(
            f"| {s.server} | {what} | {w.lines:,} lines, {_mb(w.bytes)} | {w.seconds:.0f} s "
            f"| {w.lines_per_s:,.0f} | {w.use.cpu_s:.0f} s ({per_line:.1f} µs/line, "
            f"{100 * w.use.cpu_s / max(w.seconds, 1e-9):.0f} % of a core) "
            f"| {_kib_mb(w.use.hwm_kib)} | {_kib_mb(s.idle.rss_kib)} "
            f"| {100 * s.idle.cpu_s / s.idle_s:.0f} % | {_mb(s.disk)} | {s.series:,}"
            f"{'; ' + str(w.retries) + ' retries' if w.retries else ''}{errors} |"
        )
    return rows


def _aims(run: Run) -> list[str]:
    """The query aim, kind by kind of query, from the 1,000-host day (estimated where only its
    last hours were written)."""
    a = run.args
    groups: tuple[tuple[str, Callable[[Case, str], bool]], ...] = (
        ("fleet overview, variables, annotations", lambda c, h: not c.drill_down and h == ALL),
        ("raw twins with one host picked", lambda c, h: c.picked and h != ALL),
        ("drill-down with one host", lambda c, h: c.drill_down and h != ALL),
        (f"drill-down with all {a.large} hosts", lambda c, h: c.drill_down and h == ALL),
    )
    out = []
    for kind, name in ((INFLUXDB, "InfluxDB (InfluxQL)"), (PROMETHEUS, "PromQL")):
        parts = []
        for label, member in groups:
            picked = [
                r for r in rows(run, kind) if r.small_day and member(r.small_day.case, r.hosts)
            ]
            if not picked:
                continue
            late = [r for r in picked if r.estimate is None or r.estimate > AIM_QUERY_S]
            known = [r.estimate for r in picked if r.estimate is not None]
            slowest = f", slowest {max(known):.2f} s" if known else ""
            verdict = "met" if not late else f"**{len(late)} over**"
            parts.append(f"{label}: {verdict} ({len(picked)} queries{slowest})")
        if parts:
            out.append(f"- {name}: " + "; ".join(parts) + ".")
    if not out:
        return []
    return [
        f"**The query aim** (every dashboard query under {AIM_QUERY_S:g} s at {a.large} hosts "
        f"over {a.hours:g} h; the estimate column of the tables below):",
        "",
        *out,
        "",
    ]


def render(run: Run, m: Machine) -> str:
    args = run.args
    out = [SECTION, ""]
    versions = ", ".join(f"{k} {v}" for k, v in run.versions.items())
    out.append(
        f"`make bench-fleet` (`python3 -m bench.fleet`) on {m.date}: {m.cpu}, {m.cores} CPUs, "
        f"{m.ram_gib:.0f} GiB RAM, kernel {m.kernel}, Python {m.python}; {versions} (Debian's "
        f"packages, their defaults). Load average before / after: {run.load_before} / "
        f"{m.load} (a VM shared with other sessions: their load slows everything here). The "
        f"whole run took {m.duration_s / 60:.1f} min. Queries timed: {run.source}."
    )
    out += ["", f"![query times per panel]({PLOT_NAME})", ""]
    out += _aims(run)
    out += [
        "### Write load of one host",
        "",
        f"At the default tick ({TICK:g} s), over the simulated {args.hours:g} h, exact "
        "(every request of the host's stream counted). Bytes are line protocol as the "
        "daemon's writer sends it: uncompressed (the writer sets no Content-Encoding); the "
        "gzip column is what the same requests would weigh gzip'ed, one by one (counted for "
        "node-0000..0002, one host of each kind). Each request also carries its HTTP headers, "
        "on a connection of its own.",
        "",
        "| host | hosts | points/s | lines per tick | bytes/s sent | bytes/s gzip'ed | "
        "requests/s | aim |",
        "|---|---|---|---|---|---|---|---|",
        *_load_rows(run),
        "",
        "### Backfill into one server",
        "",
        f"As fast as the server takes it: batches of 5,000 lines, {args.threads} HTTP "
        "connections, timestamps in the past. CPU and memory from /proc of the server "
        f"(VmHWM: its peak since start); then {args.idle:g} s left idle (its CPU then: "
        "compactions). Disk: the data directories after that.",
        "",
        "| server | written | data | wall | lines/s | server CPU | peak RSS (VmHWM) | RSS idle "
        "after | CPU idle after | disk | series |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *_stage_rows(run.stages),
    ]
    out += _rules(run)
    out += _live(run)
    out += fleet_rollups.render(run.fills, run.cq, run.agree)
    out += query_table(run, INFLUXDB, "InfluxQL against influxd (`/query`)")
    out += query_table(run, PROMETHEUS, "PromQL against VictoriaMetrics (`/api/v1/query_range`)")
    out += larger_fleets(run)
    out += method(run)
    return "\n".join(out) + "\n"


def _rules(run: Run) -> list[str]:
    p, names = run.vm_rules, run.names_rules
    plain = next((s for s in run.stages if s.server == "victoria-metrics"), None)
    if p is None or not p.lines or names is None or plain is None:
        return []
    w = plain.write
    missing = ", ".join(f"`{n}`" for n in names.missing) or "none"
    return [
        "",
        f"VictoriaMetrics with the two relabelling rules described under Method (a separate "
        f"server fed the last hour of the {run.args.small} hosts, {p.lines:,} lines): "
        f"{p.use.cpu_s / p.lines * 1e6:.1f} µs of server CPU per line, against "
        f"{w.use.cpu_s / max(1, w.lines) * 1e6:.1f} µs without them (the backfill above); "
        f"with them, the exporter's names missing: {missing}.",
    ]


def _live(run: Run) -> list[str]:
    live = run.live
    if live is None or not live.latencies:
        return []
    lat = live.latencies

    def ms(q: float) -> str:
        return f"{percentile(lat, q) * 1000:.1f} ms"

    errors = f", **{len(live.errors)} failed**: `{live.errors[0][:150]}`" if live.errors else ""
    return [
        "",
        "### The larger fleet at its real pace",
        "",
        f"{live.hosts} hosts, each writing its own requests at its own tick (phases spread "
        f"over the {TICK:g} s) through the daemon's `InfluxV1Writer` (a fresh connection per "
        f"request), for {live.seconds:.0f} s, into the influxd that holds the backfill:",
        "",
        "| measure | result |",
        "|---|---|",
        f"| requests | {live.requests:,} ({live.requests_per_s:.1f}/s){errors} |",
        f"| lines, bytes | {live.lines / live.seconds:,.0f} lines/s, "
        f"{live.bytes / live.seconds / 1e3:,.1f} kB/s |",
        f"| influxd CPU | {live.server_cpu_pct:.1f} % of one core |",
        f"| influxd RSS | {_kib_mb(live.use.rss_kib)} at the end |",
        f"| write latency (request sent to reply) | p50 {ms(50)}, p95 {ms(95)}, max "
        f"{max(lat) * 1000:.0f} ms |",
        f"| the simulator keeping pace (a tick's start behind its due time) | p95 "
        f"{percentile(live.lags, 95) * 1000:.0f} ms; its own CPU {live.client_cpu_s:.0f} s |",
    ]


def write_section(path: Path, text: str) -> None:
    """Replace the Fleet section of RESULTS.md (or append it), keeping every other section."""
    report.write_section(path, text, SECTION)
