"""The Prometheus exporter over real HTTP on loopback, fed by the real SeriesRecorder: what a
scrape shows (names, TYPE, HELP, labels, values, in both exposition formats), which series
disappear, put() racing scrapes, and the listening socket's life (taken port, port freed)."""

from __future__ import annotations

import errno
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from planctond.monitoring import prometheus as P
from planctond.monitoring import series_spec as SP
from planctond.monitoring.point import Point
from planctond.monitoring.series import SeriesRecorder
from planctond.policy.model import RunState
from planctond.supervisor.api import PoolStatus
from planctond.supervisor.events import EventKind
from tests.unit.test_monitoring_series import HOST, T0, event, report

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def exporter(clock: Clock) -> Iterator[P.PrometheusExporter]:
    exp = P.PrometheusExporter("127.0.0.1", 0, clock=clock)
    exp.start()
    yield exp
    exp.close(5.0)


def url(exp: P.PrometheusExporter, path: str = P.METRICS_PATH) -> str:
    host, port = exp.address
    return f"http://{P.url_host(host)}:{port}{path}"


def scrape(exp: P.PrometheusExporter, accept: str | None = None) -> str:
    request = urllib.request.Request(url(exp), headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
        return str(reply.read().decode())


def families(exp: P.PrometheusExporter) -> dict[str, Metric]:
    """The text format, keyed by the exposed name: the parser names a counter family without
    `_total`, as OpenMetrics does; a counter's samples keep it."""
    out = {}
    for family in text_string_to_metric_families(scrape(exp)):
        name = family.name + "_total" if family.type == "counter" else family.name
        out[name] = family
    return out


def samples(exp: P.PrometheusExporter) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(scrape(exp))
        for s in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset({"host": HOST, **labels}.items())


def pools(**running: int) -> tuple[PoolStatus, ...]:
    return tuple(PoolStatus(name, n, 0, 4, None, "") for name, n in running.items())


def recorder(**cpus: float) -> SeriesRecorder:
    rec = SeriesRecorder(HOST)
    rec.set_pool_cpus(cpus or {"default": 1.0})
    return rec


def exposed_specs(points: Sequence[Point]) -> set[str]:
    return {
        spec.name
        for p in points
        for f in p.fields
        if (spec := SP.SERIES_BY_FIELD[(p.measurement, f)]).type in P.EXPOSED_TYPES
    }


# --- what a scrape shows ----------------------------------------------------------------------


def test_every_counter_in_the_catalogue_ends_in_total() -> None:
    """The exporter relies on it: CounterMetricFamily adds `_total` to samples whatever the
    name, so a counter named otherwise would be exposed under a name not in the catalogue."""
    for spec in SP.SERIES:
        assert (spec.type is SP.SeriesType.COUNTER) == spec.name.endswith("_total"), spec


def test_status_is_exposed_with_catalogue_names_types_help_and_labels(
    exporter: P.PrometheusExporter,
) -> None:
    rec = recorder(default=1.0, gpu=2.0)
    rec.on_event(event(EventKind.PILOT_STARTED, reason="spawned"))
    rec.on_event(event(EventKind.DOCKER_LOST, reason="boom"))
    rec.status(report(pools=pools(default=2, gpu=1)), T0)
    points = rec.status(report(pools=pools(default=2, gpu=1)), T0 + 10)
    exporter.put(points)

    found = families(exporter)
    ours = {name for name in found if name.startswith("planctond_")}
    assert ours == {P.histogram_family(n) for n in exposed_specs(points)}
    by_name = {s.name: s for s in SP.SERIES}
    for name in ours:
        family = found[name]
        for sample in family.samples:
            spec = by_name[sample.name]
            assert family.type == spec.type.value, name
            assert set(sample.labels) == set(spec.tags), (name, sample.labels)
            if spec.type is not SP.SeriesType.HISTOGRAM:  # its HELP is the buckets' one
                assert sample.name == name and family.documentation == spec.help, name
    # Values, labels included, as the recorder made them.
    got = samples(exporter)
    for p in points:
        for field, value in p.fields.items():
            spec = SP.SERIES_BY_FIELD[(p.measurement, field)]
            if spec.type in P.EXPOSED_TYPES:
                labels = {t: p.tags.get(t, "") for t in spec.tags}
                assert got[(spec.name, frozenset(labels.items()))] == float(value), spec.name
    assert got[key("planctond_pool_running_pilots", pool="gpu")] == 1.0
    assert got[key("planctond_pool_pilot_cpu_seconds_total", pool="gpu")] == 20.0
    assert got[key("planctond_host_pilot_cpus")] == 4.0
    started = key("planctond_events_total", kind="pilot-started", reason="spawned", pool="default")
    assert got[started] == 1.0
    # An absent tag is an empty label, which Prometheus stores as no label.
    assert got[key("planctond_events_total", kind="docker-lost", reason="none", pool="")] == 1.0


def test_state_set_and_build_info_appear_but_no_text_or_event_field(
    exporter: P.PrometheusExporter,
) -> None:
    rec = recorder()
    exporter.put(rec.status(report(state=RunState.DRAINING, version="1.2.3"), T0))
    exporter.put(rec.on_event(event(EventKind.PILOT_EXITED, reason="exited", exit_code=3)))
    got = samples(exporter)
    states = {s.value: got[key("planctond_daemon_state", state=s.value)] for s in RunState}
    assert states == {"active": 0.0, "draining": 1.0, "stopped": 0.0}
    assert got[key("planctond_build_info", version="1.2.3")] == 1.0
    text_or_event = {
        s.name for s in SP.SERIES if s.type in (SP.SeriesType.TEXT, SP.SeriesType.EVENT)
    }
    assert not text_or_event & {name for name, _ in got}
    assert not any(name.startswith(SP.EVENT + "_") for name, _ in got)


def test_exposed_names_in_both_formats_are_the_catalogue_names(
    exporter: P.PrometheusExporter,
) -> None:
    """Prometheus asks for OpenMetrics first: there a counter family is named without `_total`
    and its samples with it. Either way, the stored series names are the catalogue's."""
    rec = recorder()
    rec.on_event(event(EventKind.CONFIG_LOADED))
    points = rec.status(report(), T0)
    exporter.put(points)
    wanted = exposed_specs(points)

    text = scrape(exporter)
    typed = dict(
        line.split(" ")[2:4] for line in text.splitlines() if line.startswith("# TYPE planctond_")
    )
    assert set(typed) == {P.histogram_family(n) for n in wanted}
    assert typed["planctond_owner_yield_latency_seconds"] == "histogram"
    assert typed["planctond_events_total"] == "counter"
    assert typed["planctond_pool_pilot_cpu_seconds_total"] == "counter"
    assert typed["planctond_build_info"] == "gauge"

    om = scrape(exporter, OPENMETRICS)
    assert om.rstrip().endswith("# EOF")
    names = {s.name for f in openmetrics_families(om) for s in f.samples}
    assert {n for n in names if n.startswith("planctond_")} == wanted
    units = {line.split(" ")[2]: line.split(" ")[3] for line in om.splitlines() if "# UNIT" in line}
    assert units["planctond_pool_pilot_cpu_seconds"] == "seconds"
    assert units["planctond_pool_running_pilots"] == "pilots"


def test_process_metrics_of_the_daemon_itself(exporter: P.PrometheusExporter) -> None:
    found = families(exporter)
    assert found["process_resident_memory_bytes"].samples[0].value > 0
    assert "process_cpu_seconds_total" in found
    assert not any(name.startswith(("python_", "gc_")) for name in found)


def test_nothing_but_process_metrics_before_the_first_status(
    exporter: P.PrometheusExporter,
) -> None:
    assert not any(name.startswith("planctond_") for name in families(exporter))


# --- which series exist ---------------------------------------------------------------------------


def test_a_pool_gone_from_the_status_is_gone_from_metrics(exporter: P.PrometheusExporter) -> None:
    rec = recorder(default=1.0, old=1.0)
    exporter.put(rec.status(report(pools=pools(default=1, old=3)), T0))
    assert samples(exporter)[key("planctond_pool_running_pilots", pool="old")] == 3.0
    exporter.put(rec.status(report(pools=pools(default=1)), T0 + 10))
    got = samples(exporter)
    assert not [k for k in got if ("pool", "old") in k[1]]
    assert got[key("planctond_pool_running_pilots", pool="default")] == 1.0
    exporter.put(rec.status(report(pools=()), T0 + 20))
    assert not any(name.startswith("planctond_pool_") for name, _ in samples(exporter))


def test_a_renamed_host_and_an_upgrade_leave_no_old_series(exporter: P.PrometheusExporter) -> None:
    exporter.put(recorder().status(report(version="1.0"), T0))
    other = SeriesRecorder("node2")
    exporter.put(other.status(report(version="1.1"), T0 + 10))
    got = samples(exporter)
    hosts = {dict(labels).get("host") for name, labels in got if name.startswith("planctond_")}
    assert hosts == {"node2"}
    versions = [dict(labels)["version"] for name, labels in got if name == SP.BUILD_INFO]
    assert versions == ["1.1"]


def test_an_event_between_ticks_moves_its_counter_and_keeps_the_others(
    exporter: P.PrometheusExporter,
) -> None:
    rec = recorder()
    rec.on_event(event(EventKind.PILOT_STARTED, reason="spawned"))
    exporter.put(rec.status(report(), T0))
    exporter.put(rec.on_event(event(EventKind.PILOT_STARTED, reason="spawned")))
    exporter.put(rec.on_event(event(EventKind.CONFIG_REJECTED, reason="bad yaml")))
    got = samples(exporter)
    started = key("planctond_events_total", kind="pilot-started", reason="spawned", pool="default")
    assert got[started] == 2.0
    assert got[key("planctond_events_total", kind="config-rejected", reason="none", pool="")] == 1
    assert got[key("planctond_config_rejected_total")] == 1.0
    assert got[key("planctond_config_error")] == 1.0
    assert got[key("planctond_pool_running_pilots", pool="default")] == 2.0  # status kept
    exporter.put(rec.status(report(), T0 + 10))
    assert samples(exporter)[started] == 2.0


def test_points_it_cannot_name_are_ignored(exporter: P.PrometheusExporter) -> None:
    exporter.put([Point("plancton_status", {"n": 1, "s": "x"}, {"hostname": "h"})])
    exporter.put([Point(SP.HOST, {"cpus": "four"}, {"host": HOST})])  # a type bug upstream
    exporter.put([])
    assert not any(name.startswith(("plancton", "planctond_")) for name, _ in samples(exporter))


# --- concurrency, health, errors -------------------------------------------------------------------


def test_put_racing_scrapes_never_raises_and_scrapes_stay_whole(
    exporter: P.PrometheusExporter,
) -> None:
    rec = recorder(a=1.0, b=1.0)
    batches = [
        rec.status(report(pools=pools(a=1, b=2)), T0),
        rec.status(report(pools=pools(a=3)), T0 + 10),
        rec.on_event(event(EventKind.DOCKER_BACK)),
    ]
    errors: list[BaseException] = []
    stop = threading.Event()

    def feed() -> None:
        try:
            i = 0
            while not stop.is_set():
                exporter.put(batches[i % len(batches)])
                i += 1
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(30):
                got = samples(exporter)
                pilots = {
                    dict(labels)["pool"]: value
                    for name, labels in got
                    if name == "planctond_pool_running_pilots"
                    for value in [got[(name, labels)]]
                }
                assert pilots in ({}, {"a": 1.0, "b": 2.0}, {"a": 3.0}), pilots
        except BaseException as exc:
            errors.append(exc)

    feeders = [threading.Thread(target=feed) for _ in range(2)]
    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in feeders + readers:
        t.start()
    for t in readers:
        t.join(120)
    stop.set()
    for t in feeders:
        t.join(10)
    assert not errors, errors
    assert exporter.health().ok


def test_health_tells_the_address_and_the_last_scrape(
    exporter: P.PrometheusExporter, clock: Clock
) -> None:
    port = exporter.address[1]
    health = exporter.health()
    assert health.name == f"prometheus http://127.0.0.1:{port}/metrics"
    assert (health.ok, health.last_success, health.backlog, health.dropped) == (True, None, 0, 0)
    clock.now = T0 + 5
    scrape(exporter)
    assert exporter.health().last_success == T0 + 5


def test_other_paths_are_not_found_and_not_a_scrape(exporter: P.PrometheusExporter) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url(exporter, "/"), timeout=10)
    assert caught.value.code == 404
    assert exporter.health().last_success is None


def test_a_failing_scrape_is_a_500_and_shows_in_health(
    exporter: P.PrometheusExporter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter.put(recorder().status(report(), T0))

    def broken(*args: object) -> Metric:
        raise RuntimeError("collector bug")

    monkeypatch.setattr(P, "metric_family", broken)
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as caught:
            scrape(exporter)
        assert caught.value.code == 500
    health = exporter.health()
    assert not health.ok and "collector bug" in health.last_error
    assert len([r for r in caught_errors(caplog) if "collector bug" in r]) == 1  # logged once
    monkeypatch.undo()
    scrape(exporter)
    assert exporter.health().ok


def caught_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


# --- the listening socket ---------------------------------------------------------------------------


def test_close_frees_the_port_for_a_new_exporter(clock: Clock) -> None:
    first = P.PrometheusExporter("127.0.0.1", 0, clock=clock)
    first.start()
    port = first.address[1]
    first.put(recorder().status(report(), T0))
    scrape(first)  # a connection that went through, its socket now in TIME_WAIT
    started = time.monotonic()
    first.close(2.0)
    assert time.monotonic() - started < 2.0
    with pytest.raises(OSError):
        urllib.request.urlopen(url(first), timeout=5)
    second = P.PrometheusExporter("127.0.0.1", port, clock=clock)
    second.start()
    try:
        assert second.address == ("127.0.0.1", port)
        assert not any(name.startswith("planctond_") for name, _ in samples(second))
    finally:
        second.close(2.0)
    first.close(1.0)  # twice is harmless


def test_a_taken_port_is_a_clear_oserror(exporter: P.PrometheusExporter) -> None:
    port = exporter.address[1]
    other = P.PrometheusExporter("127.0.0.1", port)
    with pytest.raises(OSError) as caught:
        other.start()
    assert caught.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{port}" in str(caught.value)
    other.close(1.0)  # never started: nothing to do, and no hang
    scrape(exporter)  # the first one is unharmed


def test_an_address_not_of_this_host_is_a_clear_oserror() -> None:
    with pytest.raises(OSError, match=r"192\.0\.2\.1:9839"):
        P.PrometheusExporter("192.0.2.1", 9839).start()


def test_ipv6_loopback(clock: Clock) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    exp = P.PrometheusExporter("::1", 0, clock=clock)
    try:
        exp.start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        exp.put(recorder().status(report(), T0))
        assert samples(exp)[key("planctond_daemon_docker_up")] == 1.0
        assert exp.health().name == f"prometheus http://[::1]:{exp.address[1]}/metrics"
    finally:
        exp.close(2.0)


def test_a_silent_client_does_not_hold_up_scrapes_or_close(clock: Clock) -> None:
    exp = P.PrometheusExporter("127.0.0.1", 0, clock=clock)
    exp.start()
    with socket.create_connection(exp.address, timeout=5):  # connects, never asks
        started = time.monotonic()
        scrape(exp)
        exp.close(2.0)
        assert time.monotonic() - started < 3.0


def test_start_twice_and_a_bad_port_are_refused(exporter: P.PrometheusExporter) -> None:
    with pytest.raises(RuntimeError):
        exporter.start()
    with pytest.raises(ValueError):
        P.PrometheusExporter("127.0.0.1", 70000)


def test_owner_yield_latency_is_a_prometheus_histogram(exporter: P.PrometheusExporter) -> None:
    """Buckets, sum and count from the recorder's points, all zero before the first yield (so
    `increase()` sees that one too), then cumulative as Prometheus's own histograms are."""
    rec = recorder()
    exporter.put(rec.status(report(), T0))
    got = samples(exporter)
    bucket = "planctond_owner_yield_latency_seconds_bucket"
    assert got[key(bucket, le="+Inf")] == 0.0
    for latency in (0.5, 125.0, 1000.0):
        extra = {"latency_seconds": str(latency), "pilot_cpu_seconds": "0.25", "pilots": "2"}
        rec.on_event(event(EventKind.OWNER_YIELD, reason="owner-cpu", extra=extra))
    exporter.put(rec.status(report(), T0 + 10))
    got = samples(exporter)
    assert got[key(bucket, le="1")] == 1.0
    assert got[key(bucket, le="120")] == 1.0
    assert got[key(bucket, le="130")] == 2.0
    assert got[key(bucket, le="300")] == 2.0
    assert got[key(bucket, le="+Inf")] == 3.0
    assert got[key("planctond_owner_yield_latency_seconds_count")] == 3.0
    assert got[key("planctond_owner_yield_latency_seconds_sum")] == 1125.5
    assert got[key("planctond_owner_yield_pilot_cpu_seconds_total")] == 0.75
    typed = [line for line in scrape(exporter).splitlines() if line.startswith("# TYPE")]
    assert "# TYPE planctond_owner_yield_latency_seconds histogram" in typed
