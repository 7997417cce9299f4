"""planctond's fleet benchmark: one command, results in bench/RESULTS.md ("## Fleet").

    python3 -m bench.fleet [--quick]        (or `make bench-fleet`)

Simulated hosts (bench/fleet_sim.py: the daemon's own series code fed made-up status reports
and events) write into one real influxd 1.6 and one real VictoriaMetrics, started for the run in
a temporary directory. Measured in one run: the write load of one host (exact, from its
stream), backfill ingest of a day for the smaller fleet and of the last hours for the larger one
(server CPU, memory, disk), every dashboard query of contrib/grafana timed at both sizes, and
the larger fleet writing at its real pace for a while (server CPU, write latency). influxd gets
the InfluxDB dashboard's fleet rollups as a site admin installs them (bench/fleet_rollups.py):
the continuous queries, a backfill of the history after each write of it (timed), the fleet
panels' rollup targets against their raw twins on the larger fleet, and the continuous queries
running live while the larger fleet writes (their run times from influxd's log, their minutes
checked against the raw points). Only the larger fleet's last hours are written, so its whole
day is timed only for the queries whose cost does not grow with the unwritten hosts (rollups,
one host picked); the others are estimated. About 27 minutes on 2 cores; --quick is a 4-minute
try-out that leaves RESULTS.md alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import fleet_ingest as ingest
from bench import fleet_live, fleet_report
from bench import fleet_queries as queries
from bench import fleet_rollups as rollups
from bench import fleet_servers as servers
from bench.fleet_sim import host_name, profile
from bench.procstat import status_kib

REPO = Path(__file__).resolve().parents[1]
ONE_HOST = "node-0001"  # the host picked in the drill-down panels
NICE_INTERVALS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600)
PANEL_PIXELS = 1440  # Grafana's interval: the range over a ~1,500-px-wide panel's points
LIVE_DATABASE = "fleet_live"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def grafana_interval(span: float) -> float:
    """The interval Grafana picks for `span` seconds on a wide panel (24 h: 60 s)."""
    raw = span / PANEL_PIXELS
    return float(next((n for n in NICE_INTERVALS if n >= raw), NICE_INTERVALS[-1]))


def window(end: float, hours: float) -> queries.Window:
    span = hours * 3600.0
    return queries.Window(end - span, end, grafana_interval(span))


@dataclass
class Stage:
    """One server after one backfill: what it cost and what it holds."""

    server: str
    hosts: int
    hours: float
    write: ingest.WriteResult
    idle: ingest.ServerUse
    idle_s: float
    disk: int
    series: int


@dataclass
class Run:
    args: argparse.Namespace
    began: float
    start: float = 0.0
    end: float = 0.0
    gen_s: float = 0.0
    base: list[ingest.HostData] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    vm_rules: ingest.WriteResult | None = None  # a sample, with the relabelling rules
    names: servers.NameCheck | None = None
    names_rules: servers.NameCheck | None = None
    source: str = ""
    timed: dict[str, list[queries.Timed]] = field(default_factory=dict)  # by "hosts/hours"
    live: fleet_live.LiveResult | None = None
    versions: dict[str, str] = field(default_factory=dict)
    load_before: str = ""
    influx_empty_kib: int = 0  # influxd's VmRSS with an empty database
    fills: list[rollups.Fill] = field(default_factory=list)  # the rollups' backfills
    cq: rollups.LiveCheck | None = None  # the continuous queries while the fleet wrote live
    agree: rollups.Agreement | None = None  # the fleet panels' two targets, larger fleet


def _stage(
    run: Run,
    server: servers.FleetInflux | servers.FleetVictoria,
    hosts: int,
    hours: float,
    work: list[ingest.Job],
) -> Stage:
    args = run.args
    port = server.http_port if isinstance(server, servers.FleetInflux) else server.port
    log(f"{server.name}: writing {sum(j.batch.lines for j in work):,} lines ({hosts} hosts)")
    result = ingest.write(port, server.write_path(), work, threads=args.threads, pid=server.pid)
    log(
        f"{server.name}: {result.lines:,} lines in {result.seconds:.0f} s "
        f"({result.lines_per_s:,.0f}/s, server CPU {result.use.cpu_s:.0f} s, "
        f"{len(result.errors)} errors, {result.retries} retries)"
    )
    if isinstance(server, servers.FleetVictoria):
        server.flush()
    quiet = ingest.idle(server.pid, args.idle)
    disk = sum(ingest.disk_bytes(d) for d in server.data_dirs())
    if isinstance(server, servers.FleetInflux):
        rows = server.query("SHOW SERIES EXACT CARDINALITY", servers.DATABASE)
        series = sum(int(r.get("count", 0)) for r in rows)
    else:
        series = server.series()
    stage = Stage(server.name, hosts, hours, result, quiet, args.idle, disk, series)
    run.stages.append(stage)
    return stage


def _time(
    run: Run,
    source: queries.Source,
    influx: servers.FleetInflux | None,
    vm: servers.FleetVictoria | None,
    hosts: int,
    hours: float,
    only: Callable[[queries.Case, str], bool] | None = None,
) -> None:
    w = window(run.end, hours)
    some = "" if only is None else " (those that do not read every host's raw points)"
    log(f"timing the dashboards' queries{some}: {hosts} hosts, last {hours:g} h, {w.interval:g} s")

    def labels(label: str, selector: str, win: queries.Window) -> servers.Timing:
        assert vm is not None
        return servers.prom_labels(vm.url, label, selector, start=win.start, end=win.end)

    timed = queries.time_cases(
        source,
        influx=(lambda q: servers.influx_query(influx.url, servers.DATABASE, q))
        if influx
        else None,
        prom_range=(
            lambda q, win: servers.prom_query(
                vm.url, q, start=win.start, end=win.end, step=win.interval
            )
        )
        if vm
        else None,
        prom_instant=(lambda q, at: servers.prom_instant(vm.url, q, at)) if vm else None,
        prom_labels=labels if vm else None,
        window=w,
        one_host=ONE_HOST,
        runs=run.args.runs,
        slow=run.args.slow,
        only=only,
    )
    run.timed[f"{hosts}/{hours:g}"] = timed
    worst = max(timed, key=lambda t: t.median, default=None)
    if worst is not None:
        log(f"  {len(timed)} queries; slowest median {worst.median:.2f} s: {worst.case.label}")


def _fill(run: Run, influx: servers.FleetInflux, hosts: int, start: float) -> None:
    """The rollups over [start, run.end), as an admin backfills them after the history landed."""
    log(f"rollups: backfill of {hosts} hosts, {(run.end - start) / 3600:g} h")
    fill = rollups.backfill(
        influx.url, servers.DATABASE, start=start, end=run.end, hosts=hosts, pid=influx.pid
    )
    log(f"  {fill.statements} statements in {fill.seconds:.0f} s, {len(fill.errors)} errors")
    run.fills.append(fill)


def _agree(run: Run, influx: servers.FleetInflux) -> None:
    """The dashboard's two targets of each fleet panel on the larger fleet's backfilled
    rollups: the rollup for All against the raw points of every host picked by name."""
    hosts = [host_name(i) for i in range(run.args.large)]
    log(f"rollups: each fleet panel's two targets, {len(hosts)} hosts picked")
    run.agree = rollups.agree(influx.url, servers.DATABASE, hosts, end=run.end)
    log(f"  {sum(run.agree.compared.values())} figures, {len(run.agree.unequal)} differ")


def _live(run: Run, influx: servers.FleetInflux) -> None:
    """The larger fleet at its pace, the rollups' continuous queries running meanwhile; then
    the minutes they wrote against the raw points."""
    args = run.args
    log(f"live: {args.large} hosts at their own tick for {args.live:g} s, continuous queries on")
    influx.query(f"CREATE DATABASE {LIVE_DATABASE}")
    for problem in rollups.install(influx.url, LIVE_DATABASE):
        log(f"  continuous queries: {problem}")
    run.live = fleet_live.run(
        influx.url, LIVE_DATABASE, hosts=args.large, seconds=args.live, pid=influx.pid
    )
    lat = sorted(run.live.latencies)
    log(
        f"  {run.live.requests} requests, server CPU {run.live.server_cpu_pct:.1f} %, "
        f"p50 {lat[len(lat) // 2] * 1000:.1f} ms"
        if lat
        else "  no request"
    )
    ended = time.time()
    began = ended - run.live.seconds
    rollups.wait_for_cq_round()  # their run at the next minute covers the last whole minutes
    run.cq = rollups.compare_live(
        lambda q: influx.query(q, LIVE_DATABASE),
        start=(began // 60 + 1) * 60,
        end=ended // 60 * 60,
        hosts=args.large,
    )
    run.cq.runs = rollups.runs_from_log(influx.log_path, LIVE_DATABASE)
    log(f"  rollup minutes equal to the raw points: {run.cq.equal} of {run.cq.minutes}")


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--small", type=int, default=100, help="the smaller fleet, hosts (100)")
    ap.add_argument("--large", type=int, default=1000, help="the larger fleet (1000): a multiple")
    ap.add_argument("--hours", type=float, default=24.0, help="history of the smaller fleet (24)")
    ap.add_argument(
        "--large-hours",
        type=float,
        default=2.0,
        help="history of the larger fleet's other hosts: the last N hours (2)",
    )
    ap.add_argument("--live", type=float, default=180.0, help="real-pace phase, seconds (180)")
    ap.add_argument("--threads", type=int, default=4, help="backfill HTTP connections (4)")
    ap.add_argument("--procs", type=int, default=2, help="processes simulating hosts (2)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each query (3)")
    ap.add_argument("--idle", type=float, default=10.0, help="idle window after a backfill (10)")
    ap.add_argument(
        "--slow",
        type=float,
        default=3.0,
        help="a query slower than this (s) on its first run is not repeated (3)",
    )
    ap.add_argument("--quick", action="store_true", help="20 hosts, 1 h: a try-out (no RESULTS.md)")
    ap.add_argument(
        "--results", help="the file to update (default bench/RESULTS.md; none in --quick)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    if args.quick:
        args.small, args.large, args.hours, args.large_hours = 10, 20, 1.0, 0.5
        args.live, args.idle, args.runs = 130.0, 2.0, 2
    results = Path(args.results) if args.results else None
    if results is None and not args.quick:
        results = REPO / "bench" / "RESULTS.md"
    if args.large % args.small or args.large_hours > args.hours:
        ap.error("--large must be a multiple of --small, --large-hours at most --hours")
    run = Run(args, time.monotonic(), versions=servers.versions(), load_before=_load())
    work = Path(tempfile.mkdtemp(prefix="pfleet-", dir="/tmp"))
    influx = servers.FleetInflux(work / "influxdb")
    vm = servers.FleetVictoria(work / "victoria-metrics")
    try:
        source = queries.load()
        run.source = source.name
        log(f"queries: {source.name} ({len(source.cases)})")
        run.end = float(int(time.time() // 60 * 60) - 60)
        run.start = run.end - args.hours * 3600.0
        cut = run.end - args.large_hours * 3600.0
        log(f"simulating {args.small} hosts over {args.hours:g} h ({args.procs} processes)")
        t0 = time.monotonic()
        run.base = ingest.generate(
            [profile(i) for i in range(args.small)],
            start=run.start,
            end=run.end,
            cut=cut,
            directory=work / "streams",
            procs=args.procs,
            gzip_hosts=min(args.small, 3),  # one of each kind: see fleet_sim.profile
        )
        run.gen_s = time.monotonic() - t0
        log(f"  {sum(h.lines for h in run.base):,} lines in {run.gen_s:.0f} s")
        fmt = "node-{:04d}"
        copy0 = ingest.jobs(run.base, [(0, fmt)])
        copies = [(c, fmt) for c in range(1, args.large // args.small)]
        rest = ingest.jobs(run.base, copies, since=cut)

        influx.start()
        influx.query(f"CREATE DATABASE {servers.DATABASE}")
        time.sleep(2)
        run.influx_empty_kib = status_kib(influx.pid, "VmRSS")
        for problem in rollups.install(influx.url, servers.DATABASE):
            log(f"continuous queries: {problem}")
        _stage(run, influx, args.small, args.hours, copy0)
        _fill(run, influx, args.small, run.start)
        vm.start()
        _stage(run, vm, args.small, args.hours, copy0)
        run.names = servers.check_names(vm)
        log(f"VictoriaMetrics names: {len(run.names.missing)} of the exporter's missing")
        _time(run, source, influx, vm, args.small, args.hours)
        _time(run, source, influx, vm, args.small, args.large_hours)

        _stage(run, influx, args.large, args.large_hours, rest)
        _fill(run, influx, args.large, cut)
        _agree(run, influx)
        _stage(run, vm, args.large, args.large_hours, rest)
        _time(run, source, influx, vm, args.large, args.large_hours)
        if args.large_hours < args.hours:
            # The whole day at the larger fleet, where a query's cost does not grow with the
            # hosts whose early hours were not written: rollups (a day of them was made, from
            # the smaller fleet's hosts and then the larger one's) and one host picked.
            _time(
                run,
                source,
                influx,
                None,
                args.large,
                args.hours,
                lambda case, hosts: not case.reads_every_host(hosts),
            )

        run.vm_rules, run.names_rules = _vm_with_rules(
            work, [j for j in copy0 if j.batch.first >= run.end - 3600]
        )
        vm.stop()
        _live(run, influx)
        machine = fleet_report.machine(time.monotonic() - run.began)
        text = fleet_report.render(run, machine)
        print(text)
        if results is not None:
            fleet_report.write_section(results, text)
            fleet_report.write_plot(results.parent / fleet_report.PLOT_NAME, run)
            log(f"wrote {results}")
        return 0
    finally:
        influx.stop()
        vm.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _vm_with_rules(
    work: Path, sample: list[ingest.Job]
) -> tuple[ingest.WriteResult, servers.NameCheck]:
    """The last hour of the smaller fleet into a VictoriaMetrics with the relabelling rules:
    what they cost per line, and the names they give."""
    vm = servers.FleetVictoria(work / "victoria-metrics-rules", rules=True)
    vm.start()
    try:
        result = ingest.write(vm.port, vm.write_path(), sample, threads=4, pid=vm.pid)
        vm.flush()
        return result, servers.check_names(vm)
    finally:
        vm.stop()


if __name__ == "__main__":
    sys.exit(main())
