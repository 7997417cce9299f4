"""The hub: which backends exist after a load or reload, who gets which points, how often the
status goes out, and what planctonctl is told. Backends are recorders here; the real outbox and
InfluxDB writer have their own tests (and the daemon's, against a real server)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from planctond.config.loader import load_config_text
from planctond.config.model import Config, InfluxDBTarget, PrometheusListen
from planctond.monitoring.hub import MonitoringHub, target_name
from planctond.monitoring.outbox import OutboxHealth
from planctond.monitoring.point import Point
from planctond.supervisor.events import EventKind
from tests.unit.test_monitoring_series import T0, event, report


@dataclass
class FakeBackend:
    target: InfluxDBTarget
    points: list[Point] = field(default_factory=list)
    closed: float | None = None
    ok: bool = True

    def put(self, points: Sequence[Point]) -> None:
        assert self.closed is None, "put after close"
        self.points.extend(points)

    def health(self) -> OutboxHealth:
        return OutboxHealth(
            name=target_name(self.target),
            ok=self.ok,
            last_success=T0 if self.ok else None,
            backlog=0 if self.ok else 12,
            dropped=0 if self.ok else 3,
            last_error="" if self.ok else "connection refused",
        )

    def close(self, timeout: float) -> None:
        self.closed = timeout

    def measurements(self) -> set[str]:
        return {p.measurement for p in self.points}


class Rig:
    def __init__(self) -> None:
        self.made: list[FakeBackend] = []
        self.now = T0

    def make(self, target: InfluxDBTarget) -> FakeBackend:
        backend = FakeBackend(target)
        self.made.append(backend)
        return backend

    def make_prometheus(self, listen: PrometheusListen) -> FakeBackend:
        if listen.port == TAKEN:
            raise OSError(98, "Address already in use")
        return self.make(InfluxDBTarget(f"http://{listen.host}:{listen.port}", "metrics"))

    def hub(self, config: Config) -> MonitoringHub:
        return MonitoringHub(
            config,
            make_influx=self.make,
            make_prometheus=self.make_prometheus,
            clock=lambda: self.now,
            hostname=lambda: "node7.example.org",
        )


def config(monitoring: str = "", tick: str = "10s") -> Config:
    return load_config_text(f"tick: {tick}\n{monitoring}", "c.yaml")


TAKEN = 9999
NEW = "monitoring: {influxdb: [{url: 'http://u:secret@127.0.0.1:8086', database: site}]}\n"
OLD = "influxdb_url: ['http://127.0.0.1:8086#plancton']\n"
BOTH = (
    "monitoring:\n  influxdb:\n    - {url: 'http://u:secret@127.0.0.1:8086', database: site}\n"
    "    - http://127.0.0.1:8086#plancton\n"
)


def test_no_target_no_backend_and_nothing_to_do() -> None:
    rig = Rig()
    hub = rig.hub(config())
    hub.on_event(event(EventKind.PILOT_STARTED))
    hub.on_tick(report())
    assert rig.made == [] and not hub.active and hub.status_extra() == {}


def test_points_go_to_each_target_plancton_series_only_where_asked() -> None:
    rig = Rig()
    hub = rig.hub(config(BOTH))
    new, old = rig.made
    hub.on_tick(report())
    hub.on_event(event(EventKind.PILOT_EXITED, extra={"lifetime_seconds": "12.000"}))
    assert "daemon" not in new.measurements() and "container" not in new.measurements()
    assert {"daemon", "measurement", "container"} <= old.measurements()
    assert new.measurements() <= old.measurements()  # the new series go to both
    assert all(p.tags.get("host") == "node7.example.org" for p in new.points)
    legacy = [p for p in old.points if p.measurement == "daemon"]
    assert legacy and all(p.tags["hostname"] == "node7" for p in legacy)  # Plancton's short name


def test_status_goes_out_once_per_tick_interval() -> None:
    rig = Rig()
    hub = rig.hub(config(NEW, tick="10s"))
    (backend,) = rig.made

    def status_points() -> int:
        return sum(1 for p in backend.points if p.measurement == "planctond_daemon")

    hub.on_tick(report())
    rig.now += 1  # a kick, not a full tick
    hub.on_tick(report())
    assert status_points() == 1
    rig.now += 10
    hub.on_tick(report())
    assert status_points() == 2


def test_reload_adds_keeps_and_closes_backends() -> None:
    rig = Rig()
    hub = rig.hub(config(NEW))
    (first,) = rig.made
    hub.reconfigure(config(BOTH))
    assert len(rig.made) == 2 and first.closed is None, "a kept target keeps its backlog"
    hub.reconfigure(config(OLD))
    wait_closed([first])
    assert rig.made[1].closed is None
    hub.reconfigure(config())
    wait_closed(rig.made)
    assert not hub.active


def wait_closed(backends: list[FakeBackend]) -> None:
    """Retired backends are closed off the caller's thread (a reload must not wait for them)."""
    deadline = time.monotonic() + 10
    while any(b.closed is None for b in backends):
        assert time.monotonic() < deadline, "a retired backend was never closed"
        time.sleep(0.001)


def test_pool_cpus_follow_the_config_for_the_harvest() -> None:
    rig = Rig()
    pools = "pools: {default: {cpus: 2}}\n"
    hub = rig.hub(config(NEW + pools))
    (backend,) = rig.made
    hub.on_tick(report())
    (pool,) = [p for p in backend.points if p.measurement == "planctond_pool"]
    assert pool.fields["pilot_cpus"] == 4.0  # 2 running x 2 CPUs


def test_host_tag_can_be_set_and_renaming_starts_over() -> None:
    rig = Rig()
    hub = rig.hub(config(NEW))
    assert hub.host == "node7.example.org"
    hub.reconfigure(config(NEW.replace("monitoring: {", "monitoring: {host: worker-3, ")))
    assert hub.host == "worker-3"
    hub.on_tick(report())
    assert {p.tags["host"] for p in rig.made[0].points} == {"worker-3"}


def test_health_for_planctonctl_never_shows_credentials() -> None:
    rig = Rig()
    hub = rig.hub(config(BOTH))
    rig.made[1].ok = False
    extra = hub.status_extra()
    assert list(extra) == [
        "monitoring influxdb http://127.0.0.1:8086#site",
        "monitoring influxdb http://127.0.0.1:8086#plancton",
    ]
    assert all("secret" not in k + v for k, v in extra.items())
    assert extra["monitoring influxdb http://127.0.0.1:8086#plancton"] == (
        "failing: connection refused; last success never; backlog 12; dropped 3"
    )
    assert extra["monitoring influxdb http://127.0.0.1:8086#site"].startswith("ok; last success ")


@pytest.mark.parametrize("timeout", [0.0, 6.0])
def test_close_shares_the_time(timeout: float) -> None:
    rig = Rig()
    hub = rig.hub(config(BOTH))
    hub.close(timeout)
    assert [b.closed for b in rig.made] == [timeout / 2, timeout / 2]
    assert not hub.active


def test_prometheus_endpoint_follows_reloads_and_a_taken_port_is_said_not_fatal() -> None:
    rig = Rig()
    hub = rig.hub(config("monitoring: {prometheus: {listen: 9839}}\n"))
    (endpoint,) = rig.made
    hub.on_tick(report())
    assert "planctond_pool" in endpoint.measurements()
    assert "daemon" not in endpoint.measurements(), "Plancton's series are for InfluxDB only"
    hub.reconfigure(config(f"monitoring: {{prometheus: {{listen: {TAKEN}}}}}\n"))
    assert endpoint.closed is not None, "closed at once, so a new endpoint may take the port"
    assert hub.status_extra() == {
        "monitoring prometheus http://127.0.0.1:9999/metrics": (
            "failing: cannot listen: [Errno 98] Address already in use; last success never; "
            "backlog 0; dropped 0"
        )
    }
    hub.on_tick(report())  # nothing to feed, nothing breaks
