"""The named steps `decide` is made of, each on its own rules.

`decide` is tested end to end in the other test_policy_* files; these pin the rules a step owns
(what it acts on, in which order, what it remembers) so a change to one step fails here, where
the cause is obvious, rather than in a trace.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from planctond.config.model import GiveWayMode
from planctond.policy.accounting import oldest_first, spare_cpus, without, youngest_first
from planctond.policy.backoff import Backoff
from planctond.policy.giveway import (
    Shortage,
    frozen_and_running,
    give_way,
    owner_shortage,
    pick_victims,
    settle_frozen,
    victim_actions,
)
from planctond.policy.limits import (
    allowed_pilots,
    forced_stops,
    leftovers,
    pool_limits,
)
from planctond.policy.model import (
    PilotAction,
    PilotPhase,
    PilotView,
    PolicyInput,
    Reason,
    RunState,
)
from planctond.policy.spawn import plan_starts, pool_starts, start_blocker, start_room
from planctond.policy.state import PolicyState
from tests.support.policy_sim import (
    T0_MONOTONIC,
    GiB,
    make_config,
    pool,
    snapshot,
    view,
)

MiB = 1024**2
NOW = T0_MONOTONIC
CPU_ONLY = Shortage(cpu=True, memory=False)
MEMORY_ONLY = Shortage(cpu=False, memory=True)
NOT_SHORT = Shortage(cpu=False, memory=False)


def ids(actions: tuple[PilotAction, ...] | list[PilotAction]) -> list[str]:
    return [a.pilot_id for a in actions]


# --- accounting ---------------------------------------------------------------------------------


def test_give_up_order_is_youngest_first_and_ties_go_by_id() -> None:
    pilots = [view("b", age=10), view("a", age=10), view("old", age=99), view("new", age=1)]
    assert [p.id for p in youngest_first(pilots)] == ["new", "a", "b", "old"]
    assert [p.id for p in oldest_first(pilots)] == ["old", "a", "b", "new"]


def test_without_keeps_the_order_of_the_pilots_not_acted_on() -> None:
    pilots = [view("a"), view("b"), view("c")]
    assert [p.id for p in without(pilots, [PilotAction("b", Reason.TTL)])] == ["a", "c"]


# --- limits -------------------------------------------------------------------------------------


def test_leftovers_are_the_created_never_started_only() -> None:
    pilots = [view(f"p-{ph.value}", phase=ph) for ph in PilotPhase]
    removed = leftovers(pilots)
    assert [(a.pilot_id, a.reason) for a in removed] == [("p-created", Reason.NEVER_STARTED)]


def test_a_stopped_daemon_stops_every_pilot_for_that_reason_alone() -> None:
    cfg = make_config(pool(ttl=60.0))
    live = [view("gone", pool_name="removed"), view("old", age=61.0), view("ok")]
    stops = forced_stops(cfg, snapshot(), RunState.STOPPED, live)
    assert [(a.pilot_id, a.reason) for a in stops] == [
        ("gone", Reason.STOP_REQUESTED),
        ("old", Reason.STOP_REQUESTED),
        ("ok", Reason.STOP_REQUESTED),
    ]


@pytest.mark.parametrize("run_state", [RunState.ACTIVE, RunState.DRAINING])
def test_removed_pools_and_ttl_stop_in_any_other_run_state(run_state: RunState) -> None:
    cfg = make_config(pool(ttl=60.0))
    live = [
        view("gone", pool_name="removed", age=1e6),  # no ttl left to judge it by
        view("at-ttl", age=60.0),
        view("young", age=59.9),
    ]
    stops = forced_stops(cfg, snapshot(), run_state, live)
    assert [(a.pilot_id, a.reason) for a in stops] == [
        ("gone", Reason.POOL_REMOVED),
        ("at-ttl", Reason.TTL),
    ]


def test_allowed_pilots_keeps_what_runs_and_is_in_flight_when_max_pilots_fails() -> None:
    host = snapshot(ncpus=8)
    assert allowed_pilots(pool(max_pilots="ncpus - 2"), host, 5, 3, 2) == (6, "")
    allowed, note = allowed_pilots(pool(max_pilots="nonsense * 2"), host, 5, 3, 2)
    assert allowed == 5
    assert note.startswith("pool default: max_pilots 'nonsense * 2' cannot be evaluated")


def test_pool_limits_stop_the_youngest_excess_only_after_grace_kill() -> None:
    cfg = make_config(pool("a", max_pilots="1"), pool("b", max_pilots="5"), grace_kill=30.0)
    live = [view("a1", pool_name="a", age=30), view("a2", pool_name="a", age=20)]
    live += [view("a3", pool_name="a", age=10), view("b1", pool_name="b")]
    first = pool_limits(cfg, snapshot(ncpus=8), NOW, live, {}, PolicyState())
    assert not first.stop and first.state.excess_since == {"a": NOW}
    assert first.allowed == {"a": 1, "b": 5}
    later = pool_limits(cfg, snapshot(ncpus=8), NOW + 30.0, live, {}, first.state)
    assert [(a.pilot_id, a.reason) for a in later.stop] == [
        ("a3", Reason.OVER_MAX_PILOTS),
        ("a2", Reason.OVER_MAX_PILOTS),
    ]
    assert later.state.excess_since == {}  # the clock starts again for a further excess


def test_pool_limits_count_starts_in_flight_and_forget_a_dip() -> None:
    cfg = make_config(pool(max_pilots="2"), grace_kill=30.0)
    live = [view("a", age=20), view("b", age=10)]
    over = pool_limits(cfg, snapshot(ncpus=8), NOW, live, {"default": 1}, PolicyState())
    assert over.state.excess_since == {"default": NOW}
    fits = pool_limits(cfg, snapshot(ncpus=8), NOW + 10.0, live, {}, over.state)
    assert not fits.stop and fits.state.excess_since == {}


def test_pool_limits_change_nothing_but_the_excess_clocks() -> None:
    cfg = make_config(pool(max_pilots="nonsense"))
    state = PolicyState(gave_way_at=NOW - 1.0, backoff={"default": Backoff(1, NOW + 5.0, "x")})
    limits = pool_limits(cfg, snapshot(), NOW, [view("a")], {"default": 2}, state)
    assert limits.allowed == {"default": 3} and not limits.stop and len(limits.notes) == 1
    assert limits.state == state


# --- the give-way ladder ------------------------------------------------------------------------


def test_a_pilot_decided_frozen_stays_frozen_while_its_pause_is_under_way() -> None:
    live = [
        view("paused", phase=PilotPhase.FROZEN),
        view("pausing"),  # decided frozen, still shown running
        view("runs"),
    ]
    frozen, running = frozen_and_running(live, {"pausing": NOW, "long-gone": NOW})
    assert [p.id for p in frozen] == ["paused", "pausing"]
    assert [p.id for p in running] == ["runs"]


@pytest.mark.parametrize(
    ("need", "spare", "margin", "short"),
    [
        (3.25, 3.0, 0.25, False),  # exactly on the line: not short
        (3.26, 3.0, 0.25, True),
        (0.1 + 0.2, 0.05, 0.25, False),  # 0.30000000000000004 is on the line
        (1.0, 1.0, 0.0, False),
        (1.01, 1.0, 0.0, True),
    ],
)
def test_the_give_way_line_is_need_above_spare_plus_margin(
    need: float, spare: float, margin: float, short: bool
) -> None:
    cfg = make_config(margin=margin)
    assert owner_shortage(cfg, snapshot(), need, spare).cpu is short


def test_memory_is_short_strictly_below_reserve_memory() -> None:
    cfg = make_config(reserve_memory=GiB)
    assert not owner_shortage(cfg, snapshot(mem_available=GiB), 0.0, 4.0).memory
    assert owner_shortage(cfg, snapshot(mem_available=GiB - 1), 0.0, 4.0).memory


def test_memory_shortage_names_the_reason_when_both_are_short() -> None:
    assert Shortage(cpu=True, memory=True).reason is Reason.OWNER_MEMORY
    assert CPU_ONLY.reason is Reason.OWNER_CPU
    assert not NOT_SHORT.any and CPU_ONLY.any and MEMORY_ONLY.any


def test_settle_frozen_stops_after_freeze_with_the_reason_it_was_frozen_for() -> None:
    cfg = make_config(freeze=30.0)
    frozen = [view("old", age=90, phase=PilotPhase.FROZEN), view("new", phase=PilotPhase.FROZEN)]
    state = PolicyState(
        frozen_since={"old": NOW - 30.0, "new": NOW - 29.0, "gone": NOW - 99.0},
        frozen_reason={"old": Reason.OWNER_MEMORY, "new": Reason.OWNER_CPU},
    )
    settled = settle_frozen(cfg, NOW, frozen, state, 0.0, 0.5, CPU_ONLY)
    assert [(a.pilot_id, a.reason) for a in settled.stop] == [("old", Reason.OWNER_MEMORY)]
    assert not settled.thaw
    assert settled.frozen_since == {"new": NOW - 29.0}  # gone and stopped pilots forgotten
    assert settled.frozen_reason == {"new": Reason.OWNER_CPU}


def test_settle_frozen_thaws_oldest_first_as_far_as_they_fit() -> None:
    cfg = make_config(freeze=30.0)
    frozen = [
        view("young", age=10, cpus=1.0, phase=PilotPhase.FROZEN),
        view("old", age=50, cpus=1.0, phase=PilotPhase.FROZEN),
        view("mid", age=30, cpus=1.0, phase=PilotPhase.FROZEN),
    ]
    state = PolicyState(frozen_since={p.id: NOW - 5.0 for p in frozen})
    settled = settle_frozen(cfg, NOW, frozen, state, 1.0, 3.0, NOT_SHORT)
    assert ids(settled.thaw) == ["old", "mid"]
    assert all(a.reason is Reason.OWNER_GONE for a in settled.thaw)
    assert settled.frozen_since == {"young": NOW - 5.0}
    assert not settle_frozen(cfg, NOW, frozen, state, 0.0, 3.0, MEMORY_ONLY).thaw


def test_an_adopted_paused_pilot_starts_its_freeze_clock_now() -> None:
    cfg = make_config(freeze=30.0)
    frozen = [view("adopted", phase=PilotPhase.FROZEN)]
    settled = settle_frozen(cfg, NOW, frozen, PolicyState(), 0.0, 0.0, CPU_ONLY)
    assert settled.frozen_since == {"adopted": NOW}
    assert settled.frozen_reason == {"adopted": Reason.OWNER_CPU}
    zero = settle_frozen(make_config(freeze=0.0), NOW, frozen, PolicyState(), 0.0, 0.0, CPU_ONLY)
    assert ids(zero.stop) == ["adopted"]


def test_cpu_victims_are_the_youngest_until_the_rest_fits_without_margin() -> None:
    running = [view("a", age=40), view("b", age=30), view("c", age=20), view("d", age=10)]
    assert [p.id for p in pick_victims(running, 4.0, 2.0, CPU_ONLY)] == ["d", "c"]
    assert [p.id for p in pick_victims(running, 4.0, 1.5, CPU_ONLY)] == ["d", "c", "b"]
    assert [p.id for p in pick_victims(running, 4.0, -1.0, CPU_ONLY)] == ["d", "c", "b", "a"]


def test_a_memory_shortage_takes_one_victim_per_rung() -> None:
    running = [view("a", age=40), view("b", age=30)]
    assert [p.id for p in pick_victims(running, 2.0, 8.0, MEMORY_ONLY)] == ["b"]
    assert pick_victims([], 0.0, 8.0, MEMORY_ONLY) == []


def test_the_overload_clock_needs_an_uninterrupted_need() -> None:
    cfg = make_config(grace_kill=20.0, freeze=30.0)
    live = [view("a", age=20), view("b", age=10)]
    busy, quiet = snapshot(ncpus=4, owner_cpu=3.0), snapshot(ncpus=4, owner_cpu=0.0)
    first = give_way(cfg, busy, NOW, live, PolicyState())
    assert not first.freeze and first.owner_short
    assert (first.state.overload_since, first.state.overload_reason) == (NOW, Reason.OWNER_CPU)
    blip = give_way(cfg, quiet, NOW + 10.0, live, first.state)
    assert blip.state.overload_since is None and not blip.owner_short
    again = give_way(cfg, busy, NOW + 19.0, live, blip.state)
    assert not again.freeze and again.state.overload_since == NOW + 19.0
    rung = give_way(cfg, busy, NOW + 39.0, live, again.state)
    assert ids(rung.freeze) == ["b", "a"]
    assert rung.state.overload_since is None  # the next rung waits another grace_kill
    assert rung.state.frozen_since == {"b": NOW + 39.0, "a": NOW + 39.0}
    assert rung.state.gave_way_at is None  # a freeze is not yet a stop: grace_spawn not started


def test_freeze_zero_stops_at_once_and_starts_grace_spawn() -> None:
    cfg = make_config(grace_kill=0.0, freeze=0.0)
    ladder = give_way(cfg, snapshot(ncpus=4, owner_cpu=3.0), NOW, [view("a")], PolicyState())
    assert [(a.pilot_id, a.reason) for a in ladder.stop] == [("a", Reason.OWNER_CPU)]
    assert not ladder.freeze and ladder.state.gave_way_at == NOW
    assert not ladder.state.frozen_since


# --- starts -------------------------------------------------------------------------------------


def inp(
    *,
    run_state: RunState = RunState.ACTIVE,
    pilots: tuple[PilotView, ...] = (),
    starting: dict[str, int] | None = None,
    owner_cpu: float = 0.0,
) -> PolicyInput:
    """8 CPUs and 16 GiB; pool a: 1 CPU and 1 GiB a pilot, pool b: half a CPU and 256 MiB."""
    cfg = make_config(
        pool("a", cpus=1.0, memory=GiB, per_tick=10),
        pool("b", cpus=0.5, memory=256 * MiB, per_tick=10),
        grace_spawn=60.0,
    )
    host = snapshot(ncpus=8, mem_total=16 * GiB, owner_cpu=owner_cpu)
    return PolicyInput(NOW, cfg, host, pilots, run_state, starting)


@pytest.mark.parametrize(
    ("run_state", "state", "owner_short", "expected"),
    [
        (RunState.DRAINING, PolicyState(frozen_since={"x": NOW}), True, "draining"),
        (RunState.STOPPED, PolicyState(frozen_since={"x": NOW}), True, "stopped"),
        (
            RunState.ACTIVE,
            PolicyState(frozen_since={"x": NOW}),
            True,
            "1 pilots frozen for the owner",
        ),
        (RunState.ACTIVE, PolicyState(gave_way_at=NOW), True, "the owner needs the host"),
        (
            RunState.ACTIVE,
            PolicyState(gave_way_at=NOW - 1.0),
            False,
            "gave way to the owner; grace_spawn 59s left",
        ),
        (RunState.ACTIVE, PolicyState(gave_way_at=NOW - 60.0), False, ""),
        (RunState.ACTIVE, PolicyState(), False, ""),
    ],
)
def test_start_blockers_in_order_of_precedence(
    run_state: RunState, state: PolicyState, owner_short: bool, expected: str
) -> None:
    assert start_blocker(inp(run_state=run_state), state, owner_short) == expected


@pytest.mark.parametrize("give_way", list(GiveWayMode))
def test_no_start_on_a_reading_that_covers_no_time(give_way: GiveWayMode) -> None:
    """The sensor's first reading after it began reads zeros, whatever the owner does; under
    either rule the starts wait for the next one, and nothing else blocks them here."""
    base = inp()
    cfg = replace(base.config, owner=replace(base.config.owner, give_way=give_way))
    unmeasured = replace(base, config=cfg, host=replace(base.host, cpu_measured=False))
    assert start_blocker(unmeasured, PolicyState(), False) == (
        "waiting for a first reading of the host's CPU"
    )
    assert start_blocker(replace(unmeasured, host=base.host), PolicyState(), False) == ""
    # the owner's needs and the admin's word come first
    assert start_blocker(unmeasured, PolicyState(), True) == "the owner needs the host"
    draining = replace(unmeasured, run_state=RunState.DRAINING)
    assert start_blocker(draining, PolicyState(), False) == "draining"


def test_start_room_counts_stopping_and_in_flight_but_not_frozen_nor_leftovers() -> None:
    pilots = (
        view("runs", pool_name="a", cpus=1.0),
        view("stopping", pool_name="a", cpus=1.0, phase=PilotPhase.STOPPING),
        view("frozen", pool_name="a", cpus=1.0, phase=PilotPhase.FROZEN),
        view("leftover", pool_name="a", cpus=1.0, phase=PilotPhase.CREATED),
    )
    state = PolicyState(frozen_since={"frozen": NOW})
    cpus, memory = start_room(inp(pilots=pilots, starting={"a": 1, "b": 2}), state)
    assert cpus == pytest.approx(8 - 0.5 - 2.0 - 1.0 - 1.0)  # reserve, 2 pilots, 3 in flight
    assert memory == 16 * GiB - 512 * MiB - GiB - 2 * 256 * MiB


def test_pool_starts_reports_the_first_limit_that_holds_the_pool_back() -> None:
    base = inp()
    p = base.config.pools[0]
    backing_off = PolicyState(backoff={"a": Backoff(1, NOW + 9.6, "bad image")})
    assert pool_starts(base, backing_off, p, [], 0, 0.0, 0.0) == (
        "backing off 10s: bad image",
        0,
    )
    assert pool_starts(base, PolicyState(), p, [], 0, 0.0, 0.0)[0] == "at max_pilots (0)"
    assert pool_starts(base, PolicyState(), p, [], 5, 0.5, 0.0)[0].startswith("no spare CPU")
    assert pool_starts(base, PolicyState(), p, [], 5, 8.0, 0.0)[0].startswith("not enough")
    note, n = pool_starts(base, PolicyState(), p, [], 5, 3.0, 16.0 * GiB)
    assert (note, n) == ("3 fit (3.00 CPUs spare, owner 0.00)", 3)


def test_plan_starts_shares_the_room_in_config_order_and_counts_each_start() -> None:
    starts, state, verdicts = plan_starts(inp(), PolicyState(), {"a": 5, "b": 5}, False)
    assert [(s.pool, s.count) for s in starts] == [("a", 5), ("b", 5)]
    assert state.window_count == {"a": 5, "b": 5}
    assert verdicts["a"].note == "" and verdicts["a"].allowed == 5
    starts, _, verdicts = plan_starts(inp(owner_cpu=6.0), PolicyState(), {"a": 5, "b": 5}, False)
    # 1.5 CPUs spare: pool a takes one CPU, pool b what a leaves
    assert [(s.pool, s.count) for s in starts] == [("a", 1), ("b", 1)]
    assert verdicts["a"].note == verdicts["b"].note == ""


def test_plan_starts_starts_nothing_when_blocked_and_says_why_for_every_pool() -> None:
    starts, state, verdicts = plan_starts(inp(), PolicyState(), {"a": 5, "b": 5}, True)
    assert starts == () and state == PolicyState()
    assert {v.note for v in verdicts.values()} == {"the owner needs the host"}


def test_spare_cpus_is_what_the_owner_and_its_reserve_leave() -> None:
    cfg = make_config(reserve=0.5)
    assert spare_cpus(cfg, snapshot(ncpus=4, owner_cpu=1.25, pilots_cpu=2.0)) == 2.25


def test_victim_actions_say_what_the_owner_needs_and_freeze_unless_freeze_is_zero() -> None:
    running = [view("a", age=20), view("b", age=10)]
    host = snapshot(ncpus=4, owner_cpu=3.0, mem_available=GiB)
    cfg = make_config(freeze=30.0)
    cpu_short = owner_shortage(cfg, host, 2.0, 0.5)
    assert cpu_short.cpu and not cpu_short.memory
    freeze, stop = victim_actions(cfg, running, 2.0, 0.5, cpu_short)
    assert ids(freeze) == ["b", "a"] and not stop
    assert freeze[0].detail == "owner uses 3.00 CPUs, 0.50 spare for 2.00 entitled"
    cfg = make_config(freeze=0.0, reserve_memory=2 * GiB)
    memory_short = owner_shortage(cfg, host, 0.0, 0.5)
    assert memory_short.memory and not memory_short.cpu
    freeze, stop = victim_actions(cfg, running, 2.0, 0.5, memory_short)
    assert not freeze and [(a.pilot_id, a.reason) for a in stop] == [("b", Reason.OWNER_MEMORY)]
    assert stop[0].detail == f"owner needs memory ({GiB} bytes available)"
