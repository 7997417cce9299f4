"""A real daemon managing real pilots writes its series to a real InfluxDB 1.6 on loopback, in
the new names and, for a target written Plancton's way (`URL#database`), in Plancton 0.6's; and
a server that goes away for a minute costs nothing but a backlog that arrives when it is back."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.integration.test_daemon_pilots import pilots, pool_config
from tests.support.influxdb_server import InfluxDBServer, influxdb_server
from tests.support.server_process import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker]

HOST = "test-node"


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxDBServer]:
    with influxdb_server(tmp_path / "influxdb") as server:
        yield server


def monitored(server: InfluxDBServer, **kw: Any) -> str:
    """Two targets on one server: the new series into `fleet`, and a Plancton-style target
    (`URL#database`) into `plancton`. Neither database exists: the daemon creates them."""
    top = (
        "monitoring:\n"
        f"  host: {HOST}\n"
        "  influxdb:\n"
        f"    - {{url: '{server.url}', database: fleet}}\n"
        f"    - '{server.url}#plancton'\n"
    )
    return pool_config(extra_top=top, **kw)


def times(server: InfluxDBServer, measurement: str, db: str, since_ns: int = 0) -> list[int]:
    try:
        rows = server.query(
            f'SELECT "uptime_seconds" FROM "{measurement}" WHERE time >= {since_ns}', db
        )
    except RuntimeError as exc:
        if "database not found" in str(exc):
            return []  # the daemon has not written yet (it creates the database)
        raise
    return sorted(int(r["time"]) for r in rows)


def test_a_daemon_writes_its_series_and_plancton_s(
    daemon_factory: DaemonFactory, docker_client: Any, busybox_image: str, influx: InfluxDBServer
) -> None:
    d = daemon_factory(monitored(influx, command='["sleep", "2"]', max_pilots="2"))
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 2, 30, message=d.tail)

    def events(kind: str) -> list[dict[str, Any]]:
        q = f'SELECT * FROM "planctond_event" WHERE "kind" = \'{kind}\''
        return influx.query(q, "fleet")

    wait_for(lambda: len(events("pilot-exited")) >= 2, 60, message=d.tail)
    started = events("pilot-started")
    assert started and all(r["host"] == HOST and r["pool"] == "default" for r in started)
    exited = events("pilot-exited")
    assert all(r["exit_code"] == 0 and r["lifetime_seconds"] >= 1.5 for r in exited), exited
    (daemon,) = influx.query('SELECT last("uptime_seconds") FROM "planctond_daemon"', "fleet")
    assert daemon["last"] > 0
    pools = influx.query(
        'SELECT last("allowed_pilots") FROM "planctond_pool" GROUP BY "pool"', "fleet"
    )
    assert [(r["pool"], r["last"]) for r in pools] == [("default", 2)]
    # The harvest, in one query, as the series module documents it.
    harvest = influx.query(
        'SELECT integral("pilot_cpus", 1h) FROM "planctond_pool" GROUP BY "host", "pool"', "fleet"
    )
    assert harvest and harvest[0]["integral"] > 0

    # Plancton 0.6's names, so an upgraded site's dashboards keep drawing.
    def plancton(measurement: str) -> list[dict[str, Any]]:
        return influx.query(f'SELECT * FROM "{measurement}"', "plancton")

    wait_for(lambda: len(plancton("container")) >= 2, 30, message=d.tail)
    assert {r["hostname"] for r in plancton("daemon")} == {HOST}
    assert "active" in {r["status"] for r in plancton("daemon")}
    assert all(0 <= r["cpu_eff"] <= 100 for r in plancton("measurement"))
    ended = [r for r in plancton("container") if r["killed"] == "False"]
    assert ended and all(r["uptime"] >= 1.5 for r in ended)


def test_a_server_away_for_a_minute_costs_only_a_backlog(
    daemon_factory: DaemonFactory, docker_client: Any, busybox_image: str, influx: InfluxDBServer
) -> None:
    """Pilots come and go as usual while the server is down, no tick is late, and the status
    points of the outage arrive once it is back: there is no hole in the series."""
    outage = float(os.environ.get("PLANCTOND_OUTAGE_SECONDS", "60"))
    d = daemon_factory(monitored(influx, command='["sleep", "3"]', max_pilots="2"))
    wait_for(lambda: times(influx, "planctond_daemon", "fleet"), 30, message=d.tail)
    mark = d.mark()
    down_at = time.time_ns()
    influx.stop()
    time.sleep(outage)
    replaced = len(d.find_lines(r"pilot-started", mark))
    assert replaced >= outage / 5, f"only {replaced} pilots started while the server was down"
    d.wait_for_line(r"backend influxdb .* unreachable", 5, since=mark)
    influx.start()
    back_at = time.time_ns()
    d.wait_for_line(r"is back", 60, since=mark)

    def status_times() -> list[int]:
        return times(influx, "planctond_daemon", "fleet", since_ns=down_at)

    wait_for(lambda: status_times() and status_times()[-1] > back_at, 60, message=d.tail)
    during = [t for t in status_times() if t <= back_at]
    gaps = [(b - a) / 1e9 for a, b in zip([down_at, *during], during, strict=False)]
    # tick is 1 s: a status point a second, delivered later from the backlog; a late tick or
    # a lost batch would leave a hole.
    assert len(during) >= outage * 0.8, (len(during), d.tail())
    assert max(gaps) < 5.0, max(gaps)
    unreachable = d.find_lines(r"backend influxdb .* unreachable", mark)
    assert len(unreachable) == 2, "said once per outage per backend, not per point"


def test_a_daemon_serves_metrics_for_prometheus(
    daemon_factory: DaemonFactory, docker_client: Any, busybox_image: str
) -> None:
    """Through the composition root: `monitoring.prometheus` serves /metrics on loopback with
    the daemon's own series (a real Prometheus scraping it: tests/integration/
    test_prometheus_exporter.py)."""
    port = free_port()
    top = f"monitoring:\n  host: {HOST}\n  prometheus: {{listen: {port}}}\n"
    d = daemon_factory(pool_config(extra_top=top, max_pilots="2"))
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 2, 30, message=d.tail)

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    wanted = f'planctond_pool_running_pilots{{host="{HOST}",pool="default"}} 2.0'
    wait_for(lambda: wanted in scrape(), 30, message=lambda: scrape() or d.tail())
    assert 'planctond_events_total{host="test-node",kind="pilot-started"' in scrape()
