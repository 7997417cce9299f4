"""The series every host reports (planctond's and Plancton 0.6's), from events and status reports.

Whatever the supervisor feeds them, the points must be sendable (finite numbers, non-empty tags,
one type per field), counters must never go back, and Plancton's names must stay exactly as its
users' dashboards query them."""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.config.model import Config, PoolConfig
from planctond.monitoring import legacy_series as L
from planctond.monitoring import series as S
from planctond.monitoring import series_spec as SP
from planctond.monitoring.point import Point, seconds_to_ns
from planctond.policy.model import Reason, RunState
from planctond.supervisor.api import PoolStatus, StatusReport
from planctond.supervisor.events import Event, EventKind

HOST = "node1"
T0 = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]
PILOT_KINDS = [k for k in EventKind if k.value.startswith("pilot-")]


def report(**kw: Any) -> StatusReport:
    values: dict[str, Any] = {
        "state": RunState.ACTIVE,
        "docker_ok": True,
        "docker_error": "",
        "pools": (
            PoolStatus("default", running=2, frozen=1, allowed=4, backoff_until=None, note=""),
        ),
        "pilots": 3,
        "capacity_cpus": 1.5,
        "owner_cpu": 0.5,
        "host_cpu": 3.0,
        "ncpus": 4,
        "started": T0 - 100.0,
        "version": "0.1.0",
        "config_path": "/etc/plancton/config.yaml",
        "last_error": "",
        "last_tick": T0 - 1.0,
    }
    values.update(kw)
    return StatusReport(**values)


def event(kind: EventKind, **kw: Any) -> Event:
    values: dict[str, Any] = {"message": f"{kind.value} happened", "time": T0}
    if kind in PILOT_KINDS:
        values |= {"pilot": "plancton-default-1", "pilot_id": "abc123", "pool": "default"}
    values.update(kw)
    return Event(kind=kind, **values)


def only(points: Iterable[Point], measurement: str, **tags: str) -> Point:
    found = [
        p
        for p in points
        if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())
    ]
    assert len(found) == 1, (measurement, tags, found)
    return found[0]


def assert_sendable(points: Iterable[Point], host: str = HOST) -> None:
    """Every point: a known field of the declared type, finite numbers, the host tag, and tags
    that no backend would refuse."""
    for p in points:
        assert p.tags.get(S.HOST_TAG) == host
        for key, tag in p.tags.items():
            assert key and tag, p
        for name, value in p.fields.items():
            spec = SP.SERIES_BY_FIELD.get((p.measurement, name))
            assert spec is not None, (p.measurement, name)
            assert set(p.tags) <= set(spec.tags), (p, spec.tags)
            expected = {
                SP.ValueType.INTEGER: int,
                SP.ValueType.FLOAT: float,
                SP.ValueType.STRING: str,
            }
            assert type(value) is expected[spec.value], (p.measurement, name, value)
            if isinstance(value, float):
                assert math.isfinite(value)
        assert p.time_ns >= 0


# --- every kind is a decision -----------------------------------------------------------------------
def test_every_event_kind_has_a_reason_vocabulary() -> None:
    assert set(S.KIND_REASONS) == set(EventKind)


def test_every_event_kind_has_a_legacy_meaning() -> None:
    assert set(L.LEGACY_EVENTS) == set(EventKind)


def test_pilot_reasons_cover_the_policy_and_every_emitter() -> None:
    for kind in (EventKind.PILOT_FROZEN, EventKind.PILOT_THAWED, EventKind.PILOT_STOPPED):
        assert {r.value for r in Reason} <= S.KIND_REASONS[kind]
    assert {r.value for r in Reason} <= S.KIND_REASONS[EventKind.PILOT_KILLED]
    # Literal reasons the supervisor writes next to a pilot event's kind.
    emitted: set[tuple[str, str]] = set()
    for path in (ROOT / "planctond" / "supervisor").glob("*.py"):
        source = path.read_text()
        for found in re.finditer(r"EventKind\.(PILOT_\w+)", source):
            call = source[found.end() :].split("emit(", 1)[0]
            for literal in re.findall(r'reason="([^"]+)"', call):
                emitted.add((found.group(1), literal))
    assert ("PILOT_STARTED", "spawned") in emitted  # the scan itself works
    for name, literal in emitted:
        assert literal in S.KIND_REASONS[EventKind[name]], (name, literal)


@pytest.mark.parametrize("kind", list(EventKind))
def test_each_kind_makes_its_point_and_counts_once(kind: EventKind) -> None:
    recorder = S.SeriesRecorder(HOST)
    points = recorder.on_event(event(kind))
    assert_sendable(points)
    happened = only(points, S.EVENT)
    counted = only(points, S.EVENTS)
    assert happened.tags[S.KIND_TAG] == counted.tags[S.KIND_TAG] == kind.value
    assert S.REASON_TAG in happened.tags
    assert counted.fields == {"total": 1}
    assert happened.time_ns == counted.time_ns == seconds_to_ns(T0)
    if kind in PILOT_KINDS:
        assert happened.tags[S.POOL_TAG] == "default"
        assert happened.fields["pilot"] == "plancton-default-1"
    assert recorder.on_event(event(kind))[1].fields == {"total": 2}


@pytest.mark.parametrize("kind", PILOT_KINDS)
def test_pilot_events_carry_reason_and_exit_code(kind: EventKind) -> None:
    reason = sorted(S.KIND_REASONS[kind])[0]
    points = S.SeriesRecorder(HOST).on_event(event(kind, reason=reason, exit_code=137))
    happened = only(points, S.EVENT)
    assert happened.tags[S.REASON_TAG] == reason
    assert happened.fields["exit_code"] == 137


@pytest.mark.parametrize(
    ("kind", "reason", "tag"),
    [
        (
            EventKind.DOCKER_LOST,
            "Error while fetching server API version: (2, 'No such file')",
            "none",
        ),
        (EventKind.POOL_BACKOFF, "pull access denied\nfor nosuch", "none"),
        (
            EventKind.CONFIG_REJECTED,
            "/etc/plancton/config.yaml:3: pools: expected a mapping",
            "none",
        ),
        (EventKind.PILOT_STOPPED, "something-new", "other"),
        (EventKind.PILOT_STOPPED, None, "none"),
        (EventKind.PILOT_STOPPED, "ttl", "ttl"),
        (EventKind.PILOT_STARTED, "adopted", "adopted"),
    ],
)
def test_free_text_reasons_never_become_tags(kind: EventKind, reason: str | None, tag: str) -> None:
    points = S.SeriesRecorder(HOST).on_event(event(kind, reason=reason))
    assert {p.tags[S.REASON_TAG] for p in points if p.measurement in (S.EVENT, S.EVENTS)} == {tag}


# --- lifetime of ended pilots ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "lifetime", "expected"),
    [  # the emitters (supervisor/pilot_ops.py _report_end) put it in `extra` with 3 decimals
        (EventKind.PILOT_EXITED, "12.300", 12.3),
        (EventKind.PILOT_EXITED, "0.000", 0.0),
        (EventKind.PILOT_STOPPED, "43200.000", 43200.0),
        (EventKind.PILOT_KILLED, "7.500", 7.5),
        (EventKind.PILOT_EXITED, None, None),
        (EventKind.PILOT_STARTED, "3.000", None),
    ],
)
def test_lifetime_of_ended_pilots(
    kind: EventKind, lifetime: str | None, expected: float | None
) -> None:
    extra = {} if lifetime is None else {S.LIFETIME_EXTRA: lifetime}
    assert S.pilot_lifetime(event(kind, message="after 1.0s", extra=extra)) == expected


def test_lifetime_from_extra_wins_and_bad_values_are_unknown() -> None:
    said = event(EventKind.PILOT_EXITED, message="after 1.0s", extra={S.LIFETIME_EXTRA: "60.5"})
    assert S.pilot_lifetime(said) == 60.5
    for bad in ("nan", "inf", "-1", "soon"):
        assert (
            S.pilot_lifetime(event(EventKind.PILOT_EXITED, extra={S.LIFETIME_EXTRA: bad})) is None
        )
    points = S.SeriesRecorder(HOST).on_event(said)
    assert only(points, S.EVENT).fields["lifetime_seconds"] == 60.5


# --- counters ---------------------------------------------------------------------------------------
def counter_values(
    points: Iterable[Point],
) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for p in points:
        for name, value in p.fields.items():
            spec = SP.SERIES_BY_FIELD[(p.measurement, name)]
            if spec.type is SP.SeriesType.COUNTER:
                assert isinstance(value, int | float)
                out[(p.measurement, name, tuple(sorted(p.tags.items())))] = float(value)
    return out


events_st = st.builds(
    Event,
    kind=st.sampled_from(EventKind),
    message=st.text(max_size=40),
    pilot=st.none() | st.text(max_size=10),
    pilot_id=st.none() | st.text(max_size=10),
    pool=st.none()
    | st.sampled_from(["", "default", "alice", "ünïcode pool"])
    | st.text(max_size=8),
    reason=st.none()
    | st.sampled_from(sorted({r.value for r in Reason} | {"spawned", "exited"}))
    | st.text(max_size=20),
    exit_code=st.none() | st.integers(-(2**31), 2**31),
    state=st.none() | st.sampled_from([s.value for s in RunState]) | st.text(max_size=8),
    extra=st.dictionaries(
        st.sampled_from([S.LIFETIME_EXTRA, "other"]),
        st.text(max_size=8) | st.floats().map(str),
        max_size=2,
    ),
    time=st.floats(),
)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1024)
pools_st = st.lists(
    st.builds(
        PoolStatus,
        name=st.text(max_size=12),
        running=st.integers(0, 10_000),
        frozen=st.integers(0, 10_000),
        allowed=st.integers(0, 10_000),
        backoff_until=st.none() | numbers,
        note=st.text(max_size=40),
    ),
    max_size=4,
    unique_by=lambda p: p.name,
).map(tuple)
reports_st = st.builds(
    StatusReport,
    state=st.sampled_from(RunState),
    docker_ok=st.booleans(),
    docker_error=st.text(max_size=40),
    pools=pools_st,
    pilots=st.integers(0, 100_000),
    capacity_cpus=numbers,
    owner_cpu=numbers,
    host_cpu=numbers,
    ncpus=st.integers(0, 4096),
    started=numbers,
    version=st.text(max_size=10),
    config_path=st.text(max_size=10),
    last_error=st.text(max_size=40),
    last_tick=numbers,
)
steps_st = st.lists(
    st.one_of(events_st, st.tuples(reports_st, numbers, st.floats(0, 8))),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps_st)
def test_any_feed_gives_sendable_points_and_counters_that_never_go_back(
    steps: list[Event | tuple[StatusReport, float, float]],
) -> None:
    recorder = S.SeriesRecorder(HOST)
    seen: dict[Any, float] = {}
    for step in steps:
        if isinstance(step, Event):
            points = recorder.on_event(step)
            legacy = L.legacy_event(step, HOST)
        else:
            rep, now, cpus = step
            recorder.set_pool_cpus({p.name: cpus for p in rep.pools[::2]})
            points = recorder.status(rep, now)
            legacy = L.legacy_status(rep, now, HOST)
        assert_sendable(points)
        assert_legacy_sendable(legacy)
        for key, value in counter_values(points).items():
            assert value >= seen.get(key, 0.0), key
            seen[key] = value


@settings(max_examples=100, deadline=None)
@given(kinds=st.lists(st.sampled_from(EventKind), max_size=40))
def test_event_counters_count_exactly(kinds: list[EventKind]) -> None:
    recorder = S.SeriesRecorder(HOST)
    for kind in kinds:
        recorder.on_event(event(kind))
    totals = {
        p.tags[S.KIND_TAG]: p.fields["total"]
        for p in recorder.status(report(), T0)
        if p.measurement == S.EVENTS
    }
    assert totals == {k.value: kinds.count(k) for k in set(kinds)}
    config = only(recorder.status(report(), T0), S.CONFIG)
    assert config.fields["loaded_total"] == kinds.count(EventKind.CONFIG_LOADED)
    assert config.fields["rejected_total"] == kinds.count(EventKind.CONFIG_REJECTED)


def test_config_error_is_set_by_a_rejection_and_cleared_by_a_load() -> None:
    recorder = S.SeriesRecorder(HOST)
    assert only(recorder.status(report(), T0), S.CONFIG).fields == {
        "loaded_total": 0,
        "rejected_total": 0,
        "error": 0,
        "error_message": "",
    }
    why = "/etc/plancton/config.yaml:4: pools.a.cpus: expected a number"
    rejected = only(recorder.on_event(event(EventKind.CONFIG_REJECTED, reason=why)), S.CONFIG)
    assert rejected.fields == {
        "loaded_total": 0,
        "rejected_total": 1,
        "error": 1,
        "error_message": why,
    }
    loaded = only(recorder.on_event(event(EventKind.CONFIG_LOADED)), S.CONFIG)
    assert loaded.fields == {
        "loaded_total": 1,
        "rejected_total": 1,
        "error": 0,
        "error_message": "",
    }


# --- status -----------------------------------------------------------------------------------------
def test_status_reports_daemon_host_pools_and_state() -> None:
    backoff = PoolStatus(
        "alice", running=0, frozen=0, allowed=0, backoff_until=T0 + 30, note="failing"
    )
    rep = report(pools=(*report().pools, backoff), state=RunState.DRAINING, last_error="boom")
    points = S.SeriesRecorder(HOST).status(rep, T0)
    assert_sendable(points)
    assert {p.time_ns for p in points} == {seconds_to_ns(T0)}
    daemon = only(points, S.DAEMON).fields
    assert daemon["uptime_seconds"] == 100.0
    assert daemon["start_time_seconds"] == T0 - 100.0
    assert daemon["tick_age_seconds"] == 1.0
    assert (daemon["docker_up"], daemon["error"], daemon["pilots"]) == (1, 1, 3)
    assert (daemon["run_state"], daemon["last_error"]) == ("draining", "boom")
    states = {
        p.tags[SP.STATE_TAG]: p.fields["value"] for p in points if p.measurement == S.DAEMON_STATE
    }
    assert states == {"active": 0, "draining": 1, "stopped": 0}
    assert only(points, S.BUILD_INFO, version="0.1.0").fields == {"value": 1}
    host = only(points, S.HOST).fields
    assert host == {
        **{"cpus": 4, "used_cpus": 3.0, "owner_cpus": 0.5, "spare_cpus": 1.5},
        **{"pilot_used_cpus": 0.0, "pilot_used_cpu_seconds_total": 0.0},
    }
    default = only(points, S.POOL, pool="default").fields
    assert (default["running_pilots"], default["frozen_pilots"], default["allowed_pilots"]) == (
        2,
        1,
        4,
    )
    assert (default["backoff"], default["backoff_remaining_seconds"]) == (0, 0.0)
    alice = only(points, S.POOL, pool="alice").fields
    assert (alice["backoff"], alice["backoff_remaining_seconds"], alice["note"]) == (
        1,
        30.0,
        "failing",
    )
    assert "pilot_cpus" not in default  # no pool cpus given: nothing to allot


def test_before_the_first_tick_there_is_no_tick_age() -> None:
    daemon = only(S.SeriesRecorder(HOST).status(report(last_tick=0.0), T0), S.DAEMON)
    assert "tick_age_seconds" not in daemon.fields


def test_counters_are_repeated_in_every_status() -> None:
    recorder = S.SeriesRecorder(HOST)
    recorder.on_event(event(EventKind.PILOT_STOPPED, reason="owner-cpu"))
    for now in (T0, T0 + 10):
        stopped = only(recorder.status(report(), now), S.EVENTS, kind="pilot-stopped")
        assert stopped.fields == {"total": 1}
        assert stopped.tags == {
            "host": HOST,
            "kind": "pilot-stopped",
            "reason": "owner-cpu",
            "pool": "default",
        }


# --- harvest ----------------------------------------------------------------------------------------
def pools(**running: int) -> tuple[PoolStatus, ...]:
    return tuple(PoolStatus(n, r, 0, 8, None, "") for n, r in running.items())


def test_allotted_cpus_and_their_integral_per_pool_and_host() -> None:
    recorder = S.SeriesRecorder(HOST)
    recorder.set_pool_cpus(
        S.pool_cpus_of(Config(pools=(PoolConfig("a", cpus=2.0), PoolConfig("b", cpus=0.5))))
    )
    first = recorder.status(report(pools=pools(a=3, b=2)), T0)
    assert only(first, S.POOL, pool="a").fields["pilot_cpus"] == 6.0
    assert only(first, S.POOL, pool="a").fields["pilot_cpu_seconds_total"] == 0.0
    assert only(first, S.HOST).fields["pilot_cpus"] == 7.0
    second = recorder.status(report(pools=pools(a=3, b=2)), T0 + 10)
    assert only(second, S.POOL, pool="a").fields["pilot_cpu_seconds_total"] == 60.0
    assert only(second, S.POOL, pool="b").fields["pilot_cpu_seconds_total"] == 10.0
    third = recorder.status(report(pools=pools(a=1, b=0)), T0 + 20)  # trapezoid: (6 + 2) / 2 * 10
    assert only(third, S.POOL, pool="a").fields["pilot_cpu_seconds_total"] == 100.0
    assert only(third, S.POOL, pool="b").fields["pilot_cpu_seconds_total"] == 15.0
    assert only(third, S.HOST).fields["pilot_cpus"] == 2.0


def test_gaps_and_clock_steps_are_not_counted_as_harvest() -> None:
    recorder = S.SeriesRecorder(HOST, max_gap=60.0)
    recorder.set_pool_cpus({"a": 1.0})

    def total(now: float) -> object:
        return only(recorder.status(report(pools=pools(a=1)), now), S.POOL).fields[
            "pilot_cpu_seconds_total"
        ]

    assert total(T0) == 0.0
    assert total(T0 + 3600) == 0.0  # suspended: nothing says the pilots ran
    assert total(T0 + 3610) == 10.0
    assert total(T0 + 100) == 10.0  # the clock went back
    assert total(T0 + 110) == 20.0
    assert total(math.nan) == 20.0


def test_host_pilot_cpus_needs_every_pools_cpus() -> None:
    recorder = S.SeriesRecorder(HOST)
    recorder.set_pool_cpus({"a": 1.0})
    points = recorder.status(report(pools=pools(a=1, b=1)), T0)
    assert "pilot_cpus" not in only(points, S.HOST).fields
    assert "pilot_cpus" not in only(points, S.POOL, pool="b").fields
    assert only(points, S.POOL, pool="a").fields["pilot_cpus"] == 1.0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_pool_cpus_must_be_real(bad: float) -> None:
    with pytest.raises(ValueError):
        S.SeriesRecorder(HOST).set_pool_cpus({"a": bad})


def test_the_host_tag_cannot_be_empty() -> None:
    with pytest.raises(ValueError):
        S.SeriesRecorder("")
    with pytest.raises(ValueError):
        L.legacy_status(report(), T0, "")


# --- descriptions -----------------------------------------------------------------------------------
def test_series_descriptions_are_good_prometheus_citizens() -> None:
    names = [s.name for s in SP.SERIES]
    assert len(names) == len(set(names))
    for spec in SP.SERIES:
        assert re.fullmatch(r"planctond_[a-z_]+", spec.name), spec.name
        assert spec.help and spec.help.endswith("."), spec
        assert S.HOST_TAG in spec.tags
        if spec.type is SP.SeriesType.COUNTER:
            assert spec.name.endswith("_total") and spec.value is not SP.ValueType.STRING
        if spec.type is SP.SeriesType.GAUGE:
            assert spec.value is not SP.ValueType.STRING
        if spec.type is SP.SeriesType.TEXT:
            assert spec.value is SP.ValueType.STRING
        if spec.unit:
            family = re.sub(r"_(bucket|sum|count)$", "", spec.name)  # a histogram's parts
            base = family if spec.type is SP.SeriesType.HISTOGRAM else spec.name
            assert base.removesuffix("_total").endswith("_" + spec.unit), spec.name


def test_the_series_modules_do_no_io_and_respect_the_layers() -> None:
    allowed = (
        *("planctond.config", "planctond.constants", "planctond.text", "planctond.supervisor"),
        *("planctond.policy.model", "planctond.monitoring.point", "planctond.monitoring.series"),
    )
    stdlib = {"__future__", "math", "re", "collections.abc", "dataclasses", "enum", "typing"}
    for module in (S, L):
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                )
                for name in names:
                    assert name in stdlib or (name or "").startswith(allowed), (module, name)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in {"open", "print", "input"}


# --- Plancton 0.6 -----------------------------------------------------------------------------------
LEGACY_FIELDS = {
    "daemon": {"uptime", "status", "containers"},
    "measurement": {"cpu_eff"},
    "container": {"uptime"},
}


def assert_legacy_sendable(points: Iterable[Point], host: str = HOST) -> None:
    for p in points:
        assert set(p.fields) <= LEGACY_FIELDS[p.measurement]
        assert p.tags["hostname"] == host
        if p.measurement == "container":
            assert set(p.tags) == {"hostname", "started", "killed"}
            assert {p.tags["started"], p.tags["killed"]} <= {"True", "False"}
        else:
            assert set(p.tags) == {"hostname"}
        for name, value in p.fields.items():
            assert type(value) is (str if name == "status" else float), (name, value)
            assert not isinstance(value, float) or math.isfinite(value)
        assert p.time_ns >= 0


@pytest.mark.parametrize(
    ("state", "docker_ok", "status"),
    [
        (RunState.ACTIVE, True, "active"),
        (RunState.DRAINING, True, "draining"),
        (RunState.STOPPED, True, "stopped"),
        (RunState.ACTIVE, False, "waiting"),
        (RunState.DRAINING, False, "waiting"),
    ],
)
def test_legacy_status_names_and_values(state: RunState, docker_ok: bool, status: str) -> None:
    points = L.legacy_status(report(state=state, docker_ok=docker_ok), T0, HOST)
    assert_legacy_sendable(points)
    daemon = only(points, "daemon", hostname=HOST)
    expected: dict[str, object] = {"uptime": 100.0, "status": status}
    if docker_ok:
        expected["containers"] = 3.0
    assert daemon.fields == expected
    assert only(points, "measurement", hostname=HOST).fields == {"cpu_eff": 75.0}
    assert {p.time_ns for p in points} == {seconds_to_ns(T0)}


@pytest.mark.parametrize(
    ("host_cpu", "ncpus", "eff"), [(0.0, 4, 0.0), (4.0, 4, 100.0), (6.0, 4, 100.0), (-1.0, 2, 0.0)]
)
def test_legacy_cpu_eff_is_a_percentage(host_cpu: float, ncpus: int, eff: float) -> None:
    points = L.legacy_status(report(host_cpu=host_cpu, ncpus=ncpus), T0, HOST)
    assert only(points, "measurement").fields == {"cpu_eff": eff}


def test_no_cpu_eff_without_cpus() -> None:
    assert [p.measurement for p in L.legacy_status(report(ncpus=0), T0, HOST)] == ["daemon"]


@pytest.mark.parametrize(
    ("kind", "reason", "message", "tags", "uptime"),
    [
        (
            EventKind.PILOT_EXITED,
            "exited",
            "exited with code 0 after 12.5s",
            ("True", "False"),
            12.5,
        ),
        (
            EventKind.PILOT_STOPPED,
            "ttl",
            "stopped (ttl: old), exit code 143 after 43200.0s",
            ("True", "True"),
            43200.0,
        ),
        (
            EventKind.PILOT_STOPPED,
            "owner-cpu",
            "stopped (owner-cpu: busy), exit code 0 after 9.0s",
            ("True", "True"),
            9.0,
        ),
        (
            EventKind.PILOT_KILLED,
            "shutdown",
            "killed: still running after its stop grace (shutdown: x), lived 40.0s",
            ("True", "True"),
            40.0,
        ),
        (EventKind.PILOT_STOPPED, "never-started", "removed", ("False", "False"), 0.0),
    ],
)
def test_legacy_container_series(
    kind: EventKind, reason: str, message: str, tags: tuple[str, str], uptime: float
) -> None:
    lived = {S.LIFETIME_EXTRA: f"{uptime:.3f}"}
    points = L.legacy_event(event(kind, reason=reason, message=message, extra=lived), HOST)
    assert_legacy_sendable(points)
    assert len(points) == 1
    assert points[0].measurement == "container"
    assert points[0].tags == {"hostname": HOST, "started": tags[0], "killed": tags[1]}
    assert points[0].fields == {"uptime": uptime}
    assert points[0].time_ns == seconds_to_ns(T0)


def test_legacy_events_without_lifetime_or_meaning_write_nothing() -> None:
    assert L.legacy_event(event(EventKind.PILOT_EXITED, message="exited… (cut)"), HOST) == []
    for kind, write in L.LEGACY_EVENTS.items():
        if write is L.LegacyWrite.NOTHING:
            assert L.legacy_event(event(kind), HOST) == []


def test_docker_lost_is_plancton_waiting_at_once() -> None:
    points = L.legacy_event(event(EventKind.DOCKER_LOST, reason="gone"), HOST)
    assert [(p.measurement, dict(p.fields), dict(p.tags)) for p in points] == [
        ("daemon", {"status": "waiting"}, {"hostname": HOST})
    ]


def test_plancton_hostname_is_the_short_name() -> None:
    assert L.plancton_hostname("wn01.to.infn.it") == "wn01"
    assert L.plancton_hostname("wn01") == "wn01"
