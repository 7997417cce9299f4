"""What every host reports: the planctond series, made from the supervisor's events and the status
report of each tick. Pure: it is handed events, reports and the time, and returns points.

Layout: a few measurements, each with several fields, every point tagged `host`, pool points also
`pool`. A Prometheus exporter names a sample `<measurement>_<field>` (just `<measurement>` for a
field called `value`: `SeriesSpec.name`), so both worlds get conventional names: units in the
name, counters ending in `_total` and never going down while the daemon runs (a restart starts
them at zero: `rate()`/`increase()` in Prometheus, `non_negative_difference()` in InfluxQL).
String fields (`SeriesType.TEXT`) are for InfluxDB and Elasticsearch; `planctond_event` points
(`SeriesType.EVENT`) are happenings for annotations, not samples a scrape could read.

Harvested CPU-hours, two ways. Measured: what the pilots' parent cgroup used (`pilot_used_cpus`
on the host point, and the recorder's integral of it, `pilot_used_cpu_seconds_total`): that is
the harvest, per host. Allotted: a pool's `cpus` times its running pilots (`pilot_cpus`, frozen
ones get nothing), the only per-pool figure, since the pilots of all pools share one parent
cgroup. One query answers either:

    SELECT integral("pilot_used_cpus", 1h) FROM "planctond_host" WHERE time > now() - 30d GROUP BY "host"
    SELECT integral("pilot_cpus", 1h) FROM "planctond_pool" WHERE time > now() - 30d GROUP BY "host", "pool"

(`integral(x, 1h)` is `integral(x)/3600`: CPU-hours.) In PromQL the recorder's own integrals,
counters robust to scrape gaps: `sum by (host) (increase(planctond_host_pilot_used_cpu_seconds_total[30d])) / 3600`.

The owner's side: `planctond_owner` (the yield latency histogram's sum and count, the CPU pilots
got while the owner waited; buckets in `planctond_owner_yield_latency_seconds`) from the
supervisor's owner-yield events, and per pool `lost_cpu_seconds_total`: the CPU-seconds of the
pilots we stopped or killed, an upper bound of the work lost (a pilot may have finished jobs
before). Not guessed here: each pool's `cpus` (hence `set_pool_cpus`), whether host figures were
measured yet (0.0 before the first sample, like an idle host).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from planctond.config.model import Config
from planctond.monitoring.point import FieldValue, Point, seconds_to_ns
from planctond.monitoring.series_spec import (
    BUILD_INFO,
    CONFIG,
    DAEMON,
    DAEMON_STATE,
    EVENT,
    EVENTS,
    HOST,
    HOST_TAG,
    KIND_TAG,
    LE_TAG,
    OWNER,
    POOL,
    POOL_TAG,
    REASON_TAG,
    YIELD_BUCKETS,
    YIELD_LATENCY,
)
from planctond.policy.model import OWNER_REASONS, Reason, RunState
from planctond.supervisor.api import PoolStatus, StatusReport
from planctond.supervisor.events import Event, EventKind
from planctond.text import safe_text

NO_REASON: Final = "none"  # the kind has no bounded reason, or the event gave none
OTHER_REASON: Final = "other"  # a reason outside the kind's vocabulary: see the message
UNKNOWN: Final = "unknown"  # a tag value that came empty (a tag cannot be)
# Error texts from outside (Docker, a config file) are long; a point is not a log.
TEXT_LIMIT: Final = 1000
# A longer silence between two reports (a suspended laptop, a stuck loop) is not counted as
# harvest: nothing says the pilots ran through it.
MAX_GAP: Final = 900.0
# Where an emitter may one day give an ended pilot's lifetime; until then it is read back from
# the message ("exited with code 0 after 12.3s", "..., lived 12.3s").
LIFETIME_EXTRA: Final = "lifetime_seconds"
CPU_EXTRA: Final = "cpu_seconds"
# What an owner-yield event says in its `extra` (supervisor.yield_watch), as event fields.
YIELD_EXTRAS: Final = ("latency_seconds", "pilot_cpu_seconds")
# Nanoseconds since the epoch fit a signed 64-bit integer (InfluxDB's limit) until then.
MAX_EPOCH: Final = 9_223_372_036.0

_ALL_REASONS: Final = frozenset(r.value for r in Reason)
# The `reason` tag's vocabulary per kind: a tag must have few values, and some reasons are free
# text (an exception, a config error) that only belongs in the message. Every kind is listed, so
# a new kind is a decision made here (the tests fail until it is).
KIND_REASONS: Final[dict[EventKind, frozenset[str]]] = {
    EventKind.PILOT_STARTED: frozenset({"spawned", "adopted"}),
    EventKind.PILOT_EXITED: frozenset({"exited"}),
    EventKind.PILOT_FROZEN: _ALL_REASONS,
    EventKind.PILOT_THAWED: _ALL_REASONS,
    EventKind.PILOT_STOPPED: _ALL_REASONS,
    EventKind.PILOT_KILLED: _ALL_REASONS,
    EventKind.STATE_CHANGED: frozenset(),
    EventKind.CONFIG_LOADED: frozenset(),
    EventKind.CONFIG_REJECTED: frozenset(),  # the config error: free text
    EventKind.DOCKER_LOST: frozenset(),  # the exception: free text
    EventKind.DOCKER_BACK: frozenset(),
    EventKind.POOL_BACKOFF: frozenset(),  # the failure: free text
    EventKind.IMAGE: frozenset(),
    EventKind.OWNER_YIELD: frozenset(r.value for r in OWNER_REASONS),
}
ENDED_KINDS: Final = frozenset(
    {EventKind.PILOT_EXITED, EventKind.PILOT_STOPPED, EventKind.PILOT_KILLED}
)
STOPPED_KINDS: Final = frozenset({EventKind.PILOT_STOPPED, EventKind.PILOT_KILLED})


def reason_tag(event: Event) -> str:
    vocabulary = KIND_REASONS.get(event.kind, frozenset())
    if not vocabulary or event.reason is None:
        return NO_REASON
    return event.reason if event.reason in vocabulary else OTHER_REASON


def extra_number(event: Event, key: str) -> float | None:
    """A figure an emitter put in the event's `extra` (text, as every transport carries it);
    None when absent or not a finite number >= 0."""
    raw = event.extra.get(key)
    try:
        value = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def pilot_lifetime(event: Event) -> float | None:
    """Seconds an ended pilot lived, or None when the event does not say."""
    return extra_number(event, LIFETIME_EXTRA) if event.kind in ENDED_KINDS else None


def lost_cpu_seconds(event: Event) -> float | None:
    """The CPU-seconds of a pilot we stopped or killed (work lost, at most), when measured."""
    return extra_number(event, CPU_EXTRA) if event.kind in STOPPED_KINDS else None


def pool_cpus_of(config: Config) -> dict[str, float]:
    """What `SeriesRecorder.set_pool_cpus` wants, from the config in force."""
    return {p.name: p.cpus for p in config.pools}


def time_ns(epoch: float) -> int:
    """A time no backend can take (before 1970, past 2262, not a number) becomes 0 rather than
    a refusal that would lose the whole report."""
    return seconds_to_ns(epoch) if 0 < epoch < MAX_EPOCH else 0


def tag_value(value: str | None) -> str:
    return safe_text(value, TEXT_LIMIT) if value else UNKNOWN


def text(value: str) -> str:
    return safe_text(value, TEXT_LIMIT)


def _put(fields: dict[str, FieldValue], name: str, value: float | None) -> None:
    """A sensor's NaN or infinity would make the whole point unsendable: that field is left out."""
    if value is not None and math.isfinite(value):
        fields[name] = float(value)


class SeriesRecorder:
    """The series of one host. It keeps what the series need beyond one input: the event and
    config counters, the config error, the pools' CPUs and the harvest integral."""

    def __init__(self, host: str, *, max_gap: float = MAX_GAP) -> None:
        if not host:
            raise ValueError("the host tag cannot be empty")
        self.host = host
        self._max_gap = max_gap
        self._events: dict[tuple[str, str, str | None], int] = {}
        self._loaded = 0
        self._rejected = 0
        self._config_error = ""
        self._pool_cpus: dict[str, float] = {}
        self._cpu_seconds: dict[str, float] = {}
        self._last_alloc: dict[str, float] = {}
        self._last_now: float | None = None
        self._used_seconds = 0.0  # measured pilot CPU, integrated
        self._lost: dict[str, float] = {}  # pool -> CPU-seconds of the pilots we stopped
        self._yields = YieldHistogram()

    def set_pool_cpus(self, cpus: Mapping[str, float]) -> None:
        """Each pool's `cpus` (`pool_cpus_of(config)`), at start and after each reload: without
        them there is no `pilot_cpus` and no harvest."""
        for name, value in cpus.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"pool {name}: cpus must be a finite number >= 0, got {value}")
        self._pool_cpus = dict(cpus)

    def on_event(self, event: Event) -> list[Point]:
        """The event's point, the counter it moved, and the config series if it was a reload."""
        t = time_ns(event.time)
        tags = self._tags(kind=event.kind.value, reason=reason_tag(event))
        if event.pool:
            tags[POOL_TAG] = tag_value(event.pool)
        key = (tags[KIND_TAG], tags[REASON_TAG], tags.get(POOL_TAG))
        self._events[key] = self._events.get(key, 0) + 1
        lost = lost_cpu_seconds(event)
        if lost is not None and event.pool:
            pool = tag_value(event.pool)
            self._lost[pool] = self._lost.get(pool, 0.0) + lost
        if event.kind is EventKind.OWNER_YIELD:
            self._yields.add(event)
        points = [
            Point(EVENT, _event_fields(event), tags, t),
            Point(EVENTS, {"total": self._events[key]}, tags, t),
        ]
        if event.kind is EventKind.CONFIG_LOADED:
            self._loaded += 1
            self._config_error = ""
            points.append(self._config(t))
        elif event.kind is EventKind.CONFIG_REJECTED:
            self._rejected += 1
            self._config_error = text(event.reason or event.message) or UNKNOWN
            points.append(self._config(t))
        return points

    def status(self, report: StatusReport, now: float) -> list[Point]:
        """Everything a tick reports: daemon, host, pools, config, and every counter so far."""
        t = time_ns(now)
        alloc = {
            p.name: max(0, p.running) * self._pool_cpus[p.name]
            for p in report.pools
            if p.name in self._pool_cpus
        }
        self._integrate(alloc, report.pilots_cpu, now)
        known = bool(self._pool_cpus) and len(alloc) == len(report.pools)
        points = [
            self._daemon(report, now, t),
            *(
                Point(DAEMON_STATE, {"value": int(s is report.state)}, self._tags(state=s.value), t)
                for s in RunState
            ),
            Point(BUILD_INFO, {"value": 1}, self._tags(version=tag_value(report.version)), t),
            self._host_point(report, sum(alloc.values()) if known else None, t),
            *(self._pool(p, alloc.get(p.name), now, t) for p in report.pools),
            self._config(t),
            *self._yields.points(self._tags(), t),
        ]
        for (kind, reason, pool), count in self._events.items():
            tags = self._tags(kind=kind, reason=reason)
            if pool is not None:
                tags[POOL_TAG] = pool
            points.append(Point(EVENTS, {"total": count}, tags, t))
        return points

    # --- the parts --------------------------------------------------------------------------
    def _tags(self, **more: str) -> dict[str, str]:
        return {HOST_TAG: self.host, **more}

    def _daemon(self, report: StatusReport, now: float, t: int) -> Point:
        fields: dict[str, FieldValue] = {
            "pilots": int(report.pilots),
            "docker_up": int(report.docker_ok),
            "error": int(bool(report.last_error)),
            "run_state": report.state.value,
            "last_error": text(report.last_error),
            "docker_error": text(report.docker_error),
        }
        _put(fields, "uptime_seconds", max(0.0, now - report.started))
        _put(fields, "start_time_seconds", report.started)
        if report.last_tick > 0:
            _put(fields, "tick_age_seconds", max(0.0, now - report.last_tick))
        return Point(DAEMON, fields, self._tags(), t)

    def _host_point(self, report: StatusReport, pilot_cpus: float | None, t: int) -> Point:
        fields: dict[str, FieldValue] = {"cpus": int(report.ncpus)}
        _put(fields, "used_cpus", report.host_cpu)
        _put(fields, "owner_cpus", report.owner_cpu)
        _put(fields, "spare_cpus", report.capacity_cpus)
        _put(fields, "pilot_cpus", pilot_cpus)
        _put(fields, "pilot_used_cpus", report.pilots_cpu)
        _put(fields, "pilot_used_cpu_seconds_total", self._used_seconds)
        if report.pilots_memory is not None:
            fields["pilot_memory_bytes"] = int(report.pilots_memory)
        return Point(HOST, fields, self._tags(), t)

    def _pool(self, pool: PoolStatus, alloc: float | None, now: float, t: int) -> Point:
        until = pool.backoff_until
        left = until - now if until is not None and math.isfinite(until) else 0.0
        fields: dict[str, FieldValue] = {
            "running_pilots": int(pool.running),
            "frozen_pilots": int(pool.frozen),
            "allowed_pilots": int(pool.allowed),
            "backoff": int(left > 0),
            "note": text(pool.note),
        }
        _put(fields, "backoff_remaining_seconds", max(0.0, left) if math.isfinite(left) else None)
        _put(fields, "pilot_cpus", alloc)
        _put(fields, "lost_cpu_seconds_total", self._lost.get(tag_value(pool.name), 0.0))
        if alloc is not None:
            _put(fields, "pilot_cpu_seconds_total", self._cpu_seconds.get(pool.name, 0.0))
        return Point(POOL, fields, self._tags(pool=tag_value(pool.name)), t)

    def _config(self, t: int) -> Point:
        fields: dict[str, FieldValue] = {
            "loaded_total": self._loaded,
            "rejected_total": self._rejected,
            "error": int(bool(self._config_error)),
            "error_message": self._config_error,
        }
        return Point(CONFIG, fields, self._tags(), t)

    def _integrate(self, alloc: dict[str, float], used: float, now: float) -> None:
        """Trapezoids between reports for the allotted CPUs, as InfluxQL's integral() draws
        them; a rectangle for the measured use, which is already the mean over the interval
        that ends at this report. A clock that went back or a gap over `max_gap` only moves the
        starting point."""
        last = self._last_now
        if last is not None and math.isfinite(now) and 0 < now - last <= self._max_gap:
            if math.isfinite(used) and used > 0:
                self._used_seconds += used * (now - last)
            for name, value in alloc.items():
                area = (self._last_alloc.get(name, 0.0) + value) / 2 * (now - last)
                self._cpu_seconds[name] = self._cpu_seconds.get(name, 0.0) + area
        if math.isfinite(now):
            self._last_now, self._last_alloc = now, alloc


def _event_fields(event: Event) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {"message": text(event.message)}
    if event.pilot:
        fields["pilot"] = text(event.pilot)
    if event.exit_code is not None:
        fields["exit_code"] = int(event.exit_code)
    _put(fields, "lifetime_seconds", pilot_lifetime(event))
    _put(fields, CPU_EXTRA, lost_cpu_seconds(event))
    if event.kind is EventKind.OWNER_YIELD:
        for name in YIELD_EXTRAS:
            _put(fields, name, extra_number(event, name))
        pilots = extra_number(event, "pilots")
        if pilots is not None:
            fields["pilots"] = int(pilots)
    if event.state:
        fields["state"] = text(event.state)
    return fields


class YieldHistogram:
    """The owner yield latencies as a Prometheus histogram (cumulative `le` buckets, sum and
    count), and the CPU pilots got while the owner waited. Emitted from the start, all zero, so
    `rate()` and `increase()` see the first yield too."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.pilot_cpu = 0.0
        self.buckets = [0] * len(YIELD_BUCKETS)

    def add(self, event: Event) -> None:
        latency = extra_number(event, "latency_seconds")
        if latency is None:
            return
        self.count += 1
        self.total += latency
        self.pilot_cpu += extra_number(event, "pilot_cpu_seconds") or 0.0
        for i, bound in enumerate(YIELD_BUCKETS):
            if latency <= bound:
                self.buckets[i] += 1

    def points(self, tags: dict[str, str], t: int) -> list[Point]:
        owner = Point(
            OWNER,
            {
                "yield_latency_seconds_sum": self.total,
                "yield_latency_seconds_count": self.count,
                "yield_pilot_cpu_seconds_total": self.pilot_cpu,
            },
            tags,
            t,
        )
        bounds = [*(f"{b:g}" for b in YIELD_BUCKETS), "+Inf"]
        counts = [*self.buckets, self.count]
        return [
            owner,
            *(
                Point(YIELD_LATENCY, {"bucket": n}, {**tags, LE_TAG: le}, t)
                for le, n in zip(bounds, counts, strict=True)
            ),
        ]
