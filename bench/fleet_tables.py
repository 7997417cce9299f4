"""The fleet report's query tables, its "larger fleets" reckoning and its method notes: figures
computed from one run's data, nothing typed in by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.fleet_queries import ALL_HOSTS, INFLUXDB, PROMETHEUS, Timed
from bench.fleet_servers import QUERY_LIMIT, TIMED_OUT, VM_FLAGS, string_names
from bench.fleet_sim import OWNER_BURSTS_PER_DAY, TICK

if TYPE_CHECKING:
    from bench.fleet import Run, Stage

AIM_QUERY_S = 1.0
Key = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Row:
    """One query at every size: measured where there is data, the day at the larger fleet
    estimated when only its last hours were written."""

    key: Key
    label: str
    hosts: str
    small_day: Timed | None
    small_recent: Timed | None
    large_recent: Timed | None
    estimate: float | None
    large_day: Timed | None = None  # the day measured at the larger fleet, when it could be

    @property
    def over_aim(self) -> bool:
        """The query misses the aim at the larger fleet over the whole day (or timed out)."""
        day = self.large_day
        if day is not None:
            return day.error == TIMED_OUT or (not day.error and day.median > AIM_QUERY_S)
        return (self.estimate is not None and self.estimate > AIM_QUERY_S) or any(
            x is not None and x.error == TIMED_OUT for x in (self.small_day, self.large_recent)
        )


def rows(run: Run, kind: str) -> list[Row]:
    a = run.args
    day = {t.key: t for t in run.timed.get(f"{a.small}/{a.hours:g}", [])}
    recent = {t.key: t for t in run.timed.get(f"{a.small}/{a.large_hours:g}", [])}
    large = {t.key: t for t in run.timed.get(f"{a.large}/{a.large_hours:g}", [])}
    large_day = {t.key: t for t in run.timed.get(f"{a.large}/{a.hours:g}", [])}
    out = []
    for key, t in day.items():
        if key[0] != kind:
            continue
        s, r, big = t, recent.get(key), large.get(key)
        whole = large_day.get(key) if a.large_hours < a.hours else None
        estimate = None
        if whole is not None:  # measured, not estimated: its cost does not grow with the hosts
            estimate = None if whole.error else whole.median
            out.append(Row(key, t.case.label, t.hosts, s, r, big, estimate, whole))
            continue
        if any(x is not None and x.error for x in (s, r, big)):
            pass  # a timeout or a failure: no figure to build on
        elif big is not None and r is not None and a.large_hours < a.hours:
            # The hours not written at the larger fleet cost what they cost at the smaller one,
            # times the hosts the query reads (all of them, or the one picked).
            factor = a.large / a.small if t.hosts == ALL_HOSTS else 1.0
            estimate = big.median + factor * max(0.0, s.median - r.median)
        elif big is not None:
            estimate = big.median
        out.append(Row(key, t.case.label, t.hosts, s, r, big, estimate))
    return out


def _cell(t: Timed | None, both: bool = True) -> str:
    if t is None:
        return "-"
    if t.error == TIMED_OUT:
        return f"**> {QUERY_LIMIT:g}** (timeout)"
    if t.error:
        return f"error: `{t.error[:80]}`"
    text = f"{t.median:.3f}" + (f" / {t.max:.3f}" if both else "")
    return f"**{text}**" if t.median > AIM_QUERY_S else text


def query_table(run: Run, kind: str, title: str) -> list[str]:
    a = run.args
    table = rows(run, kind)
    if not table:
        return []
    same = a.large_hours >= a.hours
    est = f"{a.large} hosts, {a.hours:g} h" + ("" if same else " (estimate)")
    out = [
        "",
        f"### Dashboard queries: {title}",
        "",
        f"Seconds, median / max of {a.runs} runs (one run when the first took over "
        f"{a.slow:g} s); **bold** over {AIM_QUERY_S:g} s"
        + (f"; influxd ends a query at {QUERY_LIMIT:g} s (timeout)" if kind == INFLUXDB else "")
        + ". Hosts: all, or the one host a drill-down panel shows. Rows: series / values the "
        f"query returned at {a.large} hosts."
        + (
            " A fleet panel's first target reads the fleet rollup (it answers for all hosts); "
            'its "raw, hosts picked" twin answers only when hosts are picked, so it is timed '
            "with one host, and with all hosts, where it reads nothing (what Grafana spends "
            "on it then)."
            if any(r.small_day and r.small_day.case.picked for r in table)
            else ""
        )
        + (
            f" In the {est} column, (measured): timed over the whole {a.hours:g} h at "
            f"{a.large} hosts, for a query whose cost does not grow with the hosts whose early "
            "hours were not written (a rollup target, a raw twin with all hosts, one host "
            "picked); the others are estimated."
            if any(r.large_day is not None for r in table)
            else ""
        ),
        "",
        f"| panel (query) | hosts | {a.small} hosts, {a.hours:g} h | {a.small} hosts, last "
        f"{a.large_hours:g} h | {a.large} hosts, last {a.large_hours:g} h | {est} | rows |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        e = "-" if r.estimate is None else f"{r.estimate:.3f}"
        if any(t is not None and t.error == TIMED_OUT for t in (r.small_day, r.large_recent)):
            e = f"**> {QUERY_LIMIT:g}**"
        if r.estimate is not None and r.estimate > AIM_QUERY_S:
            e = f"**{e}**"
        if r.large_day is not None:
            e = f"{_cell(r.large_day, False)} (measured)"
        big = r.large_recent
        shape = f"{big.series} / {big.values}" if big is not None and not big.error else "-"
        out.append(
            f"| {r.label} | {'all' if r.hosts == ALL_HOSTS else r.hosts} | {_cell(r.small_day)} "
            f"| {_cell(r.small_recent, False)} | {_cell(r.large_recent)} | {e} | {shape} |"
        )

    def slow(t: Timed | None) -> bool:
        return t is not None and (t.error == TIMED_OUT or (not t.error and t.median > AIM_QUERY_S))

    slow_small = [r.label for r in table if slow(r.small_day)]
    slow_large = [r.label for r in table if slow(r.large_recent)]
    slow_est = [
        r.label
        for r in table
        if r.over_aim or (r.large_day is None and (slow(r.small_day) or slow(r.large_recent)))
    ]
    failed = [
        r.label
        for r in table
        if any(t and t.error and t.error != TIMED_OUT for t in (r.small_day, r.large_recent))
    ]
    empty = [  # a target for picked hosts is empty for all hosts by design: not counted
        r.label
        for r in table
        if r.large_recent
        and not r.large_recent.error
        and r.large_recent.values == 0
        and not (r.large_recent.case.picked and r.hosts == ALL_HOSTS)
    ]

    def say(names: list[str], listed: bool = True) -> str:
        names = sorted(set(names))
        return f"{len(names)}" + (f" ({', '.join(names)})" if names and listed else "")

    out += [
        "",
        f"Over {AIM_QUERY_S:g} s (median; a query with all hosts and with one counts once): "
        f"{say(slow_small, False)} of {len({r.label for r in table})} at {a.small} hosts over "
        f"{a.hours:g} h; {say(slow_large, False)} at {a.large} hosts over the last "
        f"{a.large_hours:g} h; {say(slow_est)} at {a.large} hosts over {a.hours:g} h"
        + ("" if same else " (estimated)")
        + f". Failed: {say(failed)}. Empty at {a.large} hosts (nothing to show in the "
        f"simulated data, e.g. no host is sick): {say(empty)}.",
    ]
    return out


def _stage(run: Run, server: str, hosts: int) -> Stage | None:
    return next((s for s in run.stages if s.server == server and s.hosts == hosts), None)


def _over(rows_: list[Row], pick: str) -> tuple[int, int]:
    """(queries over the aim, all-host queries) for one column: "day", "recent" or "estimate"."""
    fleet = [r for r in rows_ if r.hosts == ALL_HOSTS]
    count = 0
    for r in fleet:
        t = r.small_day if pick == "day" else r.large_recent
        if pick == "estimate":
            slow = r.over_aim
        else:
            slow = t is not None and (t.error == TIMED_OUT or t.median > AIM_QUERY_S)
        count += slow
    return count, len(fleet)


def _queries_bullet(run: Run) -> str:
    a = run.args
    influx, prom = rows(run, INFLUXDB), rows(run, PROMETHEUS)
    parts = []
    for name, table in (("InfluxQL (influxd)", influx), ("PromQL (VictoriaMetrics)", prom)):
        if not table:
            continue
        day, _ = _over(table, "day")
        recent, n = _over(table, "recent")
        est, _ = _over(table, "estimate")
        parts.append(
            f"{name}: {day} of its {n} all-host queries over {AIM_QUERY_S:g} s at {a.small} "
            f"hosts over {a.hours:g} h, {recent} at {a.large} hosts over the last "
            f"{a.large_hours:g} h, {est} at {a.large} hosts over {a.hours:g} h (estimated)"
        )
    drill = sorted(
        {
            r.label
            for r in influx
            if r.hosts == ALL_HOSTS
            and r.small_day is not None
            and r.small_day.case.drill_down
            and (r.estimate is None or r.estimate > AIM_QUERY_S)
        }
    )
    sent = sorted(
        r.large_recent.values / r.large_recent.median
        for r in influx
        if r.hosts == ALL_HOSTS
        and r.large_recent is not None
        and not r.large_recent.error
        and r.large_recent.values >= 100_000
    )
    rate = (
        f", which influxd sent at {sent[len(sent) // 2]:,.0f} values a second here" if sent else ""
    )
    return (
        "- Queries: a panel computed from the raw series reads every host's points over its "
        "range, so its time grows with hosts x hours. " + "; ".join(parts) + ". The InfluxDB "
        "dashboard's fleet panels read the per-minute fleet rollups of continuous queries "
        "(below) for all hosts: a day of them is 1,440 points a field whatever the fleet's "
        "size. What still grows with the fleet on InfluxDB is the drill-down row with all "
        f"hosts picked ({len(drill)} queries over {AIM_QUERY_S:g} s at {a.large} hosts: "
        f"a line per host and field, so its answer itself is millions of values{rate}); the "
        "dashboard keeps that row collapsed, for picking a few hosts first."
    )


def larger_fleets(run: Run) -> list[str]:
    a = run.args
    small, large = _stage(run, "influxd", a.small), _stage(run, "influxd", a.large)
    vm_large = _stage(run, "victoria-metrics", a.large)
    if small is None or large is None:
        return []
    seconds = run.end - run.start
    per_host_lines = sum(h.lines for h in run.base) / len(run.base) / seconds
    us_line = small.write.use.cpu_s / max(1, small.write.lines) * 1e6
    series_host = large.series / a.large
    empty = run.influx_empty_kib

    def per_series(stage: Stage) -> float:
        """Resident memory above the empty server's, per series held: an upper bound of what
        a series costs (the write cache's recent points count in it too)."""
        return max(0, stage.idle.rss_kib - empty) / max(1, stage.series)

    def grown(hosts: int) -> float:
        return float(empty + hosts * series_host * per_series(large)) / 1024**2

    out = ["", "### How far one node goes, and what takes over", ""]
    live = run.live
    if live is not None and live.seconds > 0:
        per_1000 = live.server_cpu_pct / live.hosts * 1000
        scaled = "" if live.hosts == 1000 else f" ({per_1000:.1f} % per 1,000 hosts)"
        out.append(
            f"- Writes: a host sends {per_host_lines:.2f} lines/s; influxd spent "
            f"{live.server_cpu_pct:.1f} % of a core on {live.hosts} hosts writing live"
            f"{scaled}, and {us_line:.1f} µs of CPU per line in bulk. By CPU alone one core "
            f"takes about {100 / max(per_1000, 1e-9) * 1000:,.0f} live hosts: writing is not "
            "what limits a node first."
        )
    out.append(
        f"- Memory: {series_host:.0f} series per host ({large.series:,} at {a.large} hosts). "
        f"influxd's resident memory after the idle window, above the empty server's "
        f"({empty * 1024 / 1e6:,.0f} MB): {per_series(small):.1f} KiB per series at {a.small} "
        f"hosts, {per_series(large):.1f} KiB at {a.large} (the inmem index keeps every series "
        "key in memory; recent points wait in the write cache; Go returns freed memory to the "
        f"kernel lazily; the smaller fleet's day of points weighs on fewer series). At the "
        f"{a.large}-host figure, a node holding 10,000 hosts needs about {grown(10_000):,.1f} GiB, 100,000 hosts about {grown(100_000):,.0f} GiB."
    )
    out.append(_queries_bullet(run))
    if vm_large is not None:
        w = vm_large.write
        out.append(
            f"- The same line protocol into VictoriaMetrics (its defaults): "
            f"{w.lines_per_s:,.0f} lines/s, "
            f"{w.use.cpu_s / max(1, w.lines) * 1e6:.1f} µs per line, "
            f"{vm_large.idle.rss_kib * 1024 / 1e6:,.0f} MB resident and "
            f"{vm_large.disk / 1e6:,.0f} MB on disk at {a.large} hosts (influxd: "
            f"{large.idle.rss_kib * 1024 / 1e6:,.0f} MB, {large.disk / 1e6:,.0f} MB)."
        )
    out += [
        "",
        "What takes over past one node, for the same daemon and the same write path:",
        "",
        "- **VictoriaMetrics cluster**: vminsert takes InfluxDB line protocol on "
        "`/insert/<account>/influx/write`; the daemon's writer keeps a URL's path as a prefix, "
        "so `http://vminsert:8480/insert/0/influx#fleet` is a target as it is. The single-node "
        "ingest above is that path working against the server here (and the Prometheus "
        "dashboard's queries answered from it); vmstorage nodes add capacity, vmselect answers "
        "the same PromQL.",
        "- **InfluxDB Enterprise** (clustered 1.x): the same `/write` and InfluxQL, so the "
        "InfluxDB dashboard and the daemon's config stay as they are. **InfluxDB 3** takes line "
        "protocol on its 1.x- and 2.x-compatible write endpoints, which the daemon's writers "
        "speak. Neither is available here to measure.",
        "- **Prometheus**: hosts serve `/metrics`; one Prometheus per site scrapes its hosts, "
        "and a central one either federates the sites' aggregated series (`/federate`) or "
        "receives them by remote write (VictoriaMetrics takes remote write too). Not measured "
        "here: volunteer hosts behind NAT are often not reachable for scraping, which is why "
        "the push path (line protocol) is the one measured.",
    ]
    return out


def method(run: Run) -> list[str]:
    a = run.args
    lines_day = sum(h.lines for h in run.base) / len(run.base)
    small = _stage(run, "influxd", a.small)
    vms = _stage(run, "victoria-metrics", a.small)
    seconds = run.end - run.start
    event_req = sum(h.requests for h in run.base) / len(run.base) - seconds / TICK
    out = ["", "### Method", ""]
    out.append(
        f"- **Hosts**: `bench/fleet_sim.py`. Each host is the daemon's own `SeriesRecorder` "
        "(pools' CPUs set as from its config) fed a `StatusReport` every tick and the events "
        "a supervisor would emit, encoded by `planctond.monitoring.lineproto`, exactly as "
        "its InfluxDB backend does; hosts written Plancton's way also get Plancton 0.6's "
        "series from `legacy_series`. Every fifth host runs 3 pools, every tenth (of the "
        "others) has a Plancton-style target; 4-32 CPUs. Pilots live 10 min-14 h "
        f"(log-uniform, stopped at the 12 h TTL) and are replaced at once; the owner needs "
        f"most of the CPUs about {OWNER_BURSTS_PER_DAY:g} times a day for 2-60 min "
        "(frozen after grace_kill, owner-yield event, stopped 30 s later); a config reload "
        f"about every other day. On average {event_req:.0f} event requests per host-day "
        f"beside the {seconds / TICK:,.0f} status requests. Each host is warmed up 6 h first "
        "(its counters), unsent."
    )
    if small is not None and vms is not None:
        full = lines_day * a.large * (a.hours / (seconds / 3600.0))
        t_inf = full / max(small.write.lines_per_s, 1.0) / 60
        t_vm = full / max(vms.write.lines_per_s, 1.0) / 60
        out.append(
            f"- **What was written**: {a.small} hosts x {a.hours:g} h at the real tick. For "
            f"{a.large} hosts, the other {a.large - a.small} are the same {a.small} simulated "
            "days with the `host` (and `hostname`) tag renamed (node-0137 is node-0037's day), "
            f"written for the last {a.large_hours:g} h only: {a.large} hosts x {a.hours:g} h "
            f"would be {full / 1e6:,.0f} M lines, at this run's rates about {t_inf:.0f} min of "
            f"writing into influxd and {t_vm:.0f} more into VictoriaMetrics, past the ~25 "
            f"minutes the whole benchmark may take on 2 cores. `--large-hours {a.hours:g}` "
            f'writes it all. The query tables\' "{a.large} hosts, {a.hours:g} h" column is '
            "then an estimate, where not marked measured: the time measured at "
            f"{a.large} hosts over the last {a.large_hours:g} h, plus what the "
            f"other hours cost at {a.small} hosts (24 h minus last hours) times "
            f"{a.large // a.small} for all-host queries (once for one host). Grafana's interval "
            "gives the same number of points per series in both windows, so the difference is "
            "the extra raw points read (for queries on `$__interval`; a fixed `time(1m)` draws "
            "12 times more points over 24 h, so its estimate counts those too)."
        )
    out.append(
        f"- **Queries**: {run.source}; rendered by `tests/support/dashboards.py` as Grafana "
        "renders them (`$host` = All is `.*`, `$pool` = All), over a range that ends where "
        "the data ends, with Grafana's interval for a ~1,500-px panel (60 s for 24 h). "
        "InfluxQL: `GET /query?epoch=ms`; PromQL: `/api/v1/query_range` (step = interval), "
        "`/api/v1/query` for targets set to instant, the label-values API for `label_values` "
        "variables; VictoriaMetrics with `nocache=1`, so repeats are not cache hits. Each "
        "time is the whole reply read, client on the same machine. `process_resident_"
        "memory_bytes` (in the Pilot memory panel) comes from a Prometheus scrape, not from "
        "line protocol, so it is empty against VictoriaMetrics fed this way. The InfluxDB "
        "fleet panels' rollup targets read what the backfill after each write made (above)."
    )
    names = run.names
    if names is not None:
        missing = ", ".join(f"`{n}`" for n in names.missing) or "none"
        extra = ", ".join(f"`{n}`" for n in names.extra) or "none"
        out.append(
            f"- **VictoriaMetrics names**: its `/write` makes `<measurement>_<field>` "
            f"({', '.join(VM_FLAGS)}, the default). Checked against the Prometheus exporter's "
            f"{names.expected} names: missing {missing}; beyond them: {extra}. The exporter names "
            "a field called `value` by its measurement alone; `-influxSkipSingleField` is not "
            "that rule (it would also make `planctond_events_total`, a line with the single "
            "field `total`, `planctond_events`). Two ingest relabelling rules "
            "(`-relabelConfig`) make the names the exporter's: `(.+)_value` -> `$1`, and "
            f"drop the string fields, which 1.79 stores as samples of value 0 "
            f"({', '.join(string_names())}); their cost is measured above. The dashboards "
            "use neither `_value` name except `planctond_build_info` in a target that needs "
            "scrape labels anyway, so the timings do not depend on the rules."
        )
    out.append(
        "- **Live**: the larger fleet, hosts started from a 30-min warm-up, each ticking "
        "every 10 s at its own phase; a scheduler thread hands each due tick to a pool of "
        "32 threads that send the host's requests one by one with a new `InfluxV1Writer` "
        "connection each, into a separate database of the influxd holding the backfill, "
        "with the rollups' continuous queries installed on it first."
    )
    return out
