"""The exporter, fed by the real SeriesRecorder, scraped by a real Prometheus 2.42 (which asks for
OpenMetrics first): the series arrive under the catalogue's names with the right labels and
values, counters as `_total`, the target is up, and a pool taken out of the status ends in
Prometheus at the next scrape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from planctond.monitoring.prometheus import PrometheusExporter
from planctond.monitoring.series import SeriesRecorder
from planctond.supervisor.api import PoolStatus
from planctond.supervisor.events import EventKind
from tests.support.prometheus_server import PrometheusServer, prometheus_server, require_prometheus
from tests.support.waiting import wait_for
from tests.unit.test_monitoring_series import T0, event, report

HOST = "node-7"
JOB = "planctond-test"
WAIT = 60.0  # seconds; scrapes come every second, this is only a ceiling


def pools(**running: int) -> tuple[PoolStatus, ...]:
    return tuple(PoolStatus(name, n, 0, 4, None, "") for name, n in running.items())


@pytest.fixture
def exporter() -> Iterator[PrometheusExporter]:
    require_prometheus()
    exp = PrometheusExporter("127.0.0.1", 0)
    exp.start()
    yield exp
    exp.close(5.0)


@pytest.fixture
def prometheus(exporter: PrometheusExporter, tmp_path: Path) -> Iterator[PrometheusServer]:
    host, port = exporter.address
    with prometheus_server(tmp_path / "prometheus", [f"{host}:{port}"], job=JOB) as server:
        yield server


def values(server: PrometheusServer, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{labels without name, job and instance: value}, so expectations read like the exporter's."""
    return {
        tuple(
            sorted((k, v) for k, v in labels.items() if k not in ("__name__", "job", "instance"))
        ): value
        for labels, value in server.query(promql)
    }


def await_values(
    server: PrometheusServer, promql: str, expected: dict[tuple[tuple[str, str], ...], float]
) -> None:
    wait_for(
        lambda: values(server, promql) == expected,
        timeout=WAIT,
        interval=0.25,
        message=lambda: (
            f"{promql} == {expected}, have {values(server, promql)}\n{server.log_tail(10)}"
        ),
    )


def test_prometheus_scrapes_the_series_by_their_catalogue_names(
    exporter: PrometheusExporter, prometheus: PrometheusServer
) -> None:
    rec = SeriesRecorder(HOST)
    rec.set_pool_cpus({"default": 1.0, "gpu": 2.0})
    rec.on_event(event(EventKind.CONFIG_LOADED))
    rec.on_event(event(EventKind.PILOT_STARTED, reason="spawned"))
    rec.on_event(event(EventKind.PILOT_STARTED, reason="spawned"))
    for i in range(3):  # 20 s of 2 + 2x1 allotted CPUs: 40 CPU-seconds, 40 for gpu
        exporter.put(rec.status(report(pools=pools(default=2, gpu=1)), T0 + 10 * i))

    h = ("host", HOST)
    await_values(prometheus, f'up{{job="{JOB}"}}', {(): 1.0})
    await_values(
        prometheus,
        f'planctond_pool_running_pilots{{host="{HOST}"}}',
        {(h, ("pool", "default")): 2.0, (h, ("pool", "gpu")): 1.0},
    )
    await_values(
        prometheus,
        "planctond_pool_pilot_cpu_seconds_total",
        {(h, ("pool", "default")): 40.0, (h, ("pool", "gpu")): 40.0},
    )
    started = (h, ("kind", "pilot-started"), ("pool", "default"), ("reason", "spawned"))
    loaded = (h, ("kind", "config-loaded"), ("reason", "none"))  # no pool: no label
    await_values(prometheus, "planctond_events_total", {started: 2.0, loaded: 1.0})
    await_values(prometheus, "planctond_config_loaded_total", {(h,): 1.0})
    await_values(
        prometheus, 'planctond_daemon_state{state="active"}', {(h, ("state", "active")): 1}
    )
    await_values(prometheus, "planctond_build_info", {(h, ("version", "0.1.0")): 1.0})
    # Names a text field or an OpenMetrics family name would have made: none of them stored.
    for name in ("planctond_pool_note", "planctond_events", "planctond_event_message"):
        assert prometheus.query(name) == [], name

    # An event between ticks moves its counter at once; the pool taken out of the status ends.
    exporter.put(rec.on_event(event(EventKind.PILOT_STARTED, reason="spawned")))
    await_values(prometheus, "planctond_events_total", {started: 3.0, loaded: 1.0})
    exporter.put(rec.status(report(pools=pools(default=1)), T0 + 30))
    await_values(prometheus, "planctond_pool_running_pilots", {(h, ("pool", "default")): 1.0})
    await_values(prometheus, 'planctond_pool_pilot_cpu_seconds_total{pool="gpu"}', {})
    await_values(prometheus, f'up{{job="{JOB}"}}', {(): 1.0})
    assert exporter.health().last_success is not None
