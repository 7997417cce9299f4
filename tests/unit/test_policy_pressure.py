"""`owner.give_way: pressure`: pilots give way to the owner's stalls, not to its CPU use.

Times below are seconds since the simulation began; the simulated host decides every `tick`
(10 s) and at once whenever a pilot ends. Pilots sit in an idle cgroup unless a test says not.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from planctond.config.model import GiveWayMode
from planctond.policy.giveway import thaws
from planctond.policy.model import OWNER_REASONS, OwnerPressure, PilotPhase, Reason
from planctond.policy.shortage import Shortage, owner_shortage, shortage_notes
from planctond.policy.state import PolicyState
from tests.support.policy_sim import (
    T0_MONOTONIC,
    GiB,
    Step,
    actions,
    decide_once,
    pool,
    segments,
    snapshot,
    view,
)
from tests.unit.pressure_sim import PressureSim, pressure_config

MiB = 1024**2
PSI = OwnerPressure(0.0, 0.0, 0.0, True, "cgroups user.slice")


def t_of(step: Step) -> float:
    return step.now - T0_MONOTONIC


def psi(cpu: float | None = 0.0, memory: float | None = 0.0, io: float | None = 0.0) -> OwnerPressure:  # fmt: skip
    return OwnerPressure(cpu, memory, io, True, "cgroups user.slice")


def ladder(**kw: object) -> PressureSim:
    """4 CPUs, three 1-CPU pilots started at t=0, 10, 20 (per_tick 1) so their ages differ."""
    owner: dict[str, object] = {"grace_kill": 60.0, "freeze": 30.0, "grace_spawn": 60.0}
    sim_kw = {k: kw.pop(k) for k in list(kw) if k in ("pressure", "owner", "owner_idle", "psi", "per_cgroup", "pilots_idle", "mem_total")}  # fmt: skip
    owner.update(kw)
    cfg = pressure_config(pool(max_pilots="3", per_tick=1), tick=10.0, **owner)  # type: ignore[arg-type]
    return PressureSim(cfg, ncpus=4, **sim_kw)  # type: ignore[arg-type]


def owner_reasons(steps: list[Step], kind: str) -> list[tuple[float, str, Reason]]:
    return [
        (t - T0_MONOTONIC, a.pilot_id, a.reason)
        for t, a in actions(steps, kind)
        if a.reason in OWNER_REASONS
    ]


# --- what counts as a shortage ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "short", "reason"),
    [
        (psi(), None, None),
        (psi(cpu=10.0, memory=10.0, io=25.0), None, None),  # on the line is not over it
        (psi(cpu=10.01), "cpu", Reason.OWNER_CPU),
        (psi(memory=10.5), "memory", Reason.OWNER_MEMORY),
        (psi(io=26.0), "io", Reason.OWNER_IO),
        (psi(cpu=50.0, io=50.0), "io", Reason.OWNER_IO),  # io before CPU
        (psi(cpu=50.0, memory=50.0, io=50.0), "memory", Reason.OWNER_MEMORY),
        (psi(cpu=None, memory=None, io=None), None, None),
    ],
)
def test_pressure_lines(reading: OwnerPressure, short: str | None, reason: Reason | None) -> None:
    cfg = pressure_config()
    host = replace(snapshot(ncpus=4), owner_pressure=reading, pilots_idle=False)
    s = owner_shortage(cfg, host, 0.0, 3.5)
    assert s.any is (short is not None)
    if short is not None:
        assert getattr(s, short)
        assert s.reason is reason
        assert f"owner {short} pressure" in s.detail and "cgroups user.slice" in s.detail
        assert not s.urgent


def test_a_line_set_to_null_never_counts() -> None:
    cfg = pressure_config(cpu_pressure=None, memory_pressure=None, io_pressure=None)
    host = replace(snapshot(ncpus=4), owner_pressure=psi(100.0, 100.0, 100.0), pilots_idle=False)
    assert not owner_shortage(cfg, host, 0.0, 3.5).any


def test_a_line_of_zero_counts_any_stall() -> None:
    cfg = pressure_config(io_pressure=0.0)
    host = replace(snapshot(), owner_pressure=psi(io=0.01), pilots_idle=True)
    assert owner_shortage(cfg, host, 0.0, 3.5).io
    host = replace(snapshot(), owner_pressure=psi(io=0.0), pilots_idle=True)
    assert not owner_shortage(cfg, host, 0.0, 3.5).io


def test_cpu_use_is_no_shortage_under_pressure_but_is_under_usage() -> None:
    """The owner takes every CPU: under `usage` that is a shortage, under `pressure` only its
    stalls are, and they are nil."""
    host = replace(snapshot(ncpus=4, owner_cpu=4.0), owner_pressure=PSI, pilots_idle=True)
    usage = owner_shortage(pressure_config(give_way=GiveWayMode.USAGE), host, 3.0, -0.5)
    assert usage.cpu and usage.cpu_by_use and not usage.cpu_by_pressure
    pressure = owner_shortage(pressure_config(), host, 3.0, -0.5)
    assert not pressure.any and not pressure.cpu_by_pressure and not pressure.cpu_by_use
    outside = owner_shortage(pressure_config(), replace(host, pilots_idle=False), 3.0, -0.5)
    assert not outside.any and outside.cpu_by_pressure and not outside.cpu_by_use


def test_the_owners_own_cpu_stalls_never_freeze_idle_pilots() -> None:
    """Under cpu.idle a pilot is preempted at once: the owner's CPU stalls are its own tasks
    waiting for each other, so however high they go, idle pilots stay; others give way."""
    stalled = psi(cpu=100.0)
    host = replace(snapshot(ncpus=4, owner_cpu=4.0), owner_pressure=stalled, pilots_idle=True)
    assert not owner_shortage(pressure_config(), host, 3.0, -0.5).any
    s = owner_shortage(pressure_config(), replace(host, pilots_idle=False), 3.0, -0.5)
    assert s.cpu and s.reason is Reason.OWNER_CPU and s.cpu_by_pressure


@pytest.mark.parametrize("idle", [True, False])
def test_cpu_without_a_cpu_reading_is_left_to_the_idle_cgroup_or_judged_by_use(idle: bool) -> None:
    """No CPU stalls readable (host-wide PSI, or a kernel without the cgroup "full" line): pilots
    in an idle cgroup keep running, pilots outside one give way to use as under `usage`."""
    reading = OwnerPressure(None, 0.0, 0.0, False, "/proc/pressure")
    host = replace(snapshot(ncpus=4, owner_cpu=4.0), owner_pressure=reading, pilots_idle=idle)
    s = owner_shortage(pressure_config(), host, 3.0, -0.5)
    assert s.cpu is (not idle) and s.cpu_by_use is (not idle) and not s.cpu_by_pressure
    if not idle:
        assert s.detail == "owner uses 4.00 CPUs, -0.50 spare for 3.00 entitled"
    no_psi = replace(host, owner_pressure=None)
    assert owner_shortage(pressure_config(), no_psi, 3.0, -0.5).cpu is (not idle)
    # ... unless the admin turned the CPU line off: then the CPU never counts
    assert not owner_shortage(pressure_config(cpu_pressure=None), host, 3.0, -0.5).any


def test_memory_under_the_floor_is_urgent_under_pressure_only() -> None:
    host = replace(snapshot(mem_available=256 * MiB), owner_pressure=PSI, pilots_idle=True)
    s = owner_shortage(pressure_config(), host, 0.0, 3.5)
    assert s.memory and s.urgent and s.reason is Reason.OWNER_MEMORY
    assert s.detail == f"owner needs memory ({256 * MiB} bytes available)"
    usage = owner_shortage(pressure_config(give_way=GiveWayMode.USAGE), host, 0.0, 3.5)
    assert usage.memory and not usage.urgent


@pytest.mark.parametrize("mode", list(GiveWayMode))
@pytest.mark.parametrize(
    ("idle", "active"),
    [(None, False), (0.0, True), (59.9, True), (60.0, False), (True, False), (3600.0, False)],
)
def test_owner_at_the_keyboard(mode: GiveWayMode, idle: float | bool | None, active: bool) -> None:
    """`owner_idle` under `active_within` is a shortage under either rule; no reading (no logind)
    or a value that is no number never is."""
    variables = {} if idle is None else {"owner_idle": idle}
    host = replace(snapshot(variables=variables), owner_pressure=PSI, pilots_idle=True)
    s = owner_shortage(pressure_config(give_way=mode, active_within=60.0), host, 0.0, 3.5)
    assert s.active is active and s.any is active
    if active:
        assert s.reason is Reason.OWNER_ACTIVE and "active_within 60s" in s.detail
    off = owner_shortage(pressure_config(give_way=mode, active_within=0.0), host, 0.0, 3.5)
    assert not off.any


def test_which_frozen_pilots_may_thaw() -> None:
    usage, pressure = pressure_config(give_way=GiveWayMode.USAGE), pressure_config()
    by_pressure, by_use = Shortage(cpu_by_pressure=True), Shortage(cpu_by_use=True)
    for reason in OWNER_REASONS:
        assert thaws(usage, by_pressure, reason)
    assert thaws(pressure, by_pressure, Reason.OWNER_ACTIVE)
    assert thaws(pressure, by_use, Reason.OWNER_CPU)
    for reason in (Reason.OWNER_CPU, Reason.OWNER_MEMORY, Reason.OWNER_IO):
        assert not thaws(pressure, by_pressure, reason)
    assert not thaws(pressure, by_use, Reason.OWNER_IO)


# --- the ladder -----------------------------------------------------------------------------------


def test_an_owner_who_only_uses_the_cpu_keeps_the_pilots() -> None:
    """The point of the rule: the owner takes the whole host for ten minutes, stalls nowhere
    (the idle cgroup hands it the CPU): the pilots keep running, none is frozen or stopped."""
    sim = ladder(owner=segments([(100, 0.0, 0), (600, 4.0, 0), (1000, 0.0, 0)]))
    steps = sim.run(900)
    assert not actions(steps, "freeze") and not actions(steps, "stop")
    assert sim.count("default", PilotPhase.RUNNING) == 3
    busy = [s for s in steps if 100 <= t_of(s) < 700]
    assert busy and all(not s.state.overload_since for s in busy)


# --- starts: on slots where the kernel gives the owner its CPU back -----------------------------


def starts_while_busy(**kw: object) -> list[float]:
    """When the three pilots of `ladder` start (seconds) with the owner on every CPU from t=0
    to t=300, then gone."""
    sim = ladder(owner=segments([(300, 4.0, 0), (1000, 0.0, 0)]), **kw)
    return [t - T0_MONOTONIC for t, _ in actions(sim.run(400), "start")]


def test_idle_pilots_start_next_to_an_owner_on_every_cpu() -> None:
    """Under cpu.idle=1 a pilot on a CPU the owner uses gets only what the owner leaves, at once:
    the starts do not wait for the owner to go (one per tick, per_tick 1)."""
    assert starts_while_busy() == [0.0, 10.0, 20.0]


@pytest.mark.parametrize(
    ("kw", "first"),
    [
        ({"give_way": GiveWayMode.USAGE}, 300.0),  # Plancton's rule: only once the owner is gone
        ({"pilots_idle": False}, 300.0),  # no idle cgroup: the owner's CPU stalls are watched
        ({"pilots_idle": False, "psi": False}, 300.0),  # ... or its use, where no stalls are read
    ],
)
def test_the_owners_cpu_use_holds_starts_back_where_it_is_watched(
    kw: dict[str, object], first: float
) -> None:
    assert starts_while_busy(**kw)[0] == first


def test_no_cpu_line_starts_on_slots_even_outside_an_idle_cgroup() -> None:
    """`cpu_pressure: null` says the owner's CPU never makes pilots give way: holding starts back
    for it would be a rule the config does not have."""
    assert starts_while_busy(pilots_idle=False, cpu_pressure=None) == [0.0, 10.0, 20.0]


def test_the_reserve_still_caps_pilots_on_slots() -> None:
    """`reserve` is the admin's CPUs never given to pilots, whatever the owner does: 4 CPUs,
    reserve 2, 1-CPU pilots: two start."""
    assert starts_while_busy(reserve=2.0) == [0.0, 10.0]


def test_a_pilot_frozen_for_the_keyboard_thaws_next_to_a_busy_owner() -> None:
    """Thawing fits on the same slots as starting: the owner leaving the keyboard brings the
    pilots back while its programs still use every CPU."""
    idle = segments([(100, 3600.0, 0), (40, 0.0, 0), (1000, 3600.0, 0)])
    sim = ladder(
        owner=segments([(90, 0.0, 0), (1000, 4.0, 0)]),
        owner_idle=lambda t: idle(t)[0],
        active_within=60.0,
        grace_kill=20.0,
    )
    sim.run(90)
    steps = sim.run(200)
    assert [t - T0_MONOTONIC for t, _ in actions(steps, "thaw")] == [140.0] * 3


def test_the_same_owner_under_usage_stops_them() -> None:
    sim = ladder(owner=segments([(100, 0.0, 0), (600, 4.0, 0)]), give_way=GiveWayMode.USAGE)
    steps = sim.run(400)
    assert len(owner_reasons(steps, "stop")) == 3


def test_io_stalls_freeze_the_youngest_one_per_grace_kill_then_stop_them() -> None:
    """Stalls the owner makes alone (they last whatever the pilots do): one pilot per
    `grace_kill`, youngest first, each stopped `freeze` after it was frozen. The clock of the
    next rung starts with the first reading after a rung (as under `usage`)."""
    sim = ladder(pressure=lambda t, _n: (0.0, 0.0, 60.0 if 100 <= t < 400 else 0.0))
    sim.run(90)
    oldest, middle, youngest = sorted(sim.pilots)
    steps = sim.run(310)
    assert owner_reasons(steps, "freeze") == [
        (160.0, youngest, Reason.OWNER_IO),
        (230.0, middle, Reason.OWNER_IO),
        (300.0, oldest, Reason.OWNER_IO),
    ]
    assert owner_reasons(steps, "stop") == [
        (190.0, youngest, Reason.OWNER_IO),
        (260.0, middle, Reason.OWNER_IO),
        (330.0, oldest, Reason.OWNER_IO),
    ]
    # nothing starts while the owner stalls; once calm and grace_spawn over, pilots come back
    assert not any(s.decision.start for s in steps if 100 <= t_of(s) < 400)
    frozen = next(a for _, a in actions(steps, "freeze"))
    assert frozen.detail == "owner io pressure 60.0% over the 25% line (sim)"
    assert not actions(steps, "thaw")


def test_pilots_that_cause_the_stalls_are_not_thawed_when_the_stalls_end() -> None:
    """The youngest pilot's I/O makes the owner stall: once it is frozen the stalls end, which
    says nothing about the owner's needs. Thawing it would bring them back every grace_kill: it
    stays frozen and is stopped after `freeze`, then the host is calm."""
    sim = ladder()
    sim.run(90)
    _, _, culprit = sorted(sim.pilots)

    def stalls(_t: float, _n: int) -> tuple[float, float, float]:
        hurts = culprit in sim.pilots and sim.pilots[culprit].phase is PilotPhase.RUNNING
        return 0.0, 0.0, 80.0 if hurts else 0.0

    sim.pressure = stalls
    steps = sim.run(300)
    assert owner_reasons(steps, "freeze") == [(160.0, culprit, Reason.OWNER_IO)]
    assert owner_reasons(steps, "stop") == [(190.0, culprit, Reason.OWNER_IO)]
    assert not actions(steps, "thaw")
    assert sim.count("default", PilotPhase.RUNNING) == 3  # a newcomer took its place


def test_memory_under_the_floor_stops_one_pilot_per_decision_at_once() -> None:
    """No grace_kill, no freeze (a frozen pilot keeps its memory): the youngest pilot is stopped
    at the first reading under the floor, another at each decision while it lasts."""
    p = pool(max_pilots="3", per_tick=1, memory=GiB, stop_grace=0.0)
    cfg = pressure_config(
        p, tick=10.0, grace_kill=120.0, freeze=30.0, grace_spawn=60.0, reserve_memory=GiB
    )
    # 8 GiB host, 3 pilots of 1 GiB; the owner takes 4.5 GiB at t=100, 5.5 GiB at t=200
    owner = segments([(100, 0.0, 0), (100, 0.0, int(4.5 * GiB)), (1000, 0.0, int(5.5 * GiB))])
    sim = PressureSim(cfg, ncpus=16, mem_total=8 * GiB, owner=owner)
    sim.run(90)
    oldest, middle, youngest = sorted(sim.pilots)
    steps = sim.run(140)
    assert not actions(steps, "freeze")
    assert owner_reasons(steps, "stop") == [
        (100.0, youngest, Reason.OWNER_MEMORY),
        (200.0, middle, Reason.OWNER_MEMORY),
    ]
    assert sim.state.gave_way_at == T0_MONOTONIC + 200.0
    assert oldest in sim.pilots and not any(s.decision.start for s in steps if t_of(s) >= 100)


def test_under_the_floor_a_frozen_pilot_goes_first() -> None:
    cfg = pressure_config(pool(), grace_kill=60.0, freeze=600.0, reserve_memory=GiB)
    pilots = [view("old", age=300), view("frozen", age=10, phase=PilotPhase.FROZEN)]
    state = PolicyState(frozen_since={"frozen": T0_MONOTONIC - 5}, frozen_reason={"frozen": Reason.OWNER_IO})  # fmt: skip
    host = replace(snapshot(mem_available=GiB - 1), owner_pressure=PSI, pilots_idle=True)
    decision, new_state, _ = decide_once(cfg, host, pilots, state)
    assert [(a.pilot_id, a.reason) for a in decision.stop] == [("frozen", Reason.OWNER_MEMORY)]
    assert not decision.freeze and not decision.thaw and not new_state.frozen_since
    decision, _, _ = decide_once(cfg, host, pilots[:1], new_state)
    assert [a.pilot_id for a in decision.stop] == ["old"]


def test_memory_stalls_take_the_ladder() -> None:
    sim = ladder(pressure=lambda t, _n: (0.0, 30.0 if t >= 100 else 0.0, 0.0))
    sim.run(90)
    _, _, youngest = sorted(sim.pilots)
    steps = sim.run(100)
    assert owner_reasons(steps, "freeze") == [(160.0, youngest, Reason.OWNER_MEMORY)]
    assert owner_reasons(steps, "stop") == [(190.0, youngest, Reason.OWNER_MEMORY)]


def test_cpu_stalls_take_the_ladder() -> None:
    """Pilots outside an idle cgroup (the parent could not be set up) take CPU the owner waits
    for: its CPU "full" stalls make them give way."""
    sim = ladder(pressure=lambda t, n: (40.0 * n if t >= 100 else 0.0, 0.0, 0.0), pilots_idle=False)  # fmt: skip
    sim.run(90)
    _, middle, youngest = sorted(sim.pilots)
    steps = sim.run(140)
    assert owner_reasons(steps, "freeze") == [
        (160.0, youngest, Reason.OWNER_CPU),
        (230.0, middle, Reason.OWNER_CPU),
    ]


def test_owner_at_the_keyboard_freezes_every_pilot_and_thaws_them_when_gone() -> None:
    idle = segments([(100, 3600.0, 0), (40, 0.0, 0), (1000, 3600.0, 0)])
    sim = ladder(owner_idle=lambda t: idle(t)[0], active_within=60.0, grace_kill=20.0)
    sim.run(90)
    steps = sim.run(200)
    frozen = owner_reasons(steps, "freeze")
    assert [(t, r) for t, _, r in frozen] == [(120.0, Reason.OWNER_ACTIVE)] * 3
    thawed = [(t - T0_MONOTONIC, a.reason) for t, a in actions(steps, "thaw")]
    assert thawed == [(140.0, Reason.OWNER_GONE)] * 3
    assert not actions(steps, "stop")


def test_owner_staying_at_the_keyboard_gets_the_host() -> None:
    sim = ladder(owner_idle=lambda t: 0.0 if t >= 100 else 3600.0, active_within=60.0)
    sim.run(90)
    steps = sim.run(200)
    assert len(owner_reasons(steps, "stop")) == 3
    assert all(r is Reason.OWNER_ACTIVE for _, _, r in owner_reasons(steps, "stop"))
    assert not any(s.decision.start for s in steps if t_of(s) >= 100)


def test_usage_rule_also_answers_the_keyboard() -> None:
    sim = ladder(
        owner_idle=lambda t: 0.0 if t >= 100 else 3600.0,
        active_within=60.0,
        give_way=GiveWayMode.USAGE,
    )
    sim.run(90)
    steps = sim.run(100)
    assert [(t, r) for t, _, r in owner_reasons(steps, "freeze")] == [
        (160.0, Reason.OWNER_ACTIVE)
    ] * 3


def test_no_psi_on_a_host_with_idle_pilots_keeps_them_for_cpu() -> None:
    sim = ladder(owner=segments([(100, 0.0, 0), (600, 4.0, 0)]), psi=False)
    steps = sim.run(500)
    assert not owner_reasons(steps, "freeze") and not owner_reasons(steps, "stop")


def test_no_psi_and_no_idle_cgroup_gives_way_to_use_as_usage_does() -> None:
    """The same trace, the same decisions as the usage rule: an unprotected owner is watched."""
    trace = segments([(100, 0.0, 0), (75, 2.0, 0), (200, 1.0, 0), (1000, 4.0, 0)])
    usage = ladder(owner=trace, give_way=GiveWayMode.USAGE)
    degraded = ladder(owner=trace, psi=False, pilots_idle=False)
    a, b = usage.run(900), degraded.run(900)
    assert [replace(s.decision, notes=()) for s in a] == [replace(s.decision, notes=()) for s in b]
    assert owner_reasons(a, "stop")


# --- what a host cannot read --------------------------------------------------------------------


def notes_of(give_way: GiveWayMode, reading: OwnerPressure | None, idle: bool, **kw: object) -> str:  # fmt: skip
    cfg = pressure_config(give_way=give_way, **kw)  # type: ignore[arg-type]
    host = replace(snapshot(), owner_pressure=reading, pilots_idle=idle)
    return "\n".join(shortage_notes(cfg, host))


def test_notes_say_what_the_rule_degrades_to() -> None:
    full = psi()
    assert notes_of(GiveWayMode.PRESSURE, full, False) == ""
    idle = notes_of(GiveWayMode.PRESSURE, full, True)
    assert idle.startswith("owner cpu_pressure: not applied here") and "cpu.idle=1" in idle
    assert notes_of(GiveWayMode.PRESSURE, full, True, cpu_pressure=None) == ""
    assert notes_of(GiveWayMode.USAGE, None, False) == ""
    none = notes_of(GiveWayMode.PRESSURE, None, True)
    assert none.startswith("owner pressure: no PSI on this host")
    assert "left to the pilots' idle cgroup" in none
    assert "judged by use" in notes_of(GiveWayMode.PRESSURE, None, False)
    host_wide = OwnerPressure(None, 1.0, 2.0, False, "/proc/pressure")
    text = notes_of(GiveWayMode.PRESSURE, host_wide, True)
    assert text.startswith("owner pressure: read host-wide (/proc/pressure)") and "'full'" in text
    assert "CPU" not in notes_of(GiveWayMode.PRESSURE, host_wide, True, cpu_pressure=None)
    old_kernel = OwnerPressure(None, 1.0, 2.0, True, "cgroups user.slice")
    assert "before 5.13" in notes_of(GiveWayMode.PRESSURE, old_kernel, True)
    assert notes_of(GiveWayMode.PRESSURE, old_kernel, True, cpu_pressure=None) == ""
    for mode in GiveWayMode:
        keyboard = notes_of(mode, full, False, active_within=60.0)
        assert keyboard.startswith("owner active_within: no owner_idle reading from logind")


def test_notes_reach_the_decision() -> None:
    cfg = pressure_config()
    decision, _, _ = decide_once(cfg, replace(snapshot(), owner_pressure=None))
    assert any(n.startswith("owner pressure:") for n in decision.notes)
