"""The series that say what the pilots harvested and what they cost the owner: measured pilot
CPU and memory, work lost to stops, and the owner yield latency histogram."""

from __future__ import annotations

import math

import pytest

from planctond.monitoring import series as S
from planctond.monitoring import series_spec as SP
from planctond.monitoring.point import Point
from planctond.supervisor.events import EventKind
from tests.unit.test_monitoring_series import HOST, T0, event, only, report


def recorder() -> S.SeriesRecorder:
    rec = S.SeriesRecorder(HOST)
    rec.set_pool_cpus({"default": 1.0})
    return rec


def host_fields(points: list[Point]) -> dict[str, object]:
    return dict(only(points, SP.HOST).fields)


def test_measured_harvest_is_the_pilots_cgroup_use_integrated() -> None:
    rec = recorder()
    rec.status(report(pilots_cpu=2.0), T0)
    fields = host_fields(rec.status(report(pilots_cpu=1.5), T0 + 10))
    assert fields["pilot_used_cpus"] == 1.5
    assert fields["pilot_used_cpu_seconds_total"] == pytest.approx(15.0)  # the interval's mean
    fields = host_fields(rec.status(report(pilots_cpu=math.nan), T0 + 20))
    assert "pilot_used_cpus" not in fields  # unsendable, left out
    assert fields["pilot_used_cpu_seconds_total"] == pytest.approx(15.0)
    # A silence longer than max_gap (a suspended laptop) is not counted as harvest.
    fields = host_fields(rec.status(report(pilots_cpu=1.0), T0 + 20 + S.MAX_GAP + 1))
    assert fields["pilot_used_cpu_seconds_total"] == pytest.approx(15.0)


def test_pilots_memory_only_when_read() -> None:
    rec = recorder()
    assert host_fields(rec.status(report(pilots_memory=123_456), T0))["pilot_memory_bytes"] == (
        123_456
    )
    assert "pilot_memory_bytes" not in host_fields(rec.status(report(), T0 + 10))


def test_work_lost_counts_the_pilots_we_stopped_per_pool() -> None:
    rec = recorder()
    lost = {"cpu_seconds": "30.5"}
    stopped = event(EventKind.PILOT_STOPPED, reason="owner-cpu", extra=lost)
    assert only(rec.on_event(stopped), SP.EVENT).fields["cpu_seconds"] == 30.5
    rec.on_event(event(EventKind.PILOT_KILLED, reason="ttl", extra={"cpu_seconds": "9.5"}))
    rec.on_event(event(EventKind.PILOT_EXITED, reason="exited", extra={"cpu_seconds": "99"}))
    rec.on_event(event(EventKind.PILOT_STOPPED, reason="ttl", extra={"cpu_seconds": "nan"}))
    rec.on_event(event(EventKind.PILOT_STOPPED, reason="ttl", extra={"cpu_seconds": "-1"}))
    pool = only(rec.status(report(), T0), SP.POOL, pool="default")
    assert pool.fields["lost_cpu_seconds_total"] == 40.0  # an exit loses nothing
    ev = only(rec.on_event(event(EventKind.PILOT_EXITED, extra=lost)), SP.EVENT)
    assert "cpu_seconds" not in ev.fields


def test_owner_yield_event_and_histogram() -> None:
    rec = recorder()
    points = rec.status(report(), T0)
    zero = only(points, SP.OWNER).fields
    assert zero == {
        "yield_latency_seconds_sum": 0.0,
        "yield_latency_seconds_count": 0,
        "yield_pilot_cpu_seconds_total": 0.0,
    }
    les = [p.tags[SP.LE_TAG] for p in points if p.measurement == SP.YIELD_LATENCY]
    assert les == [*(f"{b:g}" for b in SP.YIELD_BUCKETS), "+Inf"]
    extra = {"latency_seconds": "125.5", "pilot_cpu_seconds": "0.04", "pilots": "2"}
    ev = only(rec.on_event(event(EventKind.OWNER_YIELD, reason="owner-cpu", extra=extra)), SP.EVENT)
    assert ev.tags[SP.REASON_TAG] == "owner-cpu"
    assert {k: ev.fields[k] for k in ("latency_seconds", "pilot_cpu_seconds", "pilots")} == {
        "latency_seconds": 125.5,
        "pilot_cpu_seconds": 0.04,
        "pilots": 2,
    }
    rec.on_event(event(EventKind.OWNER_YIELD, reason="owner-memory", extra={"pilots": "1"}))
    points = rec.status(report(), T0 + 10)
    owner = only(points, SP.OWNER).fields
    assert owner["yield_latency_seconds_count"] == 1  # the one without a latency is not counted
    assert owner["yield_latency_seconds_sum"] == 125.5
    buckets = {
        p.tags[SP.LE_TAG]: p.fields["bucket"] for p in points if p.measurement == SP.YIELD_LATENCY
    }
    assert buckets["120"] == 0 and buckets["130"] == 1 and buckets["+Inf"] == 1
    counts = [buckets[le] for le in [*(f"{b:g}" for b in SP.YIELD_BUCKETS), "+Inf"]]
    assert counts == sorted(counts), "cumulative"
