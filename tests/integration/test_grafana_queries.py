"""Every query of the Grafana dashboards in contrib/grafana/ (each panel's targets, the template
variables and the annotations), rendered as Grafana renders it for the last 15 minutes, runs
without an error against the real server it is written for and returns data:

- InfluxQL against a real InfluxDB 1.6, written by a real daemon running real busybox pilots;
- PromQL against a real Prometheus 2.42 scraping that daemon's /metrics.

Beside the daemon, simulated hosts made by the real `SeriesRecorder` fed synthetic status reports
and events (the daemon here has no owner to give way to): `sim-node` whose owner makes the
pilots give way (owner-yield events, frozen and stopped pilots, lost work) and that ends sick
(Docker down, a refused config, a late tick), and `sim-silent` that stops reporting. In InfluxDB
they hold 15 minutes of history (backdated points); for Prometheus they are exporters scraped
live, `sim-silent`'s closed midway. So every panel, the sick-hosts table included, has rows.

InfluxDB gets the fleet rollups as a site admin installs them (contrib/grafana/README.md): the
continuous queries (sent twice: the second time changes nothing), then the one-time backfill of
the history. A fleet panel's rollup target must answer for "All" alone and its raw twin for
picked hosts alone, with the same figures: every minute of the rollup, those the backfill made
and the first one influxd's continuous queries made on their own from the daemon's points,
equals the raw twin's over every host. That minute is waited for (1 to 2 minutes more): the
continuous queries run on the server's clock, at each minute's end and again a minute later.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from planctond.monitoring.lineproto import encode
from planctond.monitoring.point import Point
from planctond.monitoring.prometheus import PrometheusExporter
from planctond.monitoring.series import SeriesRecorder
from planctond.policy.model import Reason, RunState
from planctond.supervisor.api import PoolStatus, StatusReport
from planctond.supervisor.events import Event, EventKind
from tests.conftest import DaemonFactory
from tests.integration.test_daemon_pilots import pilots, pool_config
from tests.integration.test_monitoring_influxdb import influx  # noqa: F401 (the fixture)
from tests.support import dashboards as D
from tests.support.influxdb_server import InfluxDBServer
from tests.support.prometheus_server import PrometheusServer, prometheus_server
from tests.support.server_process import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker]

HOST, SIM, SILENT = "test-node", "sim-node", "sim-silent"
DB = "fleet"
WINDOW = 15 * 60.0  # the dashboards' time range here: the last 15 minutes
INTERVAL = 15.0  # $__interval Grafana would pick for it on a ~1000 px wide panel
FEED_SECONDS = 20.0  # the simulated hosts' live feed to Prometheus
SILENT_AFTER = 6.0  # seconds of it before sim-silent's exporter goes away
DEADLINE = 60.0  # for every query to have data (they usually do at the first round)
CQ_SLACK = 30.0  # past the minute for influxd's continuous queries (they run within ~1 s)
FILES = {p.stem: p for p in D.dashboard_files()}


def _report(now: float, started: float, *, sick: bool, pilots_cpu: float) -> StatusReport:
    pools = (
        PoolStatus("default", running=2, frozen=1, allowed=4, backoff_until=None, note=""),
        PoolStatus("gpu", running=1, frozen=0, allowed=2, backoff_until=None, note=""),
    )
    return StatusReport(
        state=RunState.ACTIVE,
        docker_ok=not sick,
        docker_error="Docker went away (simulated)" if sick else "",
        pools=pools,
        pilots=4,
        capacity_cpus=1.5,
        owner_cpu=2.0,
        host_cpu=3.5,
        ncpus=8,
        started=started,
        version="0.1.0",
        config_path="/etc/plancton/config.yaml",
        last_error="cannot reach Docker (simulated)" if sick else "",
        last_tick=now - 90.0 if sick else now - 1.0,  # a late tick: over a minute
        pilots_cpu=pilots_cpu,
        pilots_memory=(300 + 10 * (int(now) % 7)) << 20,
    )


class SimHost:
    """A host that is not there: the real SeriesRecorder, fed what a supervisor would say."""

    def __init__(self, name: str, started: float) -> None:
        self.recorder = SeriesRecorder(name)
        self.recorder.set_pool_cpus({"default": 1.0, "gpu": 2.0})
        self.started = started
        self.ticks = 0
        self.refused = False

    def tick(self, now: float, *, sick: bool = False) -> list[Point]:
        """One tick's status, after this tick's events: a pilot started, and every other tick
        the owner takes the CPU back (a yield: pilots frozen and stopped, work lost)."""
        i, self.ticks = self.ticks, self.ticks + 1
        points: list[Point] = []

        def happen(kind: EventKind, **kw: Any) -> None:
            message = f"{kind.value} (simulated)"
            points.extend(self.recorder.on_event(Event(kind=kind, message=message, time=now, **kw)))

        pilot = f"plancton-default-{i}"
        happen(EventKind.PILOT_STARTED, pilot=pilot, pool="default", reason="spawned")
        if i % 2 == 0:
            extra = {"latency_seconds": f"{0.5 + i % 9}", "pilot_cpu_seconds": "0.8", "pilots": "2"}
            happen(EventKind.OWNER_YIELD, reason=Reason.OWNER_CPU.value, extra=extra)
            happen(EventKind.PILOT_FROZEN, pilot=pilot, pool="default", reason="owner-cpu")
            lost = {"cpu_seconds": "42.5", "lifetime_seconds": "61.0"}
            happen(
                EventKind.PILOT_STOPPED, pilot=pilot, pool="gpu", reason="owner-memory", extra=lost
            )
        if sick and not self.refused:
            self.refused = True
            happen(EventKind.CONFIG_REJECTED, reason="pools.default.cpus: not a number (simulated)")
        used = 0.5 + 0.25 * (i % 4)
        return points + self.recorder.status(
            _report(now, self.started, sick=sick, pilots_cpu=used), now
        )


# --- the servers' answers ------------------------------------------------------------------------
def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url}: HTTP {exc.code}: {exc.read()!r}") from None


def influx_series(server: InfluxDBServer, q: str) -> list[dict[str, Any]]:
    """The series an InfluxQL query returns; a query error fails the test at once."""
    form = urllib.parse.urlencode({"q": q, "db": DB, "epoch": "ms"})
    document = _get(f"{server.url}/query?{form}")
    series: list[dict[str, Any]] = []
    for result in document["results"]:
        assert "error" not in result, f"{q}\n-> {result['error']}"
        series += result.get("series", [])
    return series


def influx_has_values(series: Sequence[dict[str, Any]]) -> bool:
    for s in series:
        data = [i for i, c in enumerate(s["columns"]) if c != "time"]
        if any(row[i] is not None for row in s["values"] for i in data):
            return True
    return False


def prometheus_values(server: PrometheusServer, path: str, params: dict[str, str]) -> list[float]:
    """Every number of a query's answer (NaN left out); an error fails the test at once."""
    document = _get(f"{server.url}{path}?{urllib.parse.urlencode(params)}")
    assert document.get("status") == "success", (params, document)
    data = document["data"]
    if path.startswith("/api/v1/label/"):
        return [1.0 for _ in data]
    rows = data["result"]
    raw = [v for r in rows for _, v in r.get("values", [r.get("value", [0, "NaN"])])]
    return [float(v) for v in raw if not math.isnan(float(v))]


@dataclass
class Round:
    """One pass over every query: which ones returned nothing."""

    ran: int = 0
    empty: list[str] | None = None


def values_of(result: Sequence[dict[str, Any]], column: str = "value") -> list[str]:
    return sorted({str(row[s["columns"].index(column)]) for s in result for row in s["values"]})


def influx_round(server: InfluxDBServer, end: float) -> Round:
    """Every target with data, but a fleet panel's rollup target (A) only for "All" and its
    raw twin (B, `D.PICKED_HOSTS`) only for picked hosts: each must be empty the other time."""
    queries = D.panel_queries(FILES["planctond-influxdb"])
    span = {"start_s": end - WINDOW, "end_s": end, "interval_s": INTERVAL}
    chosen: dict[str, str | Sequence[str]] = {}
    for name in ("host", "pool"):  # in dependency order, each rendered with those before it
        (q,) = [q for q in queries if q.panel == f"variable:{name}"]
        chosen[name] = values_of(
            influx_series(server, D.render_influxql(q.expr, **span, variables=chosen))
        )
    assert {HOST, SIM, SILENT} <= set(chosen["host"]), chosen
    twins = {q.panel for q in queries if D.PICKED_HOSTS in q.expr}
    out = Round(empty=[])
    for selection in (chosen, {"host": D.ALL, "pool": D.ALL}):
        everyone = selection["host"] == D.ALL
        for q in queries:
            step = max(INTERVAL, D.min_interval_s(FILES["planctond-influxdb"], q.panel))
            rendered = D.render_influxql(
                q.expr, **{**span, "interval_s": step}, variables=selection
            )
            out.ran += 1
            answers = q.panel not in twins or (q.ref == "A") == everyone
            if influx_has_values(influx_series(server, rendered)) != answers:
                assert out.empty is not None
                out.empty.append(
                    f"{q.panel} {q.ref} ({selection}, data: {not answers}): {rendered}"
                )
    return out


def prometheus_round(server: PrometheusServer, doc: dict[str, Any], end: float) -> Round:
    queries = D.panel_queries(FILES["planctond-prometheus"])
    span = {"start_s": end - WINDOW, "end_s": end, "interval_s": INTERVAL}
    window = {"start": str(end - WINDOW), "end": str(end)}
    instant = {
        t["refId"] + p["title"]: bool(t.get("instant"))
        for p in D.all_panels(doc)
        for t in p.get("targets", [])
    }
    chosen: dict[str, str | Sequence[str]] = {}
    for name in ("host", "pool"):
        (q,) = [q for q in queries if q.panel == f"variable:{name}"]
        found = D.label_values(D.render_promql(q.expr, **span, variables=chosen))
        assert found is not None, q
        label, selector = found
        params = {**window, "match[]": selector} if selector else window
        document = _get(
            f"{server.url}/api/v1/label/{label}/values?{urllib.parse.urlencode(params)}"
        )
        chosen[name] = sorted(document["data"])
    assert {HOST, SIM, SILENT} <= set(chosen["host"]), chosen
    out = Round(empty=[])
    for selection in (chosen, {"host": D.ALL, "pool": D.ALL}):
        for q in queries:
            if q.panel.startswith("variable:"):
                continue  # asked above, as Grafana asks them
            rendered = D.render_promql(q.expr, **span, variables=selection)
            out.ran += 1
            if instant.get(q.ref + q.panel):
                values = prometheus_values(
                    server, "/api/v1/query", {"query": rendered, "time": str(end)}
                )
            else:
                params = {"query": rendered, **window, "step": str(INTERVAL)}
                values = prometheus_values(server, "/api/v1/query_range", params)
            if not values:
                assert out.empty is not None
                out.empty.append(f"{q.panel} {q.ref} ({selection}): {rendered}")
    return out


def install_rollups(server: InfluxDBServer, now: float) -> float:
    """What the README tells a site admin: the continuous queries (sending them again changes
    nothing), then the history before them filled once (here the whole window and what the
    daemon wrote so far, to the end of this minute). The minutes from the returned time on are
    the continuous queries' alone."""
    for _ in range(2):
        server.query(D.rollup_install(DB), DB)
    listed = influx_series(server, "SHOW CONTINUOUS QUERIES")
    names = sorted(row[0] for s in listed if s["name"] == DB for row in s["values"])
    assert names == sorted(r.name for r in D.rollups()), listed
    start, done = (now - WINDOW) // 60 * 60 - 120, (time.time() // 60 + 1) * 60
    server.query("".join(D.rollup_backfill(start, done)), DB)
    return done


def made_by_continuous_queries(server: InfluxDBServer, minute: float) -> bool:
    """Every rollup field has its point for `minute`: the continuous queries ran after it."""
    span = f"time >= {round(minute * 1000)}ms AND time < {round(minute * 1000) + 60_000}ms"
    return all(
        server.query(f'SELECT "{r.field}" FROM "{r.measurement}" WHERE {span}', DB)
        for r in D.rollups()
    )


def sick_hosts_influxdb(server: InfluxDBServer, end: float) -> set[str]:
    span = {"start_s": end - WINDOW, "end_s": end, "interval_s": INTERVAL}
    everyone = {"host": D.ALL, "pool": D.ALL}
    found: set[str] = set()
    for q in D.panel_queries(FILES["planctond-influxdb"]):
        if q.panel == "Sick hosts":
            rendered = D.render_influxql(q.expr, **span, variables=everyone)
            found |= {s["tags"]["host"] for s in influx_series(server, rendered)}
    return found


def sick_hosts_prometheus(server: PrometheusServer, end: float) -> set[tuple[str, str]]:
    span = {"start_s": end - WINDOW, "end_s": end, "interval_s": INTERVAL}
    (q,) = [q for q in D.panel_queries(FILES["planctond-prometheus"]) if q.panel == "Sick hosts"]
    rendered = D.render_promql(q.expr, **span, variables={"host": D.ALL, "pool": D.ALL})
    form = urllib.parse.urlencode({"query": rendered, "time": str(end)})
    rows = _get(f"{server.url}/api/v1/query?{form}")["data"]["result"]
    return {(r["metric"]["host"], r["metric"]["problem"]) for r in rows}


@pytest.fixture(autouse=True)
def servers_installed() -> None:
    """Skipped where a server is not installed, but never in CI: there deps.sh installs them."""
    for binary, package in (("influxd", "influxdb"), ("prometheus", "prometheus")):
        if shutil.which(binary) is None and os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is missing in CI (Debian's {package}; contrib/devstack/deps.sh)")


# --- the test ------------------------------------------------------------------------------------
@pytest.fixture
def exporters() -> Iterator[list[PrometheusExporter]]:
    made = [PrometheusExporter("127.0.0.1", 0) for _ in (SIM, SILENT)]
    for exporter in made:
        exporter.start()
    yield made
    for exporter in made:
        exporter.close(5.0)


def backfill(server: InfluxDBServer, now: float) -> None:
    """15 minutes of the simulated hosts, a status every 10 s: sim-node sick in its last two
    minutes, sim-silent quiet for the last eight."""
    sim, silent = SimHost(SIM, now - WINDOW - 60), SimHost(SILENT, now - WINDOW - 60)
    points: list[Point] = []
    for k in range(int(WINDOW // 10)):
        t = now - WINDOW + 10 * k
        points += sim.tick(t, sick=t > now - 120)
        if t < now - 480:
            points += silent.tick(t)
    server.query(f'CREATE DATABASE "{DB}"')
    request = urllib.request.Request(
        f"{server.url}/write?db={DB}&precision=ns", data=encode(points), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 204


def test_every_dashboard_query_returns_data_from_the_real_servers(
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    influx: InfluxDBServer,  # noqa: F811 (the fixture imported above)
    exporters: list[PrometheusExporter],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    metrics_port = free_port()
    top = (
        f"monitoring:\n  host: {HOST}\n"
        f"  influxdb:\n    - {{url: '{influx.url}', database: {DB}}}\n"
        f"  prometheus: {{listen: {metrics_port}}}\n"
    )
    targets = [
        f"127.0.0.1:{metrics_port}",
        *(f"{h}:{p}" for h, p in (e.address for e in exporters)),
    ]
    with prometheus_server(tmp_path / "prometheus", targets) as prometheus:
        d = daemon_factory(pool_config(extra_top=top, command='["sleep", "2"]', max_pilots="2"))
        backfill(influx, time.time())
        continuous = install_rollups(influx, time.time())
        sim, silent = SimHost(SIM, time.time()), SimHost(SILENT, time.time())
        fed, silent_serving = time.monotonic(), True
        while (spent := time.monotonic() - fed) < FEED_SECONDS:
            exporters[0].put(sim.tick(time.time(), sick=spent > FEED_SECONDS * 0.6))
            if spent < SILENT_AFTER:
                exporters[1].put(silent.tick(time.time()))
            elif silent_serving:  # the host goes silent: its scrapes fail, its series end
                exporters[1].close(5.0)
                silent_serving = False
            time.sleep(0.5)
        wait_for(lambda: len(pilots(docker_client, d.instance_id)) >= 1, 30, message=d.tail)

        def exited() -> int:
            q = 'SELECT count("message") FROM "planctond_event" WHERE "kind" = \'pilot-exited\''
            return int(influx_has_values(influx_series(influx, q)))

        wait_for(exited, 30, message=d.tail)
        docs = {stem: D.load(path) for stem, path in FILES.items()}
        rounds: dict[str, Round] = {}

        def all_have_data() -> bool:
            end = time.time()
            rounds["influxdb"] = influx_round(influx, end)
            rounds["prometheus"] = prometheus_round(prometheus, docs["planctond-prometheus"], end)
            return not any(r.empty for r in rounds.values())

        wait_for(
            all_have_data,
            DEADLINE,
            interval=2.0,
            message=lambda: "\n".join(e for r in rounds.values() for e in r.empty or []),
        )
        end = time.time()
        assert sick_hosts_influxdb(influx, end) == {SIM, SILENT}
        assert sick_hosts_prometheus(prometheus, end) == {
            (SIM, "Docker down"),
            (SIM, "daemon error"),
            (SIM, "config refused"),
            (SIM, "tick late (s)"),
            (SILENT, "silent"),
        }
        # The continuous queries' first minute is final when they computed it again, at their
        # run two minutes after its start, which also makes the minute after it.
        wait_for(
            lambda: made_by_continuous_queries(influx, continuous + 60),
            continuous + 120 + CQ_SLACK - time.time(),
            interval=2.0,
            message=lambda: influx.log_tail(),
        )
    compare = functools.partial(
        D.rollups_against_raw, FILES["planctond-influxdb"], lambda q: influx_series(influx, q)
    )
    # The backfilled quarter of an hour (simulated hosts and the daemon's first minutes) and
    # the continuous queries' first minute, against the raw points of every host ...
    everyone = compare([HOST, SIM, SILENT], continuous - WINDOW, continuous + 60)
    assert not everyone.unequal, "\n".join(everyone.unequal)
    assert all(everyone.compared.values()) and len(everyone.compared) >= 8, everyone.compared
    # ... and that minute holds the real daemon's points alone (the simulated hosts' history
    # ended before it): influxd summed what the daemon wrote.
    daemon = compare([HOST], continuous, continuous + 60)
    assert not daemon.unequal, "\n".join(daemon.unequal)
    assert all(daemon.compared.values()), daemon.compared
    ran = sum(r.ran for r in rounds.values())
    print(
        f"{ran} dashboard queries returned data; rollups equal to the raw points in "
        f"{sum(everyone.compared.values())} figures, {sum(daemon.compared.values())} of the "
        f"daemon's alone; {time.monotonic() - began:.0f} s in all"
    )
