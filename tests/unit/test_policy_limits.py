"""Stops that do not depend on the owner: ttl, run states, removed pools, a lowered max_pilots,
and what happens when max_pilots cannot be evaluated."""

from __future__ import annotations

from planctond.policy.model import PilotPhase, Reason, RunState
from planctond.policy.state import PolicyState
from tests.support.policy_sim import (
    T0_MONOTONIC,
    HostSim,
    actions,
    decide_once,
    make_config,
    pool,
    snapshot,
    started,
    view,
)

# --- ttl --------------------------------------------------------------------------------------


def test_ttl_stops_with_reason_ttl() -> None:
    cfg = make_config(pool(ttl=3600.0, max_pilots="2"))
    pilots = [view("old", age=3600.0), view("young", age=3599.0)]
    decision, _, _ = decide_once(cfg, snapshot(ncpus=8), pilots)
    assert [(a.pilot_id, a.reason) for a in decision.stop] == [("old", Reason.TTL)]
    assert "3600s" in decision.stop[0].detail


def test_ttl_stops_frozen_pilots_too() -> None:
    cfg = make_config(pool(ttl=60.0))
    pilots = [view("x", age=61.0, phase=PilotPhase.FROZEN)]
    state = PolicyState(frozen_since={"x": T0_MONOTONIC}, frozen_reason={"x": Reason.OWNER_CPU})
    decision, state, _ = decide_once(cfg, snapshot(ncpus=8, owner_cpu=8.0), pilots, state)
    assert [(a.pilot_id, a.reason) for a in decision.stop] == [("x", Reason.TTL)]
    assert not decision.thaw
    assert not state.frozen_since


def test_ttl_replacement_waits_for_the_old_pilot_to_go() -> None:
    """A pilot at its ttl gets stop_grace to finish; its replacement must not run next to it when
    that would exceed max_pilots, and is started as soon as the old one is gone."""
    cfg = make_config(pool(ttl=100.0, max_pilots="1", stop_grace=30.0), tick=10.0)
    sim = HostSim(cfg, ncpus=8, stop_delay=0.5)
    steps = sim.run(300)
    ttl_stops = actions(steps, "stop")
    assert ttl_stops and all(a.reason is Reason.TTL for _, a in ttl_stops)
    for s in steps:
        assert len(s.after) <= 1, f"t={s.now - T0_MONOTONIC}: {s.after}"
    # each pilot exits 15 s after its stop and is replaced in the same instant
    for ex in sim.exits:
        assert any(s.now == ex.now and s.decision.start for s in steps)


def test_ttl_uses_the_wall_clock_of_the_pilot_start() -> None:
    """Adopted pilots started before this daemon: their age comes from Docker's start time."""
    cfg = make_config(pool(ttl=3600.0))
    decision, _, _ = decide_once(cfg, snapshot(ncpus=8), [view("adopted", age=7200.0)])
    assert [a.reason for a in decision.stop] == [Reason.TTL]


# --- run states -------------------------------------------------------------------------------


def test_draining_starts_nothing_but_keeps_pilots() -> None:
    cfg = make_config(pool(max_pilots="4"))
    pilots = [view("a", age=10), view("b", age=5, phase=PilotPhase.FROZEN)]
    decision, _, verdicts = decide_once(
        cfg, snapshot(ncpus=16), pilots, run_state=RunState.DRAINING
    )
    assert decision.start == () and decision.stop == ()
    assert verdicts["default"].note == "draining"


def test_draining_pilots_still_reach_their_ttl() -> None:
    cfg = make_config(pool(ttl=50.0, max_pilots="2"), tick=10.0)
    sim = HostSim(cfg, ncpus=8, stop_delay=0.0)
    sim.run(10)
    sim.run_state = RunState.DRAINING
    steps = sim.run(100)
    assert [a.reason for _, a in actions(steps, "stop")] == [Reason.TTL, Reason.TTL]
    assert started(steps) == 0
    assert not sim.pilots


def test_stopped_stops_all_and_starts_none() -> None:
    cfg = make_config(pool("a"), pool("b"))
    pilots = [
        view("r", pool_name="a", age=10),
        view("f", pool_name="b", age=10, phase=PilotPhase.FROZEN),
        view("s", pool_name="a", age=10, phase=PilotPhase.STOPPING),
        view("gone", pool_name="zzz", age=10),
    ]
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=16), pilots, run_state=RunState.STOPPED)
    stops = {a.pilot_id: a for a in decision.stop}
    assert set(stops) == {"r", "f", "gone"}  # "s" is already on its way out
    assert all(a.reason is Reason.STOP_REQUESTED and a.detail for a in stops.values())
    assert decision.start == ()
    assert verdicts["a"].note == "stopped"


def test_resume_after_stopped_starts_at_once() -> None:
    cfg = make_config(pool(max_pilots="2"), grace_spawn=3600.0)
    sim = HostSim(cfg, ncpus=8, run_state=RunState.STOPPED)
    sim.run(30)
    assert not sim.pilots
    sim.run_state = RunState.ACTIVE
    step = sim.tick()
    assert sum(s.count for s in step.decision.start) == 2


# --- pools removed, max_pilots lowered --------------------------------------------------------


def test_pool_removed_stops_its_pilots() -> None:
    cfg = make_config(pool("kept"))
    pilots = [view("a", pool_name="gone", age=10), view("b", pool_name="kept", age=10)]
    decision, _, _ = decide_once(cfg, snapshot(ncpus=16), pilots)
    assert [(a.pilot_id, a.reason) for a in decision.stop] == [("a", Reason.POOL_REMOVED)]
    assert "'gone'" in decision.stop[0].detail


def test_max_pilots_lowered_stops_youngest_only_after_grace_kill() -> None:
    cfg = make_config(pool(max_pilots="4", per_tick=4), grace_kill=60.0, tick=10.0)
    sim = HostSim(cfg, ncpus=16)
    sim.run(10)
    # starts at t=0 have the same wall time; give them distinct ages
    for i, p in enumerate(sorted(sim.pilots.values(), key=lambda p: p.id)):
        p.started_wall -= 100 - i
    ids = sorted(sim.pilots)  # oldest first
    sim.with_config(make_config(pool(max_pilots="2", per_tick=4), grace_kill=60.0, tick=10.0))
    steps = sim.run(100)
    stops = actions(steps, "stop")
    assert [(t - T0_MONOTONIC, a.pilot_id, a.reason) for t, a in stops] == [
        (80.0, ids[3], Reason.OVER_MAX_PILOTS),
        (80.0, ids[2], Reason.OVER_MAX_PILOTS),
    ]
    assert all("max_pilots is 2" in a.detail for _, a in stops)
    assert started(steps) == 0
    assert not sim.state.excess_since


def test_max_pilots_dip_shorter_than_grace_kill_stops_nothing() -> None:
    p4 = make_config(pool(max_pilots="4", per_tick=4), grace_kill=60.0)
    p2 = make_config(pool(max_pilots="2", per_tick=4), grace_kill=60.0)
    sim = HostSim(p4, ncpus=16)
    sim.run(10)
    sim.with_config(p2).run(50)
    steps = sim.with_config(p4).run(200)
    assert not actions(sim.steps, "stop")
    assert not sim.state.excess_since
    assert started(steps) == 0  # nothing to replace


def test_max_pilots_lowered_counts_frozen_pilots_but_not_stopping_ones() -> None:
    cfg = make_config(pool(max_pilots="1"), grace_kill=0.0)
    pilots = [
        view("old", age=30, phase=PilotPhase.FROZEN),
        view("mid", age=20),
        view("leaving", age=10, phase=PilotPhase.STOPPING),
    ]
    state = PolicyState(frozen_since={"old": T0_MONOTONIC}, frozen_reason={"old": Reason.OWNER_CPU})
    decision, _, _ = decide_once(cfg, snapshot(ncpus=16, owner_cpu=15.0), pilots, state)
    assert [(a.pilot_id, a.reason) for a in decision.stop] == [("mid", Reason.OVER_MAX_PILOTS)]


# --- max_pilots that cannot be evaluated ------------------------------------------------------


def test_undefined_variable_in_max_pilots_keeps_pilots_and_starts_nothing() -> None:
    cfg = make_config(pool(max_pilots="2 if on_battery else 8"), grace_kill=0.0)
    pilots = [view("a", age=30), view("b", age=20)]
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=16), pilots)
    assert decision.empty
    assert verdicts["default"].allowed == 2
    assert len(decision.notes) == 1
    assert "max_pilots" in decision.notes[0] and "on_battery" in decision.notes[0]
    assert decision.notes[0].startswith("pool default:")


def test_undefined_max_pilots_with_starts_in_flight_stops_nothing() -> None:
    """A start already under way when the variable went missing is not an excess to punish."""
    cfg = make_config(pool(max_pilots="2 if on_battery else 8"), grace_kill=0.0)
    pilots = [view("a", age=30), view("b", age=20)]
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=16), pilots, starting={"default": 1})
    assert decision.empty
    assert verdicts["default"].allowed == 3


def test_undefined_variable_again_and_again_never_stops() -> None:
    cfg = make_config(pool(max_pilots="owner_idle / 60"), grace_kill=0.0, tick=10.0)
    sim = HostSim(cfg, ncpus=16, variables={"owner_idle": 600.0})
    sim.run(30)
    running = sim.count()
    assert running == 10  # 600 / 60, at per_tick 4 per tick
    sim.variables = {}
    steps = sim.run(600)
    assert not actions(steps, "stop") and started(steps) == 0
    assert sim.count() == running
    assert all(s.decision.notes for s in steps)


def test_max_pilots_division_by_zero_is_a_note_not_a_crash() -> None:
    cfg = make_config(pool(max_pilots="ncpus / (pilots - pilots)"))
    decision, _, _ = decide_once(cfg, snapshot(ncpus=4))
    assert decision.start == ()
    assert "division by zero" in decision.notes[0]
