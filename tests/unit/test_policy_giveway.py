"""The give-way ladder: grace_kill -> freeze (youngest first) -> thaw or stop -> grace_spawn.

Times below are seconds since the simulation began; the simulated host decides every `tick`
(10 s) and at once whenever a pilot ends.
"""

from __future__ import annotations

from planctond.policy.model import PilotPhase, Reason, RunState
from planctond.policy.state import PolicyState
from tests.support.policy_sim import (
    T0_MONOTONIC,
    GiB,
    HostSim,
    Step,
    actions,
    decide_once,
    make_config,
    pool,
    segments,
    snapshot,
    steady,
    view,
)

MiB = 1024**2


def t_of(step: Step) -> float:
    return step.now - T0_MONOTONIC


def ladder_sim(owner_parts: list[tuple[float, float, int]], **owner_cfg: float) -> HostSim:
    """4 CPUs, three 1-CPU pilots started at t=0, 10, 20 (per_tick 1) so their ages differ."""
    kw: dict[str, float] = {"grace_kill": 60.0, "freeze": 30.0, "grace_spawn": 60.0}
    kw.update(owner_cfg)
    cfg = make_config(pool(max_pilots="3", per_tick=1), tick=10.0, **kw)  # type: ignore[arg-type]
    return HostSim(cfg, ncpus=4, owner=segments(owner_parts))


def first_pilots(sim: HostSim) -> list[str]:
    return sorted(sim.pilots)  # ids are issued in start order: oldest first


def test_freeze_youngest_first_after_grace_kill_then_stop_after_freeze() -> None:
    sim = ladder_sim([(100, 0.0, 0), (1000, 2.0, 0)])
    sim.run(90)
    oldest, middle, youngest = first_pilots(sim)
    steps = sim.run(110)  # to t=200
    freezes = actions(steps, "freeze")
    # the owner needs 2 CPUs from t=100: spare 1.5 < 3 entitled + 0.25 margin; 60 s later, the two
    # youngest are frozen, which is just enough (1 <= 1.5)
    assert [(t - T0_MONOTONIC, a.pilot_id) for t, a in freezes] == [
        (160.0, youngest),
        (160.0, middle),
    ]
    for _, a in freezes:
        assert a.reason is Reason.OWNER_CPU
        assert "owner uses 2.00 CPUs" in a.detail
    stops = actions(steps, "stop")
    assert [(t - T0_MONOTONIC, a.pilot_id, a.reason) for t, a in stops] == [
        (190.0, middle, Reason.OWNER_CPU),
        (190.0, youngest, Reason.OWNER_CPU),
    ]
    assert all("after 30s frozen" in a.detail for _, a in stops)
    assert sim.pilots[oldest].phase is PilotPhase.RUNNING
    assert sim.state.gave_way_at == T0_MONOTONIC + 190.0
    assert not any(s.decision.start for s in steps)


def test_nothing_starts_for_grace_spawn_after_giving_way() -> None:
    sim = ladder_sim([(100, 0.0, 0), (100, 2.0, 0), (1000, 0.0, 0)])
    steps = sim.run(400)
    gave_way = [
        t_of(s) for s in steps if any(a.reason is Reason.OWNER_CPU for a in s.decision.stop)
    ]
    assert gave_way == [190.0]
    first_start_after = min(t_of(s) for s in steps if s.decision.start and t_of(s) > 190)
    assert first_start_after == 250.0  # owner gone at 200, but grace_spawn runs from 190
    blocked = [s for s in steps if 190 < t_of(s) < 250]
    assert blocked and all("grace_spawn" in s.verdicts["default"].note for s in blocked)
    assert sim.count("default", PilotPhase.RUNNING) == 3  # all back eventually


def test_thaw_when_the_owner_leaves_within_freeze() -> None:
    sim = ladder_sim([(100, 0.0, 0), (75, 2.0, 0), (1000, 0.0, 0)])
    steps = sim.run(300)
    freezes = actions(steps, "freeze")
    thaws = actions(steps, "thaw")
    assert {a.pilot_id for _, a in freezes} == {a.pilot_id for _, a in thaws}
    assert [t - T0_MONOTONIC for t, _ in thaws] == [180.0, 180.0]
    assert all(a.reason is Reason.OWNER_GONE and a.detail for _, a in thaws)
    assert not actions(steps, "stop")
    assert sim.state.gave_way_at is None
    assert not sim.state.frozen_since
    assert sim.count("default", PilotPhase.RUNNING) == 3


def test_thaw_oldest_first_as_far_as_they_fit_then_stop_the_rest() -> None:
    sim = ladder_sim([(100, 0.0, 0), (75, 2.0, 0), (1000, 1.0, 0)])
    sim.run(90)
    _, middle, youngest = first_pilots(sim)
    steps = sim.run(210)
    # at t=180 the owner uses 1 CPU: spare 2.5 fits the oldest + the middle one, not the youngest
    assert [(t - T0_MONOTONIC, a.pilot_id) for t, a in actions(steps, "thaw")] == [(180.0, middle)]
    assert [(t - T0_MONOTONIC, a.pilot_id) for t, a in actions(steps, "stop")] == [
        (190.0, youngest)
    ]


def test_blip_shorter_than_grace_kill_costs_nothing_but_blocks_starts() -> None:
    sim = ladder_sim([(100, 0.0, 0), (50, 3.0, 0), (1000, 0.0, 0)])
    sim.run(90)
    steps = sim.run(110)
    assert not actions(steps, "freeze") and not actions(steps, "stop")
    short = [s for s in steps if 100 <= t_of(s) < 150]
    assert short and all(s.verdicts["default"].note == "the owner needs the host" for s in short)
    assert sim.state.overload_since is None


def test_grace_kill_counts_from_when_the_owner_started_needing_the_cpu() -> None:
    """A dip below the line restarts the clock: grace_kill means *continuously*."""
    sim = ladder_sim([(100, 0.0, 0), (50, 3.0, 0), (10, 0.0, 0), (1000, 3.0, 0)])
    steps = sim.run(300)
    assert next(t for t, _ in actions(steps, "freeze")) - T0_MONOTONIC == 220.0


def test_freeze_zero_stops_directly_after_grace_kill() -> None:
    sim = ladder_sim([(100, 0.0, 0), (1000, 2.0, 0)], freeze=0.0)
    sim.run(90)
    _, middle, youngest = first_pilots(sim)
    steps = sim.run(200)
    assert not actions(steps, "freeze")
    stops = actions(steps, "stop")
    assert [(t - T0_MONOTONIC, a.pilot_id, a.reason) for t, a in stops] == [
        (160.0, youngest, Reason.OWNER_CPU),
        (160.0, middle, Reason.OWNER_CPU),
    ]
    assert all("owner uses 2.00 CPUs" in a.detail for _, a in stops)
    assert sim.state.gave_way_at == T0_MONOTONIC + 160.0


def test_grace_kill_zero_gives_way_on_the_first_reading() -> None:
    sim = ladder_sim([(100, 0.0, 0), (1000, 2.0, 0)], grace_kill=0.0, freeze=0.0)
    steps = sim.run(200)
    assert [t - T0_MONOTONIC for t, _ in actions(steps, "stop")] == [100.0, 100.0]


def test_memory_shortage_is_answered_the_same_way() -> None:
    """The owner's memory grows until MemAvailable is under reserve_memory: after grace_kill the
    youngest pilot is frozen, then stopped after `freeze`, then nothing starts for grace_spawn."""
    p = pool(max_pilots="3", per_tick=1, memory=GiB)
    cfg = make_config(
        p,
        tick=10.0,
        grace_kill=60.0,
        freeze=30.0,
        grace_spawn=60.0,
        reserve_memory=GiB,
    )
    # 8 GiB host: 3 pilots hold 3 GiB; an owner of 4.5 GiB leaves 0.5 GiB
    sim = HostSim(
        cfg,
        ncpus=16,
        mem_total=8 * GiB,
        owner=segments([(100, 0.0, 0), (1000, 0.0, int(4.5 * GiB))]),
    )
    sim.run(90)
    _, middle, youngest = first_pilots(sim)
    steps = sim.run(200)
    freezes = actions(steps, "freeze")
    assert freezes[0][1].pilot_id == youngest
    assert freezes[0][0] - T0_MONOTONIC == 160.0
    assert all(a.reason is Reason.OWNER_MEMORY and "memory" in a.detail for _, a in freezes)
    stops = actions(steps, "stop")
    assert (stops[0][0] - T0_MONOTONIC, stops[0][1].pilot_id) == (190.0, youngest)
    assert stops[0][1].reason is Reason.OWNER_MEMORY
    # 1.5 GiB available once it is gone: enough, the others stay
    assert not any(a.pilot_id == middle for _, a in stops)
    assert sim.state.gave_way_at == T0_MONOTONIC + 190.0
    assert not any(s.decision.start for s in steps)


def test_frozen_pilots_block_every_start_in_every_pool() -> None:
    cfg = make_config(pool("a", max_pilots="1"), pool("b", max_pilots="5"))
    pilots = [view("x", pool_name="a", age=60, phase=PilotPhase.FROZEN)]
    state = PolicyState(frozen_since={"x": T0_MONOTONIC - 5}, frozen_reason={"x": Reason.OWNER_CPU})
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=16, owner_cpu=15.0), pilots, state)
    assert decision.start == ()
    assert "frozen" in verdicts["b"].note


def test_an_adopted_paused_pilot_is_thawed_when_it_fits() -> None:
    cfg = make_config(pool())
    pilots = [view("x", age=600, phase=PilotPhase.FROZEN)]
    decision, state, _ = decide_once(cfg, snapshot(ncpus=4), pilots)
    assert [(a.pilot_id, a.reason) for a in decision.thaw] == [("x", Reason.OWNER_GONE)]
    assert not state.frozen_since


def test_an_adopted_paused_pilot_is_stopped_after_freeze_if_it_never_fits() -> None:
    cfg = make_config(pool(), freeze=30.0)
    pilots = [view("x", age=600, phase=PilotPhase.FROZEN)]
    host = snapshot(ncpus=4, owner_cpu=4.0)
    d1, state, _ = decide_once(cfg, host, pilots)
    assert d1.empty and "x" in state.frozen_since
    later = snapshot(ncpus=4, owner_cpu=4.0, now=T0_MONOTONIC + 30)
    d2, state, _ = decide_once(cfg, later, pilots, state)
    assert [(a.pilot_id, a.reason) for a in d2.stop] == [("x", Reason.OWNER_CPU)]
    assert state.gave_way_at == T0_MONOTONIC + 30


def test_hysteresis_line_exactly() -> None:
    """Give way only when the entitled CPUs exceed spare + margin: at the line, nothing."""
    cfg = make_config(pool(), reserve=0.5, margin=0.25, grace_kill=0.0, freeze=0.0)
    pilots = [view("a", age=30), view("b", age=20), view("c", age=10)]
    at_line = snapshot(ncpus=4, owner_cpu=0.75)  # spare 2.75, entitled 3 = spare + margin
    decision, state, verdicts = decide_once(cfg, at_line, pilots)
    assert decision.empty and state.overload_since is None
    assert "no spare CPU" in verdicts["default"].note
    over = snapshot(ncpus=4, owner_cpu=0.76)
    decision, _, _ = decide_once(cfg, over, pilots)
    assert [a.pilot_id for a in decision.stop] == ["c"]  # 2 <= 2.74 after one


def test_victims_are_the_youngest_until_the_rest_fits() -> None:
    """... until they fit the spare CPUs, not merely spare + margin: the margin is what keeps the
    next small rise of the owner from another give-way."""
    cfg = make_config(pool(cpus=0.5), reserve=0.0, margin=0.5, grace_kill=0.0, freeze=10.0)
    pilots = [view(f"p{i}", age=100 - i, cpus=0.5) for i in range(6)]  # p5 youngest
    decision, _, _ = decide_once(cfg, snapshot(ncpus=4, owner_cpu=2.2), pilots)
    # 3 entitled, 1.8 spare (+ 0.5 margin): freeze p5, p4, p3 -> 1.5 left
    assert [a.pilot_id for a in decision.freeze] == ["p5", "p4", "p3"]


def test_owner_using_everything_freezes_every_running_pilot() -> None:
    cfg = make_config(pool(), grace_kill=0.0, freeze=10.0)
    pilots = [view("a", age=30), view("b", age=20)]
    decision, state, _ = decide_once(cfg, snapshot(ncpus=4, owner_cpu=4.0), pilots)
    assert {a.pilot_id for a in decision.freeze} == {"a", "b"}
    # nothing left to freeze, the owner still needs the host: no action, no start
    frozen = [
        view("a", age=31, phase=PilotPhase.FROZEN),
        view("b", age=21, phase=PilotPhase.FROZEN),
    ]
    later = snapshot(ncpus=4, owner_cpu=4.0, now=T0_MONOTONIC + 1)
    decision, state, _ = decide_once(cfg, later, frozen, state)
    assert decision.empty


def test_give_way_while_draining() -> None:
    cfg = make_config(pool(), grace_kill=0.0, freeze=0.0)
    pilots = [view("a", age=30), view("b", age=20)]
    decision, _, _ = decide_once(
        cfg, snapshot(ncpus=4, owner_cpu=3.0), pilots, run_state=RunState.DRAINING
    )
    assert [a.pilot_id for a in decision.stop] == ["b", "a"]


def test_one_burning_pilot_with_max_pilots_one_stays_up() -> None:
    """Plancton 0.6 counted a pilot's own load as the owner's and killed it every cycle."""
    cfg = make_config(pool(max_pilots="1", cpus=1.0), grace_kill=20.0, freeze=10.0, tick=5.0)
    sim = HostSim(cfg, ncpus=2, owner=steady(0.0), pilot_load=1.0)
    steps = sim.run(3600)
    assert sum(x.count for s in steps for x in s.decision.start) == 1
    assert not actions(steps, "freeze") and not actions(steps, "stop")
    assert all(s.host.pilots_cpu == 1.0 and s.host.owner_cpu == 0.0 for s in steps[1:])


def test_give_way_then_come_back_full_cycle_with_burning_pilots() -> None:
    cfg = make_config(pool(max_pilots="ncpus - 1"), grace_kill=30.0, freeze=20.0, grace_spawn=40.0)
    owner = segments([(200, 0.0, 0), (200, 3.0, 0), (1000, 0.0, 0)])
    sim = HostSim(cfg, ncpus=4, owner=owner, pilot_load=1.0)
    steps = sim.run(1000)
    assert sim.count("default", PilotPhase.RUNNING) == 3
    stops = actions(steps, "stop")
    assert stops and all(a.reason is Reason.OWNER_CPU for _, a in stops)
    assert max(t for t, _ in stops) - T0_MONOTONIC == 250.0  # 200 + 30 grace_kill + 20 freeze
    starts_after = [t_of(s) for s in steps if s.decision.start and t_of(s) > 250]
    assert min(starts_after) == 400.0  # grace_spawn ended at 290; the owner left at 400


def test_state_is_not_mutated_by_decide() -> None:
    cfg = make_config(pool(), grace_kill=0.0)
    state = PolicyState()
    pilots = [view("a", age=30)]
    decide_once(cfg, snapshot(ncpus=4, owner_cpu=4.0), pilots, state)
    assert state == PolicyState()


def test_memory_short_with_cpu_fine_freezes_one_per_grace_kill() -> None:
    cfg = make_config(pool(), grace_kill=0.0, freeze=60.0, reserve_memory=GiB)
    pilots = [view("a", age=30), view("b", age=20)]
    host = snapshot(ncpus=8, mem_total=8 * GiB, mem_available=512 * MiB)
    decision, _, _ = decide_once(cfg, host, pilots)
    assert [(a.pilot_id, a.reason) for a in decision.freeze] == [("b", Reason.OWNER_MEMORY)]


def test_a_freeze_not_yet_applied_is_remembered() -> None:
    """The supervisor pauses asynchronously: a decision taken before the pause took hold (an exit
    elsewhere) must not freeze the same pilots again nor restart their `freeze` clock."""
    cfg = make_config(pool(), grace_kill=0.0, freeze=30.0)
    pilots = [view("a", age=30), view("b", age=20)]
    d1, state, _ = decide_once(cfg, snapshot(ncpus=4, owner_cpu=3.0), pilots)
    assert {a.pilot_id for a in d1.freeze} == {"a", "b"}
    gap = snapshot(ncpus=4, owner_cpu=3.0, now=T0_MONOTONIC + 0.1)
    d2, state2, verdicts = decide_once(cfg, gap, pilots, state)  # still shown as running
    assert d2.empty
    assert state2.frozen_since == state.frozen_since
    assert "frozen" in verdicts["default"].note
    later = snapshot(ncpus=4, owner_cpu=3.0, now=T0_MONOTONIC + 30)
    frozen = [
        view("a", age=60, phase=PilotPhase.FROZEN),
        view("b", age=50, phase=PilotPhase.FROZEN),
    ]
    d3, _, _ = decide_once(cfg, later, frozen, state2)
    assert {a.pilot_id for a in d3.stop} == {"a", "b"}


def test_slow_pauses_freeze_each_pilot_once_and_keep_their_clock() -> None:
    """Pauses taking longer than a tick: the decisions in between leave the frozen alone."""
    cfg = make_config(pool(max_pilots="3", per_tick=3), grace_kill=20.0, freeze=30.0, tick=1.0)
    owner = segments([(50, 0.0, 0), (1000, 3.0, 0)])
    sim = HostSim(cfg, ncpus=4, owner=owner, pause_delay=2.5)
    steps = sim.run(200)
    freezes = actions(steps, "freeze")
    assert [t - T0_MONOTONIC for t, _ in freezes] == [70.0] * 3
    stops = actions(steps, "stop")
    assert [t - T0_MONOTONIC for t, _ in stops] == [100.0] * 3
    assert {a.pilot_id for _, a in stops} == {a.pilot_id for _, a in freezes}
