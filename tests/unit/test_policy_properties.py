"""Property tests of the owner-first policy over random load traces and random valid configs.

Each example runs the policy in the deterministic host simulator (tests.support.policy_sim):
pilots appear when started (optionally after a start delay), exit after a delay within
`stop_grace` when stopped, may end on their own, and the owner's CPU and memory follow a random
piecewise-constant trace. The invariants are checked on every decision, event-driven ones included.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planctond.config.model import Config, PoolConfig
from planctond.policy.model import (
    Decision,
    HostSnapshot,
    PilotPhase,
    PilotView,
    Reason,
    RunState,
)
from planctond.policy.state import PolicyState
from tests.support.policy_sim import (
    T0_MONOTONIC,
    GiB,
    HostSim,
    OwnerTrace,
    Step,
    actions,
    decide_once,
    make_config,
    pool,
    segments,
    snapshot,
    view,
)

MiB = 1024**2
GIVE_WAY = (Reason.OWNER_CPU, Reason.OWNER_MEMORY)
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# max_pilots expressions whose value cannot change during a run, each with an independent
# reference: (source, f(ncpus, ram_bytes, pool memory) -> allowed)
MaxFn = Callable[[int, int, int], int]
MAX_PILOTS: list[tuple[str, MaxFn]] = [
    ("1", lambda n, r, m: 1),
    ("ncpus - 2", lambda n, r, m: max(0, n - 2)),
    ("ncpus", lambda n, r, m: n),
    ("ncpus * 3", lambda n, r, m: 3 * n),
    ("min(3, ncpus)", lambda n, r, m: min(3, n)),
    ("ncpus / 2", lambda n, r, m: n // 2),
    ("ram_bytes // max(max_dock_mem, GiB)", lambda n, r, m: r // max(m, GiB)),
]


def one_decimal(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Values like an admin writes them (0.25, 1.5), which also hit the boundaries exactly."""
    return st.integers(round(lo * 20), round(hi * 20)).map(lambda i: i / 20)


@dataclass(frozen=True)
class Scenario:
    config: Config
    ncpus: int
    mem_total: int
    max_allowed: dict[str, int]
    owner: tuple[tuple[float, float, int], ...]
    lifetimes: dict[str, tuple[float, int] | None]
    pilot_load: float
    stop_delay: float
    start_delay: float
    seconds: float
    pause_delay: float = 0.0

    def sim(self, owner: OwnerTrace | None = None) -> HostSim:
        lifetimes = self.lifetimes
        return HostSim(
            self.config,
            ncpus=self.ncpus,
            mem_total=self.mem_total,
            owner=owner or segments(self.owner),
            pilot_load=self.pilot_load,
            lifetime=lambda name: lifetimes.get(name),
            stop_delay=self.stop_delay,
            start_delay=self.start_delay,
            pause_delay=self.pause_delay,
        )


@st.composite
def pools(
    draw: st.DrawFn, name: str, ncpus: int, mem_total: int, tick: float
) -> tuple[PoolConfig, int]:
    source, reference = draw(st.sampled_from(MAX_PILOTS))
    memory = draw(st.sampled_from([0, 256 * MiB, GiB, 2 * GiB]))
    p = pool(
        name,
        cpus=draw(one_decimal(0.05, min(4.0, float(ncpus)))),
        memory=memory,
        max_pilots=source,
        per_tick=draw(st.integers(1, 5)),
        ttl=draw(st.sampled_from([1e7, 1e7, 60.0, 300.0, 1200.0, 4 * tick, 25 * tick])),
        stop_grace=draw(st.sampled_from([0.0, 5.0, 30.0, 60.0])),
        nowork_exit_codes=frozenset({3}),
        fail_window=60.0,
        backoff_min=draw(st.sampled_from([1.0, 10.0])),
        backoff_max=draw(st.sampled_from([10.0, 300.0])),
    )
    return p, reference(ncpus, mem_total, memory)


@st.composite
def scenarios(draw: st.DrawFn, *, max_ticks: int = 120) -> Scenario:
    """Times are drawn in ticks (grace_kill 12 ticks = 2 min at the default 10 s tick), so every
    tick length meets owners who come and go around the grace and freeze windows."""
    ncpus = draw(st.integers(1, 8))
    mem_total = draw(st.sampled_from([2, 8, 16])) * GiB
    n_pools = draw(st.integers(1, 2))
    tick = draw(st.sampled_from([1.0, 5.0, 10.0, 30.0]))
    drawn = [draw(pools(f"p{i}", ncpus, mem_total, tick)) for i in range(n_pools)]
    cfg = make_config(
        *(p for p, _ in drawn),
        tick=tick,
        reserve=draw(one_decimal(0.0, 1.0)),
        margin=draw(one_decimal(0.0, 1.0)),
        reserve_memory=draw(st.sampled_from([0, 512 * MiB, GiB])),
        grace_kill=tick * draw(st.sampled_from([0.0, 0.5, 1.0, 2.5, 6.0, 12.0])),
        grace_spawn=tick * draw(st.sampled_from([0.0, 1.0, 3.0, 6.0])),
        freeze=tick * draw(st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0])),
    )
    # The owner starts quiet enough for pilots to start, then comes and goes.
    in_ticks = st.floats(0.3, 30.0).map(lambda n: n * tick)
    mem_share = st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.2, 0.5, 0.8, 1.0])
    segment = st.tuples(
        in_ticks, one_decimal(0.0, float(ncpus)), mem_share.map(lambda f: int(f * mem_total))
    )
    quiet = st.tuples(in_ticks, one_decimal(0.0, ncpus / 3), st.just(0))
    owner = (draw(quiet), *draw(st.lists(segment, min_size=1, max_size=10)))
    lifetime = st.one_of(
        st.none(), st.tuples(st.floats(0.5, 900.0), st.sampled_from([0, 1, 3, 137]))
    )
    return Scenario(
        config=cfg,
        ncpus=ncpus,
        mem_total=mem_total,
        max_allowed={p.name: allowed for p, allowed in drawn},
        owner=owner,
        lifetimes={p.name: draw(lifetime) for p, _ in drawn},
        pilot_load=draw(st.sampled_from([0.0, 0.5, 1.0])),
        stop_delay=draw(st.sampled_from([0.0, 0.5, 1.0])),
        start_delay=draw(st.sampled_from([0.0, 0.0, 0.5, 3.0, 1.5 * tick])),
        seconds=tick * draw(st.integers(10, max_ticks)),
        pause_delay=draw(st.sampled_from([0.0, 0.0, 0.3])),
    )


def all_actions(d: Decision) -> list[tuple[str, Reason, str]]:
    out = []
    for kind in ("freeze", "thaw", "stop", "remove"):
        for a in getattr(d, kind):
            out.append((kind, a.reason, a.detail))
    return out


def pilots_of(step: Step, pool_name: str) -> int:
    """Containers that exist for the pool once the decision is applied, starts in flight too."""
    return sum(1 for p in step.after if p.pool == pool_name) + step.in_flight_after.get(
        pool_name, 0
    )


def running_cpus(step: Step) -> float:
    """Entitled CPUs of the pilots that run and are not about to be paused (a freeze was decided,
    Docker's pause has not taken hold yet)."""
    return sum(
        p.cpus
        for p in step.after
        if p.phase is PilotPhase.RUNNING and p.id not in step.state.frozen_since
    )


@FAST
@given(scenarios())
def test_invariants_over_random_traces(sc: Scenario) -> None:
    cfg, owner = sc.config, sc.config.owner
    sim = sc.sim()
    steps = sim.run(sc.seconds)
    assert steps, "the simulation decided nothing"
    gave_way: float | None = None
    excess_since: float | None = None
    mem_short_since: float | None = None
    prev_state = PolicyState()
    for step in steps:
        d = step.decision
        # every action carries a reason and says why
        for kind, reason, detail in all_actions(d):
            assert isinstance(reason, Reason), (kind, reason)
            assert detail.strip(), (kind, reason)
        for s in d.start:
            assert s.count > 0 and s.why

        # never more pilots than max_pilots, stopping ones and starts in flight included
        for p in cfg.pools:
            assert pilots_of(step, p.name) <= sc.max_allowed[p.name], (step.now, p.name)
        # ... so a constant max_pilots never needs an over-max stop, and pools never vanish
        assert not any(a.reason in (Reason.OVER_MAX_PILOTS, Reason.POOL_REMOVED) for a in d.stop)

        # never a start while the owner's grace_spawn window is open or pilots are frozen
        if any(a.reason in GIVE_WAY for a in d.stop):
            gave_way = step.now
        if d.start:
            assert not any(p.phase is PilotPhase.FROZEN for p in step.after), step.now
            if gave_way is not None:
                assert step.now - gave_way >= owner.grace_spawn - 1e-9, (step.now, gave_way)
            assert not step.state.frozen_since

        # ttl stops only pilots older than their ttl
        for a in d.stop:
            if a.reason is Reason.TTL:
                v = next(p for p in step.before if p.id == a.pilot_id)
                pc = cfg.pool(v.pool)
                assert pc is not None and step.host.wall - v.started >= pc.ttl

        # no pilot outlives its ttl (stopping ones are on their way out)
        for v in step.after:
            pc = cfg.pool(v.pool)
            if pc is not None and v.phase is not PilotPhase.STOPPING:
                assert step.host.wall - v.started < pc.ttl, (step.now, v)

        # the owner's victims are the youngest running pilots; a thaw only when it fits
        victims = [a.pilot_id for a in (*d.freeze, *d.stop) if a.reason in GIVE_WAY]
        fresh = {
            p.id: p
            for p in step.before
            if p.phase is PilotPhase.RUNNING and p.id not in prev_state.frozen_since
        }
        chosen = [fresh[v] for v in victims if v in fresh]
        kept = [
            p
            for p in step.after
            if p.phase is PilotPhase.RUNNING
            and p.id in fresh
            and p.id not in step.state.frozen_since  # not merely waiting for its pause
        ]
        if chosen and kept:
            assert max(p.started for p in kept) <= min(p.started for p in chosen), step.now
        spare = sc.ncpus - owner.reserve - step.host.owner_cpu
        if d.thaw:
            assert running_cpus(step) <= spare + 1e-9, step.now

        # the owner short of memory with pilots running: one gives way every grace_kill (+ a tick)
        if step.host.mem_available < owner.reserve_memory and fresh:
            if victims:
                mem_short_since = None
            else:
                mem_short_since = step.now if mem_short_since is None else mem_short_since
                assert step.now - mem_short_since <= owner.grace_kill + cfg.tick + 1e-9, step.now
        else:
            mem_short_since = None

        # running pilots' entitlement exceeds spare + margin for grace_kill + one tick at most
        need = running_cpus(step)
        if need > 0 and need > spare + owner.margin + 1e-9:
            if excess_since is None:
                excess_since = step.now
            assert step.now - excess_since <= owner.grace_kill + cfg.tick + 1e-9, (
                step.now,
                excess_since,
            )
        else:
            excess_since = None
        prev_state = step.state

    # the per_tick rate: a window opens with a start and lasts one tick (at least 1 s)
    window = max(cfg.tick, 1.0)
    for p in cfg.pools:
        opened, count = -math.inf, 0
        for step in steps:
            n = sum(s.count for s in step.decision.start if s.pool == p.name)
            if not n:
                continue
            if step.now - opened >= window:
                opened, count = step.now, 0
            count += n
            assert count <= p.per_tick, (p.name, step.now)


@FAST
@given(scenarios(max_ticks=60), st.lists(st.sampled_from(list(RunState)), min_size=1, max_size=6))
def test_run_states_over_random_traces(sc: Scenario, schedule: list[RunState]) -> None:
    """Draining and stopped never start anything; stopped leaves no pilot running."""
    sim = sc.sim()
    for rs in schedule:
        sim.run_state = rs
        first = len(sim.steps)
        sim.run(sc.seconds / len(schedule))
        for step in sim.steps[first:]:
            if rs is not RunState.ACTIVE:
                assert not step.decision.start
            if rs is RunState.STOPPED:
                assert all(p.phase is PilotPhase.STOPPING for p in step.after)
                for a in step.decision.stop:
                    assert a.detail


@st.composite
def steady_scenarios(draw: st.DrawFn) -> tuple[Scenario, float, float, int]:
    """A scenario whose owner uses a constant CPU (plus noise narrower than the margin) and a
    constant memory, pilots that never end on their own, and no ttl."""
    sc = draw(scenarios(max_ticks=100))
    owner_cfg = sc.config.owner
    margin = draw(one_decimal(0.05, 1.0))
    noise = draw(st.floats(0.0, 0.95)) * margin
    if draw(st.booleans()):
        base = draw(st.floats(0.0, max(0.0, sc.ncpus - noise)))
    else:
        # at the edge: the k-th pilot of the first pool fits at the owner's quietest readings
        # only, so a noisy reading takes less than `noise` from under it
        k = draw(st.integers(1, 6))
        slack = draw(st.floats(0.0, 1.0)) * noise
        base = max(0.0, sc.ncpus - owner_cfg.reserve - k * sc.config.pools[0].cpus - slack)
    mem = int(draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 0.9])) * sc.mem_total)
    config = make_config(
        *(pool(p.name, **_keep(p, ttl=1e7)) for p in sc.config.pools),
        tick=sc.config.tick,
        reserve=owner_cfg.reserve,
        margin=margin,
        reserve_memory=owner_cfg.reserve_memory,
        grace_kill=owner_cfg.grace_kill,
        grace_spawn=owner_cfg.grace_spawn,
        freeze=owner_cfg.freeze,
    )
    steady_sc = Scenario(
        config=config,
        ncpus=sc.ncpus,
        mem_total=sc.mem_total,
        max_allowed=sc.max_allowed,
        owner=((1.0, base, mem),),
        lifetimes={},
        pilot_load=sc.pilot_load,
        stop_delay=sc.stop_delay,
        start_delay=sc.start_delay,
        seconds=60.0 + sc.seconds,
    )
    return steady_sc, base, noise, mem


def _keep(p: PoolConfig, **changes: object) -> dict[str, object]:
    fields = {
        "cpus": p.cpus,
        "memory": p.memory,
        "max_pilots": p.max_pilots,
        "per_tick": p.per_tick,
        "stop_grace": p.stop_grace,
    }
    fields.update(changes)
    return fields


@FAST
@given(steady_scenarios(), st.integers(0, 2**32 - 1))
def test_no_flapping_at_steady_load(drawn: tuple[Scenario, float, float, int], seed: int) -> None:
    sc, base, noise, mem = drawn
    rng = random.Random(seed)
    readings: dict[float, float] = {}

    def owner(t: float) -> tuple[float, int]:
        if t not in readings:
            readings[t] = base + rng.uniform(0.0, noise)
        return readings[t], mem

    sim = sc.sim(owner)
    steps = sim.run(sc.seconds)
    assert not any(s.decision.freeze or s.decision.stop for s in steps)
    # ... nor did the policy ever see the owner short (the grace_kill clock never ran), unless
    # the owner alone already needs more than the host has
    owner_cfg = sc.config.owner
    owner_alone_short = (
        sc.mem_total - mem < owner_cfg.reserve_memory
        or base + noise > sc.ncpus - owner_cfg.reserve + sc.config.owner.margin
    )
    if not owner_alone_short:
        assert all(s.state.overload_since is None for s in steps)
    counts = [len(s.after) + sum(s.in_flight_after.values()) for s in steps]
    assert counts == sorted(counts), "pilots came and went at a steady load"
    # and it did settle on all the host can take: nothing more would fit even at the owner's
    # quietest reading, unless the pool is at its max_pilots
    last = steps[-1]
    if sc.seconds >= 60 + 40 * sc.config.tick:
        held_cpus = sum(p.cpus for p in last.after)
        held_mem = sum(sim.pilots[p.id].memory for p in last.after)
        for name, n in last.in_flight_after.items():
            pc = sc.config.pool(name)
            assert pc is not None
            held_cpus += n * pc.cpus
            held_mem += n * pc.memory
        spare_max = sc.ncpus - owner_cfg.reserve - min(float(sc.ncpus), base)
        mem_left = sc.mem_total - mem - held_mem - owner_cfg.reserve_memory
        owner_short = mem_left + held_mem < 0  # the owner needs memory: nothing may start
        for p in sc.config.pools:
            if owner_short or pilots_of(last, p.name) >= sc.max_allowed[p.name]:
                continue
            fits_cpu = spare_max - held_cpus >= p.cpus + noise + 1e-6
            fits_mem = p.memory == 0 or mem_left >= p.memory
            assert not (fits_cpu and fits_mem), (p.name, last.verdicts[p.name].note)


@st.composite
def burners(draw: st.DrawFn) -> tuple[Config, int, float]:
    ncpus = draw(st.integers(1, 8))
    reserve = draw(one_decimal(0.0, min(1.0, ncpus - 0.05)))
    cpus = draw(one_decimal(0.05, ncpus - reserve))
    tick = draw(st.sampled_from([1.0, 5.0, 10.0]))
    cfg = make_config(
        pool(max_pilots="1", cpus=cpus, memory=GiB, ttl=1e7),
        tick=tick,
        reserve=reserve,
        margin=draw(one_decimal(0.0, 1.0)),
        reserve_memory=GiB,
        grace_kill=draw(st.sampled_from([0.0, 5.0, 60.0])),
        grace_spawn=draw(st.sampled_from([0.0, 60.0])),
        freeze=draw(st.sampled_from([0.0, 30.0])),
    )
    return cfg, ncpus, tick * draw(st.integers(30, 300))


@settings(max_examples=40, deadline=None)
@given(burners())
def test_one_burning_pilot_with_max_pilots_one_is_left_alone(
    drawn: tuple[Config, int, float],
) -> None:
    cfg, ncpus, seconds = drawn
    sim = HostSim(cfg, ncpus=ncpus, mem_total=4 * GiB, pilot_load=1.0)
    steps = sim.run(seconds)
    assert sum(s.count for st_ in steps for s in st_.decision.start) == 1
    assert not any(s.decision.freeze or s.decision.stop for s in steps)
    pool_cpus = cfg.pools[0].cpus
    for s in steps[1:]:
        assert math.isclose(s.host.pilots_cpu, pool_cpus)  # it burns its whole share
        assert s.host.owner_cpu == 0.0


@settings(max_examples=80, deadline=None)
@given(
    tick=st.sampled_from([1.0, 10.0]),
    grace_kill=st.integers(0, 6),
    freeze=st.integers(0, 4),
    grace_spawn=st.integers(0, 5),
    arrive=st.integers(1, 5),
    stay=st.integers(1, 15),
)
def test_give_way_ladder_timing(
    tick: float, grace_kill: int, freeze: int, grace_spawn: int, arrive: int, stay: int
) -> None:
    """An owner who takes the whole host for `stay` ticks from tick `arrive` (all times in ticks):
    a visit no longer than grace_kill costs nothing; one that ends within `freeze` after the
    pilots were frozen thaws them; a longer one stops them, and they come back once the owner has
    left, grace_spawn has passed since the stop and the stopped ones are gone."""
    cfg = make_config(
        pool(max_pilots="3", per_tick=3, stop_grace=30.0),
        tick=tick,
        grace_kill=grace_kill * tick,
        freeze=freeze * tick,
        grace_spawn=grace_spawn * tick,
    )
    owner = segments([(arrive * tick, 0.0, 0), (stay * tick, 4.0, 0), (1.0, 0.0, 0)])
    sim = HostSim(cfg, ncpus=4, owner=owner, pilot_load=1.0, stop_delay=0.5)
    steps = sim.run(40 * tick)

    def ticks(kind: str) -> list[float]:
        return sorted({(t - T0_MONOTONIC) / tick for t, _ in actions(steps, kind)})

    frozen_at, stopped_at = arrive + grace_kill, arrive + grace_kill + freeze
    if stay <= grace_kill:
        expected: tuple[list[float], list[float], list[float]] = ([], [], [])
    elif freeze == 0:
        expected = ([], [], [frozen_at])
    elif stay < grace_kill + freeze:
        expected = ([frozen_at], [arrive + stay], [])
    else:
        expected = ([frozen_at], [], [stopped_at])
    assert (ticks("freeze"), ticks("thaw"), ticks("stop")) == expected
    starts = [(s.now - T0_MONOTONIC) / tick for s in steps if s.decision.start]
    if expected[2]:
        # ... once the owner left, grace_spawn passed and the stopped pilots are gone (they count
        # against max_pilots until then: they exit half-way through their 30 s stop_grace)
        gone = expected[2][0] + 15.0 / tick
        comeback = max(arrive + stay, expected[2][0] + grace_spawn, gone)
        assert starts == [0, comeback]
    else:
        assert starts == [0]
    assert sim.count("default", PilotPhase.RUNNING) == 3


@st.composite
def crowded_hosts(draw: st.DrawFn) -> tuple[Config, HostSnapshot, list[PilotView]]:
    """One reading of a host with running pilots of two sizes and an owner who may want more."""
    ncpus = draw(st.integers(1, 16))
    cfg = make_config(
        pool("big", cpus=draw(one_decimal(0.5, 4.0))),
        pool("small", cpus=draw(one_decimal(0.05, 1.0))),
        reserve=draw(one_decimal(0.0, 1.0)),
        margin=draw(one_decimal(0.0, 1.0)),
        grace_kill=0.0,
        grace_spawn=draw(st.sampled_from([0.0, 60.0])),
        freeze=draw(st.sampled_from([0.0, 30.0])),
    )
    n = draw(st.integers(1, 12))
    ages = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    pilots = []
    for i, age in enumerate(ages):
        pc = cfg.pools[draw(st.integers(0, 1))]
        pilots.append(view(f"x{i:02d}", pool_name=pc.name, age=float(age), cpus=pc.cpus))
    host = snapshot(ncpus=ncpus, owner_cpu=draw(one_decimal(0.0, float(ncpus))))
    return cfg, host, pilots


@settings(max_examples=200, deadline=None)
@given(crowded_hosts())
def test_owner_victims_are_the_fewest_youngest_pilots_that_make_room(
    drawn: tuple[Config, HostSnapshot, list[PilotView]],
) -> None:
    cfg, host, pilots = drawn
    decision, state, _ = decide_once(cfg, host, pilots)
    spare = host.ncpus - cfg.owner.reserve - host.owner_cpu
    need = sum(p.cpus for p in pilots)
    victims = [a for a in (*decision.freeze, *decision.stop) if a.reason in GIVE_WAY]
    assert len({a.pilot_id for a in victims}) == len(victims)
    if need <= spare + cfg.owner.margin + 1e-9:
        assert not victims and not decision.stop and not decision.freeze
        return
    assert decision.start == ()
    youngest = sorted(pilots, key=lambda p: (-p.started, p.id))
    k = len(victims)
    assert [a.pilot_id for a in victims] == [p.id for p in youngest[:k]]
    assert all(a.detail for a in victims)
    left = need - sum(p.cpus for p in youngest[:k])
    assert left <= spare + 1e-9 or k == len(pilots)  # enough room made ...
    assert k >= 1 and need - sum(p.cpus for p in youngest[: k - 1]) > spare + 1e-9  # ... no more
    if cfg.owner.freeze > 0:
        assert not decision.stop and set(state.frozen_since) == {a.pilot_id for a in victims}
    else:
        assert not decision.freeze and state.gave_way_at == host.monotonic


@settings(max_examples=200, deadline=None)
@given(crowded_hosts(), st.data())
def test_nothing_starts_while_a_pilot_stays_frozen(
    drawn: tuple[Config, HostSnapshot, list[PilotView]], data: st.DataObject
) -> None:
    cfg, host, pilots = drawn
    frozen_ids = data.draw(st.sets(st.sampled_from([p.id for p in pilots]), min_size=1))
    since = {
        pid: host.monotonic - data.draw(st.floats(0.0, 2 * max(cfg.owner.freeze, 1.0)))
        for pid in frozen_ids
    }
    views = [replace(p, phase=PilotPhase.FROZEN) if p.id in frozen_ids else p for p in pilots]
    state = PolicyState(
        frozen_since=since, frozen_reason=dict.fromkeys(frozen_ids, Reason.OWNER_CPU)
    )
    decision, new_state, _ = decide_once(cfg, host, views, state)
    left_frozen = frozen_ids - {a.pilot_id for a in (*decision.thaw, *decision.stop)}
    if left_frozen:
        assert decision.start == ()
        assert set(new_state.frozen_since) >= left_frozen
    for a in decision.thaw:  # thawed pilots fit the spare CPUs with the running ones
        assert a.reason is Reason.OWNER_GONE and a.detail
    stopped_frozen = [a for a in decision.stop if a.pilot_id in frozen_ids]
    for a in stopped_frozen:
        assert host.monotonic - since[a.pilot_id] >= cfg.owner.freeze
        assert a.reason is Reason.OWNER_CPU and "frozen" in a.detail
