"""Property tests of `owner.give_way: pressure` over random traces, as for the usage rule.

The scenarios are those of test_policy_properties (random pools, owner CPU and memory traces,
pilots that end on their own, slow starts and pauses); on top of them the owner's stalls follow a
random piecewise-constant trace, optionally fed by the running pilots (each running pilot adds
stalls, which end when it is frozen), random lines, and an owner who may sit at the keyboard.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given
from hypothesis import strategies as st

from planctond.config.model import Config, GiveWayMode
from planctond.policy.model import OWNER_REASONS, Decision, PilotPhase, PilotView, Reason
from planctond.policy.shortage import owner_shortage
from planctond.policy.state import PolicyState
from tests.support.policy_sim import Step, segments
from tests.unit.pressure_sim import IdleTrace, PressureSim, PressureTrace, calm
from tests.unit.test_policy_properties import FAST, Scenario, pilots_of, scenarios

FORCED = frozenset({Reason.TTL, Reason.POOL_REMOVED, Reason.OVER_MAX_PILOTS, Reason.STOP_REQUESTED})
LEVELS = st.sampled_from([0.0, 0.0, 0.0, 5.0, 10.0, 10.01, 25.0, 30.0, 100.0])
LINES = st.one_of(st.none(), st.sampled_from([0.0, 5.0, 10.0, 25.0, 50.0]))


@dataclass(frozen=True)
class Stalls:
    """The owner's stalls: (duration, cpu, memory, io) segments plus what each running pilot
    adds; a resource the host cannot measure reads None."""

    parts: tuple[tuple[float, float, float, float], ...]
    fed: tuple[float, float, float]
    measured: tuple[bool, bool, bool]

    def trace(self) -> PressureTrace:
        def at(t: float, running: int) -> tuple[float | None, float | None, float | None]:
            end, here = 0.0, self.parts[-1][1:]
            for duration, *values in self.parts:
                end += duration
                if t < end:
                    here = tuple(values)
                    break
            out = [min(100.0, v + f * running) for v, f in zip(here, self.fed, strict=True)]
            return tuple(v if m else None for v, m in zip(out, self.measured, strict=True))  # type: ignore[return-value]

        return at


@st.composite
def stalls(draw: st.DrawFn, tick: float) -> Stalls:
    in_ticks = st.floats(0.3, 30.0).map(lambda n: n * tick)
    parts = draw(st.lists(st.tuples(in_ticks, LEVELS, LEVELS, LEVELS), min_size=1, max_size=8))
    fed = draw(st.tuples(*(st.sampled_from([0.0, 0.0, 5.0, 30.0]) for _ in range(3))))
    measured = draw(st.tuples(st.booleans(), st.just(True), st.just(True)) | st.just((False,) * 3))
    return Stalls(tuple(parts), fed, measured)


@dataclass(frozen=True)
class PressureScenario:
    base: Scenario
    config: Config
    stalls: Stalls
    idle: tuple[tuple[float, float, int], ...] | None  # owner_idle segments (value in the cpu slot)
    pilots_idle: bool
    per_cgroup: bool

    def sim(self, *, psi: bool = True, config: Config | None = None) -> PressureSim:
        b = self.base
        lifetimes = b.lifetimes
        owner_idle: IdleTrace | None = None
        if self.idle is not None:
            trace = segments(self.idle)
            owner_idle = lambda t: trace(t)[0]  # noqa: E731
        return PressureSim(
            config or self.config,
            ncpus=b.ncpus,
            mem_total=b.mem_total,
            owner=segments(b.owner),
            pilot_load=b.pilot_load,
            lifetime=lambda name: lifetimes.get(name),
            stop_delay=b.stop_delay,
            start_delay=b.start_delay,
            pause_delay=b.pause_delay,
            pressure=self.stalls.trace() if psi else calm,
            psi=psi,
            per_cgroup=self.per_cgroup,
            pilots_idle=self.pilots_idle,
            owner_idle=owner_idle,
        )


@st.composite
def pressure_scenarios(draw: st.DrawFn, *, max_ticks: int = 100) -> PressureScenario:
    base = draw(scenarios(max_ticks=max_ticks))
    tick = base.config.tick
    idle = None
    if draw(st.booleans()):
        level = st.sampled_from([0.0, 20.0, 3600.0])
        seg = st.tuples(st.floats(0.3, 30.0).map(lambda n: n * tick), level, st.just(0))
        idle = tuple(draw(st.lists(seg, min_size=1, max_size=6)))
    owner = replace(
        base.config.owner,
        give_way=GiveWayMode.PRESSURE,
        cpu_pressure=draw(LINES),
        memory_pressure=draw(LINES),
        io_pressure=draw(LINES),
        active_within=draw(st.sampled_from([0.0, 0.0, 60.0])),
    )
    return PressureScenario(
        base=base,
        config=replace(base.config, owner=owner),
        stalls=draw(stalls(tick)),
        idle=idle,
        pilots_idle=draw(st.booleans()),
        per_cgroup=draw(st.booleans()),
    )


def give_way_view(step: Step, prev: PolicyState) -> tuple[list[PilotView], list[PilotView]]:
    """(frozen, running) as the ladder sees them: live pilots no forced stop took."""
    forced = {a.pilot_id for a in step.decision.stop if a.reason in FORCED}
    live = [
        p
        for p in step.before
        if p.phase in (PilotPhase.RUNNING, PilotPhase.FROZEN) and p.id not in forced
    ]
    frozen = [p for p in live if p.phase is PilotPhase.FROZEN or p.id in prev.frozen_since]
    ids = {p.id for p in frozen}
    return frozen, [p for p in live if p.id not in ids]


@FAST
@given(pressure_scenarios())
def test_invariants_under_pressure(sc: PressureScenario) -> None:
    cfg, owner = sc.config, sc.config.owner
    steps = sc.sim().run(sc.base.seconds)
    prev = PolicyState()
    gave_way: float | None = None
    short_since: float | None = None
    for step in steps:
        d, host = step.decision, step.host
        for kind in ("freeze", "thaw", "stop", "remove"):
            for a in getattr(d, kind):
                assert isinstance(a.reason, Reason) and a.detail.strip(), (kind, a)
        for p in cfg.pools:
            assert pilots_of(step, p.name) <= sc.base.max_allowed[p.name]

        frozen, running = give_way_view(step, prev)
        need = sum(p.cpus for p in running)
        spare = host.ncpus - owner.reserve - host.owner_cpu
        short = owner_shortage(cfg, host, need, spare)

        # nothing starts while the owner is short, a pilot is frozen, or grace_spawn runs
        if any(a.reason in OWNER_REASONS for a in d.stop):
            gave_way = step.now
        if d.start:
            assert not short.any and not step.state.frozen_since, step.now
            assert not any(p.phase is PilotPhase.FROZEN for p in step.after)
            if gave_way is not None:
                assert step.now - gave_way >= owner.grace_spawn - 1e-9

        # a pilot frozen for the owner's stalls is never thawed: they end because it is frozen
        psi = host.owner_pressure
        cpu_measured = owner.cpu_pressure is not None and psi is not None and psi.cpu is not None
        for a in d.thaw:
            assert not short.any
            why = prev.frozen_reason.get(a.pilot_id)
            assert why is Reason.OWNER_ACTIVE or (why is Reason.OWNER_CPU and not cpu_measured)

        # memory under the floor: no freeze, and a pilot stopped at once if any is there to take
        victims = [a for a in (*d.freeze, *d.stop) if a.reason in OWNER_REASONS]
        if host.mem_available < owner.reserve_memory:
            assert not d.freeze, step.now
            if frozen or running:
                assert any(a.reason is Reason.OWNER_MEMORY for a in d.stop), step.now

        # other shortages with running pilots: a rung within grace_kill (+ one tick)
        fresh = {p.id: p for p in running}
        chosen = [fresh[a.pilot_id] for a in victims if a.pilot_id in fresh]
        if short.any and not short.urgent and running and not chosen:
            short_since = step.now if short_since is None else short_since
            assert step.now - short_since <= owner.grace_kill + cfg.tick + 1e-9, step.now
        else:
            short_since = None

        # victims are the youngest running pilots; the keyboard takes them all
        kept = [
            p
            for p in step.after
            if p.id in fresh
            and p.phase is PilotPhase.RUNNING
            and p.id not in step.state.frozen_since
        ]
        if chosen and kept:
            assert max(p.started for p in kept) <= min(p.started for p in chosen), step.now
        if chosen and short.active and not short.urgent:
            assert not kept, step.now
        prev = step.state


@FAST
@given(scenarios(max_ticks=100), st.booleans(), st.booleans())
def test_cpu_use_alone_never_costs_a_pilot(sc: Scenario, per_cgroup: bool, cpu_line: bool) -> None:
    """Whatever the owner's CPU use (the whole host included), an owner who neither stalls, nor
    runs short of memory, nor sits at the keyboard never makes an idle pilot give way."""
    cfg = sc.config
    cfg = replace(
        cfg,
        owner=replace(
            cfg.owner,
            give_way=GiveWayMode.PRESSURE,
            cpu_pressure=10.0 if cpu_line else None,
            reserve_memory=0,
        ),
    )
    cpu_only = tuple((duration, cpu, 0) for duration, cpu, _mem in sc.owner)
    base = replace(sc, config=cfg, owner=cpu_only)
    quiet = Stalls(((1.0, 0.0, 0.0, 0.0),), (0.0, 0.0, 0.0), (per_cgroup, True, True))
    sim = PressureScenario(base, cfg, quiet, None, True, per_cgroup).sim()
    steps = sim.run(sc.seconds)
    for step in steps:
        d = step.decision
        assert not d.freeze and not d.thaw, step.now
        assert not any(a.reason in OWNER_REASONS for a in d.stop), step.now
        assert step.state.overload_since is None


@FAST
@given(pressure_scenarios(max_ticks=100))
def test_idle_pilots_are_decided_without_the_owners_cpu_use(sc: PressureScenario) -> None:
    """With pilots idle to the scheduler, nothing of a decision depends on how much CPU the
    owner uses: the same trace with the owner's CPU at zero gives the same actions, at the same
    times, for every stall, memory and keyboard trace."""
    base = sc.base
    no_cpu = replace(base, owner=tuple((d, 0.0, mem) for d, _cpu, mem in base.owner))
    busy = replace(sc, pilots_idle=True).sim().run(base.seconds)
    quiet = replace(sc, base=no_cpu, pilots_idle=True).sim().run(base.seconds)

    def acts(steps: list[Step]) -> list[Decision]:  # the words name the owner's use; drop them
        return [
            replace(s.decision, notes=(), start=tuple(replace(a, why="") for a in s.decision.start))
            for s in steps
        ]

    assert acts(busy) == acts(quiet)


@FAST
@given(pressure_scenarios(max_ticks=80))
def test_usage_rule_ignores_the_stalls(sc: PressureScenario) -> None:
    """Under `usage` the readings of the owner's stalls change nothing."""
    usage = replace(
        sc.config,
        owner=replace(
            sc.config.owner,
            give_way=GiveWayMode.USAGE,
            cpu_pressure=None,
            memory_pressure=None,
            io_pressure=None,
        ),
    )
    with_psi = sc.sim(config=usage).run(sc.base.seconds)
    without = sc.sim(config=usage, psi=False).run(sc.base.seconds)
    assert [s.decision for s in with_psi] == [s.decision for s in without]


@FAST
@given(scenarios(max_ticks=100))
def test_no_psi_and_no_idle_cgroup_decide_as_usage(sc: Scenario) -> None:
    """A host that cannot read the owner's stalls, with pilots outside an idle cgroup, judges
    the CPU by use: the same decisions as `usage`, as long as memory stays above the floor
    (where `pressure` stops at once)."""
    owner = tuple((duration, cpu, 0) for duration, cpu, _mem in sc.owner)
    usage_cfg = replace(sc.config, owner=replace(sc.config.owner, reserve_memory=0))
    base = replace(sc, config=usage_cfg, owner=owner)
    pressure_cfg = replace(usage_cfg, owner=replace(usage_cfg.owner, give_way=GiveWayMode.PRESSURE))
    quiet = Stalls(((1.0, 0.0, 0.0, 0.0),), (0.0, 0.0, 0.0), (True, True, True))
    usage = PressureScenario(base, usage_cfg, quiet, None, False, False).sim(psi=False)
    degraded = PressureScenario(base, pressure_cfg, quiet, None, False, False).sim(psi=False)
    a, b = usage.run(sc.seconds), degraded.run(sc.seconds)
    assert [replace(s.decision, notes=()) for s in a] == [replace(s.decision, notes=()) for s in b]


@FAST
@given(scenarios(max_ticks=100), st.sampled_from([5.0, 30.0, 100.0]))
def test_pilots_that_cause_the_stalls_are_frozen_once_and_never_thawed(
    sc: Scenario, per_pilot: float
) -> None:
    """Every running pilot feeds the owner's I/O stalls: each pilot is frozen at most once and
    stays frozen until it is stopped; the host never flaps freeze/thaw."""
    cfg = replace(
        sc.config,
        owner=replace(
            sc.config.owner, give_way=GiveWayMode.PRESSURE, io_pressure=4.0, reserve_memory=0
        ),
    )
    owner = tuple((duration, cpu, 0) for duration, cpu, _mem in sc.owner)
    fed = Stalls(((1.0, 0.0, 0.0, 0.0),), (0.0, 0.0, per_pilot), (True, True, True))
    base = replace(sc, config=cfg, owner=owner)
    steps = PressureScenario(base, cfg, fed, None, True, True).sim().run(sc.seconds)
    frozen_ids = [a.pilot_id for s in steps for a in s.decision.freeze]
    assert len(frozen_ids) == len(set(frozen_ids))
    assert not any(s.decision.thaw for s in steps)
    if cfg.owner.freeze == 0:
        assert not frozen_ids
