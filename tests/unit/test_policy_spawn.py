"""When, where and how many pilots the policy starts.

Spawning is the easy half of owner-first, but every mistake here shows up later as a give-way:
a start that does not really fit is a pilot that must be frozen two minutes later.
"""

from __future__ import annotations

import pytest

from planctond.policy.decide import evaluate_max_pilots, pool_variables
from planctond.policy.model import Decision, PilotPhase, Reason, RunState
from planctond.policy.state import PolicyState
from tests.support.policy_sim import (
    T0_MONOTONIC,
    GiB,
    HostSim,
    decide_once,
    make_config,
    pool,
    snapshot,
    started,
    view,
)

MiB = 1024**2


def starts(pool_name: str, decision: Decision) -> int:
    return sum(s.count for s in decision.start if s.pool == pool_name)


# --- spare capacity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ncpus", "reserve", "owner", "cpus", "expected"),
    [
        (4, 0.5, 0.0, 1.0, 3),  # 3.5 spare
        (4, 0.5, 1.0, 1.0, 2),  # 2.5 spare
        (4, 0.5, 0.5, 1.0, 3),  # exactly 3.0 spare: three fit
        (4, 0.0, 0.0, 1.0, 4),
        (4, 0.5, 0.0, 0.5, 7),
        (8, 1.0, 2.5, 1.5, 3),  # 4.5 spare
        (2, 0.5, 1.6, 1.0, 0),  # owner leaves less than one CPU
        (2, 0.5, 2.0, 0.1, 0),  # owner leaves less than its reserve: nothing
        (1, 0.0, 0.0, 0.25, 4),
    ],
)
def test_spawn_fits_spare_capacity_minus_reserve(
    ncpus: int, reserve: float, owner: float, cpus: float, expected: int
) -> None:
    cfg = make_config(pool(cpus=cpus, per_tick=100), reserve=reserve)
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=ncpus, owner_cpu=owner))
    assert starts("default", decision) == expected
    if expected:
        assert decision.start[0].why
    elif ncpus - reserve - owner + 0.25 >= 0:  # 0.25: the default margin
        assert "no spare CPU" in verdicts["default"].note
    else:  # the owner eats into its reserve by more than the margin: it needs the host
        assert "owner needs the host" in verdicts["default"].note


def test_running_pilots_count_at_their_entitlement_not_their_use() -> None:
    """Two idle 1-CPU pilots still hold 2 CPUs: 3.5 spare - 2 = room for one more."""
    cfg = make_config(pool(per_tick=10))
    pilots = [view("a", age=50), view("b", age=40)]
    decision, _, _ = decide_once(cfg, snapshot(ncpus=4, pilots_cpu=0.0), pilots)
    assert starts("default", decision) == 1


def test_pilots_own_load_is_never_the_owners() -> None:
    """Two busy pilots: host 2.0 CPUs busy, all of it theirs, so the owner is idle."""
    cfg = make_config(pool(per_tick=10))
    host = snapshot(ncpus=4, owner_cpu=0.0, pilots_cpu=2.0)
    assert host.owner_cpu == 0.0
    decision, _, _ = decide_once(cfg, host, [view("a", age=50), view("b", age=40)])
    assert starts("default", decision) == 1
    assert not decision.freeze and not decision.stop


def test_memory_budget_limits_starts() -> None:
    cfg = make_config(pool(memory=512 * MiB, per_tick=100), reserve_memory=512 * MiB)
    host = snapshot(ncpus=16, mem_total=8 * GiB, mem_available=2 * GiB)
    decision, _, _ = decide_once(cfg, host)
    assert starts("default", decision) == 3  # (2 GiB - 512 MiB) / 512 MiB

    tight = snapshot(ncpus=16, mem_total=8 * GiB, mem_available=1000 * MiB)
    decision, _, verdicts = decide_once(cfg, tight)
    assert starts("default", decision) == 0
    assert "memory" in verdicts["default"].note


def test_memory_zero_means_no_memory_limit_on_the_count() -> None:
    cfg = make_config(pool(memory=0, per_tick=100), reserve_memory=512 * MiB)
    host = snapshot(ncpus=4, mem_total=8 * GiB, mem_available=600 * MiB)
    decision, _, _ = decide_once(cfg, host)
    assert starts("default", decision) == 3


def test_pools_share_the_spare_capacity_in_config_order() -> None:
    cfg = make_config(pool("a", cpus=1.0, per_tick=10), pool("b", cpus=0.5, per_tick=10))
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=4, owner_cpu=0.0))
    assert starts("a", decision) == 3
    assert starts("b", decision) == 1  # 0.5 left after pool a took 3
    assert verdicts["a"].allowed == 100


# --- per_tick -----------------------------------------------------------------------------------


def test_per_tick_caps_starts_in_one_decision() -> None:
    cfg = make_config(pool(cpus=0.5, per_tick=3))
    decision, state, _verdicts = decide_once(cfg, snapshot(ncpus=16))
    assert starts("default", decision) == 3
    assert state.window_count["default"] == 3


def test_per_tick_holds_across_event_driven_decisions_in_one_tick_window() -> None:
    """Replacements decided between ticks share the tick's budget: exits cannot turn per_tick
    into a container-churning loop."""
    cfg = make_config(pool(cpus=0.5, per_tick=3), tick=10.0)
    t = T0_MONOTONIC
    d1, state, _ = decide_once(cfg, snapshot(ncpus=16, now=t))
    assert starts("default", d1) == 3
    # the three pilots exited at once (no views): 2 s later, still within the window
    d2, state, verdicts = decide_once(cfg, snapshot(ncpus=16, now=t + 2), (), state)
    assert starts("default", d2) == 0
    assert "per_tick" in verdicts["default"].note
    d3, state, _ = decide_once(cfg, snapshot(ncpus=16, now=t + 9.9), (), state)
    assert starts("default", d3) == 0
    d4, state, _ = decide_once(cfg, snapshot(ncpus=16, now=t + 10.0), (), state)
    assert starts("default", d4) == 3


def test_per_tick_budget_is_shared_by_partial_starts() -> None:
    cfg = make_config(pool(cpus=1.0, per_tick=3), tick=10.0)
    t = T0_MONOTONIC
    # only one fits at first
    d1, state, _ = decide_once(cfg, snapshot(ncpus=4, owner_cpu=2.0, now=t))
    assert starts("default", d1) == 1
    # the owner left 3 s later: two more this window, not three
    pilots = [view("a", age=3, now=t + 3)]
    d2, state, _ = decide_once(cfg, snapshot(ncpus=8, now=t + 3), pilots, state)
    assert starts("default", d2) == 2
    d3, state, _ = decide_once(cfg, snapshot(ncpus=8, now=t + 5), pilots, state)
    assert starts("default", d3) == 0


def test_per_tick_window_is_per_pool() -> None:
    cfg = make_config(pool("a", cpus=0.5, per_tick=1), pool("b", cpus=0.5, per_tick=2))
    d1, state, _ = decide_once(cfg, snapshot(ncpus=16))
    assert (starts("a", d1), starts("b", d1)) == (1, 2)
    d2, _, _ = decide_once(cfg, snapshot(ncpus=16, now=T0_MONOTONIC + 1), (), state)
    assert d2.start == ()


def test_per_tick_window_is_at_least_one_second() -> None:
    cfg = make_config(pool(cpus=0.5, per_tick=1), tick=0.1)
    d1, state, _ = decide_once(cfg, snapshot(ncpus=16))
    d2, state, _ = decide_once(cfg, snapshot(ncpus=16, now=T0_MONOTONIC + 0.5), (), state)
    d3, state, _ = decide_once(cfg, snapshot(ncpus=16, now=T0_MONOTONIC + 1.0), (), state)
    assert [starts("default", d) for d in (d1, d2, d3)] == [1, 0, 1]


def test_sim_per_tick_with_replacements_between_ticks() -> None:
    """Pilots living 4 s each, per_tick 3, tick 10 s: replacements between ticks happen, and a
    rate window (opened by its first start, one tick long) never holds more than 3 starts."""
    cfg = make_config(pool(cpus=0.5, per_tick=3, max_pilots="2"), tick=10.0)
    sim = HostSim(cfg, ncpus=16, lifetime=lambda _p: (4.0, 0))
    steps = sim.run(300)
    times = [s.now for s in steps for x in s.decision.start for _ in range(x.count)]
    assert len(times) >= 60  # it did keep replacing
    assert any(s.event_driven and s.decision.start for s in steps)
    windows: list[list[float]] = []
    for t in times:
        if windows and t < windows[-1][0] + 10.0:
            windows[-1].append(t)
        else:
            windows.append([t])
    assert max(len(w) for w in windows) == 3
    for i, t in enumerate(times):  # so any 10 s span holds at most two windows' worth
        assert sum(1 for u in times[i:] if u < t + 10.0) <= 6


# --- max_pilots -------------------------------------------------------------------------------


@pytest.mark.parametrize(("ncpus", "expected"), [(1, 0), (2, 0), (3, 1), (4, 2), (8, 6), (64, 62)])
def test_max_pilots_default_ncpus_minus_two(ncpus: int, expected: int) -> None:
    cfg = make_config(pool(max_pilots="ncpus - 2", cpus=0.5, per_tick=1000), reserve=0.0)
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=ncpus))
    assert verdicts["default"].allowed == expected
    assert starts("default", decision) == expected
    if expected == 0:
        assert "at max_pilots (0)" in verdicts["default"].note


def test_max_pilots_with_plancton_memory_variables() -> None:
    """Plancton 0.6 configs size by memory: `ram_bytes // max_dock_mem` pilots of max_dock_mem."""
    p = pool(max_pilots="ram_bytes // (max_dock_mem + max_dock_swap)", memory=GiB, swap=GiB)
    cfg = make_config(p)
    _, _, verdicts = decide_once(cfg, snapshot(ncpus=64, mem_total=9 * GiB))
    assert verdicts["default"].allowed == 4


def test_max_pilots_sees_mem_available_and_pilots() -> None:
    p = pool(max_pilots="min(pool_pilots + 1, mem_available / max_dock_mem)", memory=GiB)
    cfg = make_config(p, reserve_memory=0)
    host = snapshot(ncpus=64, mem_total=16 * GiB, mem_available=int(5.5 * GiB))
    pilots = [view("a", age=10), view("b", age=5)]
    _, _, verdicts = decide_once(cfg, host, pilots)
    assert verdicts["default"].allowed == 3


def test_max_pilots_uses_host_variables() -> None:
    p = pool(max_pilots="4 if hour < 7 else 1", cpus=0.5, per_tick=10)
    cfg = make_config(p)
    night, _, _ = decide_once(cfg, snapshot(ncpus=8, variables={"hour": 3}))
    day, _, _ = decide_once(cfg, snapshot(ncpus=8, variables={"hour": 12}))
    assert (starts("default", night), starts("default", day)) == (4, 1)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("2.9", 2),
        ("-3", 0),
        ("true", 1),
        ("false", 0),
        ("(0.1 + 0.2) * 10", 3),  # 3.0000000000000004
        ("0.7 * 10", 7),  # 7.000000000000001
        ("2.9999999999999996", 3),  # float noise just under a whole number still counts
        ("10**9", 1_000_000),  # bounded
    ],
)
def test_evaluate_max_pilots_rounds_down_and_clamps(source: str, expected: int) -> None:
    p = pool(max_pilots=source)
    variables = pool_variables(snapshot(), p, 0, 0)
    assert evaluate_max_pilots(p, variables) == expected


def test_pool_variables_add_pool_figures() -> None:
    p = pool(memory=3 * GiB, swap=GiB)
    v = pool_variables(snapshot(ncpus=6, variables={"hour": 5}), p, 7, 2)
    assert v["ncpus"] == 6 and v["hour"] == 5
    assert (v["pilots"], v["pool_pilots"]) == (7, 2)
    assert (v["max_dock_mem"], v["max_dock_swap"]) == (3 * GiB, GiB)


def test_stopping_pilots_count_against_max_pilots() -> None:
    cfg = make_config(pool(max_pilots="3", cpus=0.5, per_tick=10))
    pilots = [view("a", age=50, cpus=0.5), view("b", age=40, cpus=0.5, phase=PilotPhase.STOPPING)]
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=16), pilots)
    assert starts("default", decision) == 1
    assert verdicts["default"].live == 2
    pilots.append(view("c", age=1, cpus=0.5))
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=16), pilots)
    assert decision.empty
    assert verdicts["default"].note == "at max_pilots (3)"


def test_stopping_pilots_hold_their_cpus_until_gone() -> None:
    cfg = make_config(pool(cpus=1.0, per_tick=10))
    pilots = [view("a", age=50, phase=PilotPhase.STOPPING), view("b", age=40)]
    decision, _, _ = decide_once(cfg, snapshot(ncpus=4), pilots)
    assert starts("default", decision) == 1  # 3.5 spare - 2 held


def test_frozen_pilots_count_against_max_pilots() -> None:
    cfg = make_config(pool(max_pilots="1"))
    pilots = [view("a", age=50, phase=PilotPhase.FROZEN)]
    _, _, verdicts = decide_once(cfg, snapshot(ncpus=16), pilots)
    assert verdicts["default"].live == 1


def test_starts_in_flight_count_against_max_pilots_and_cpus() -> None:
    cfg = make_config(pool(max_pilots="3", cpus=1.0, per_tick=10))
    d, _, _verdicts = decide_once(cfg, snapshot(ncpus=16), starting={"default": 2})
    assert starts("default", d) == 1
    cfg = make_config(pool(max_pilots="10", cpus=1.0, per_tick=10))
    d, _, _ = decide_once(cfg, snapshot(ncpus=4), starting={"default": 2})
    assert starts("default", d) == 1  # 3.5 spare - 2 in flight


def test_never_started_leftovers_are_removed_and_not_counted() -> None:
    cfg = make_config(pool(max_pilots="1"))
    pilots = [view("x", age=5, phase=PilotPhase.CREATED)]
    decision, _, _ = decide_once(cfg, snapshot(ncpus=4), pilots)
    assert [(a.pilot_id, a.reason) for a in decision.remove] == [("x", Reason.NEVER_STARTED)]
    assert decision.remove[0].detail
    assert starts("default", decision) == 1


# --- run_when -----------------------------------------------------------------------------------


def test_run_when_false_starts_nothing_but_keeps_pilots() -> None:
    cfg = make_config(pool(run_when="false"))
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=8), [view("a", age=10)])
    assert decision.empty
    assert "run_when" in verdicts["default"].note


def test_run_when_expression_over_host_variables() -> None:
    cfg = make_config(pool(run_when="hour < 7 or weekday >= 5", per_tick=1))
    at = [
        ({"hour": 3, "weekday": 2}, 1),
        ({"hour": 12, "weekday": 2}, 0),
        ({"hour": 12, "weekday": 6}, 1),
    ]
    for variables, expected in at:
        decision, _, _ = decide_once(cfg, snapshot(ncpus=8, variables=variables))
        assert starts("default", decision) == expected, variables


def test_run_when_undefined_variable_starts_nothing_and_says_why() -> None:
    cfg = make_config(pool(run_when="not on_battery"))
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=8), [view("a", age=10)])
    assert decision.empty
    assert "cannot be evaluated" in verdicts["default"].note
    assert "on_battery" in verdicts["default"].note


def test_run_when_per_pool() -> None:
    cfg = make_config(pool("day", run_when="false", per_tick=1), pool("night", per_tick=1))
    decision, _, _ = decide_once(cfg, snapshot(ncpus=8))
    assert [s.pool for s in decision.start] == ["night"]


# --- no grace_spawn wait unless we gave way -----------------------------------------------------


def test_no_grace_spawn_wait_at_start_up() -> None:
    cfg = make_config(pool(), grace_spawn=3600.0)
    decision, _, _ = decide_once(cfg, snapshot(ncpus=4), (), PolicyState())
    assert starts("default", decision) > 0


def test_no_grace_spawn_wait_after_a_pilot_simply_exits() -> None:
    cfg = make_config(pool(max_pilots="2", per_tick=10), grace_spawn=3600.0, tick=10.0)
    sim = HostSim(cfg, ncpus=8, lifetime=lambda _p: (95.0, 0))
    sim.run(200)
    # each exit is replaced in the decision that followed it, at the same instant
    assert len(sim.exits) >= 2
    for ex in sim.exits:
        replaced = [s for s in sim.steps if s.now == ex.now and s.decision.start]
        assert replaced, f"pilot {ex.pilot_id} exited at {ex.now} and was not replaced at once"
    assert sim.count("default") == 2


def test_no_grace_spawn_wait_after_a_failed_pilot_beyond_backoff() -> None:
    """A crash is not a give-way: the only wait is the pool's back-off."""
    p = pool(max_pilots="1", backoff_min=5.0, backoff_max=5.0, fail_window=60.0)
    cfg = make_config(p, grace_spawn=3600.0, tick=1.0)
    sim = HostSim(cfg, ncpus=8, lifetime=lambda _p: (2.0, 1))
    steps = sim.run(40)
    assert started(steps) >= 4
    assert sim.state.gave_way_at is None


def test_run_state_blocks_starts() -> None:
    cfg = make_config(pool())
    for rs, word in ((RunState.DRAINING, "draining"), (RunState.STOPPED, "stopped")):
        decision, _, verdicts = decide_once(cfg, snapshot(ncpus=8), run_state=rs)
        assert decision.start == ()
        assert verdicts["default"].note == word
