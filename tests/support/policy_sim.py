"""A small deterministic host that drives the pure policy without Docker, threads or real time.

Why a simulator rather than hand-built snapshots only: the properties the policy promises (never
more pilots than allowed, no flapping, the give-way ladder's timing) are about *sequences* of
decisions whose inputs depend on earlier outputs. The simulator closes that loop the way the
supervisor does: it turns its pilot table into `PilotView`s, calls `decide`, applies the
`Decision` (starts appear, stops exit after a delay within `stop_grace`, freeze/thaw flip a flag, a
freeze optionally only after `pause_delay` as Docker's pause does), feeds every exit into the
policy's memory (`policy.memory.after_pilot_end`, as the supervisor does), decides again at once
after an exit (the supervisor's event-driven replacement) and advances a fake monotonic and wall
clock by `tick`.

The owner is a trace: a function of seconds since the start to (owner CPUs, owner memory bytes).
The owner always gets the CPU first (the pilots sit in an idle cgroup): pilots only get what the
owner leaves of `ncpus`, and the owner's measured use is exactly its demand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from planctond.config.model import Config, GiveWayMode, OwnerConfig, PoolConfig
from planctond.policy.decide import PolicyInput, PoolVerdict, decide
from planctond.policy.memory import after_pilot_end
from planctond.policy.model import (
    Decision,
    HostSnapshot,
    PilotAction,
    PilotPhase,
    PilotView,
    RunState,
)
from planctond.policy.state import PolicyState

GiB = 1024**3
OwnerTrace = Callable[[float], tuple[float, int]]
# pool name -> (lifetime in seconds, exit code) of a pilot that is left alone; None = runs forever
LifetimeFn = Callable[[str], tuple[float, int] | None]

T0_MONOTONIC = 10_000.0
T0_WALL = 1_800_000_000.0


def steady(cpu: float, mem: int = 0) -> OwnerTrace:
    """An owner that always uses the same."""
    return lambda _t: (cpu, mem)


def segments(parts: Sequence[tuple[float, float, int]]) -> OwnerTrace:
    """Piecewise-constant owner: (duration, cpu, mem) one after the other; the last one lasts."""

    def trace(t: float) -> tuple[float, int]:
        end = 0.0
        for duration, cpu, mem in parts:
            end += duration
            if t < end:
                return cpu, mem
        return (parts[-1][1], parts[-1][2]) if parts else (0.0, 0)

    return trace


def make_config(
    *pools: PoolConfig,
    tick: float = 10.0,
    reserve: float = 0.5,
    margin: float = 0.25,
    reserve_memory: int = 512 * 1024 * 1024,
    grace_kill: float = 120.0,
    grace_spawn: float = 60.0,
    freeze: float = 30.0,
) -> Config:
    """The `usage` rule, written out: the simulated owner is a CPU figure a test sets
    (tests.unit.pressure_sim adds the stalls and the other rule)."""
    owner = OwnerConfig(
        reserve=reserve,
        margin=margin,
        reserve_memory=reserve_memory,
        grace_kill=grace_kill,
        grace_spawn=grace_spawn,
        freeze=freeze,
        give_way=GiveWayMode.USAGE,
    )
    return Config(pools=pools or (PoolConfig(name="default"),), tick=tick, owner=owner)


def pool(name: str = "default", **kw: object) -> PoolConfig:
    """A pool with test-friendly defaults: small memory, a constant max_pilots, long ttl."""
    base: dict[str, object] = {"memory": 256 * 1024 * 1024, "max_pilots": "100", "ttl": 1e7}
    base.update(kw)
    return PoolConfig(name=name, **base)  # type: ignore[arg-type]


def snapshot(
    *,
    now: float = T0_MONOTONIC,
    ncpus: int = 4,
    owner_cpu: float = 0.0,
    pilots_cpu: float = 0.0,
    mem_total: int = 16 * GiB,
    mem_available: int | None = None,
    swap_total: int = 0,
    variables: Mapping[str, float | bool] | None = None,
) -> HostSnapshot:
    return HostSnapshot(
        monotonic=now,
        wall=now - T0_MONOTONIC + T0_WALL,
        ncpus=ncpus,
        host_cpu=owner_cpu + pilots_cpu,
        pilots_cpu=pilots_cpu,
        mem_total=mem_total,
        mem_available=mem_total if mem_available is None else mem_available,
        swap_total=swap_total,
        variables=dict(variables or {}),
    )


def view(
    pid: str,
    *,
    pool_name: str = "default",
    age: float = 0.0,
    now: float = T0_MONOTONIC,
    cpus: float = 1.0,
    phase: PilotPhase = PilotPhase.RUNNING,
) -> PilotView:
    """A pilot that started `age` seconds before monotonic `now` (wall clock derived from it)."""
    return PilotView(
        id=pid,
        name=f"plancton-{pool_name}-{pid}",
        pool=pool_name,
        started=now - T0_MONOTONIC + T0_WALL - age,
        cpus=cpus,
        phase=phase,
    )


def decide_once(
    config: Config,
    host: HostSnapshot,
    pilots: Sequence[PilotView] = (),
    state: PolicyState | None = None,
    *,
    run_state: RunState = RunState.ACTIVE,
    starting: Mapping[str, int] | None = None,
) -> tuple[Decision, PolicyState, dict[str, PoolVerdict]]:
    """One decision at the snapshot's monotonic time."""
    inp = PolicyInput(
        now=host.monotonic,
        config=config,
        host=host,
        pilots=tuple(pilots),
        run_state=run_state,
        starting=starting,
    )
    return decide(inp, state or PolicyState())


@dataclass
class SimPilot:
    id: str
    pool: str
    cpus: float
    memory: int
    started_wall: float
    phase: PilotPhase = PilotPhase.RUNNING
    exit_at: float | None = None  # monotonic; a natural end (only while running)
    exit_code: int = 0
    stop_at: float | None = None  # monotonic; the end after our stop
    stopped_by_us: bool = False

    def view(self) -> PilotView:
        return PilotView(
            id=self.id,
            name=f"plancton-{self.pool}-{self.id}",
            pool=self.pool,
            started=self.started_wall,
            cpus=self.cpus,
            phase=self.phase,
        )


@dataclass(frozen=True)
class Step:
    """One call of `decide` and what the host looked like around it."""

    now: float  # monotonic
    host: HostSnapshot
    before: tuple[PilotView, ...]
    starting: Mapping[str, int]
    decision: Decision
    after: tuple[PilotView, ...]  # the pilot table once the decision was applied
    in_flight_after: Mapping[str, int]
    verdicts: Mapping[str, PoolVerdict]
    state: PolicyState  # the policy state after the decision
    event_driven: bool  # decided because a pilot ended, not because of the tick


@dataclass(frozen=True)
class ExitRecord:
    now: float
    pilot_id: str
    pool: str
    exit_code: int
    lifetime: float
    stopped_by_us: bool


@dataclass
class HostSim:
    config: Config
    ncpus: int = 4
    mem_total: int = 16 * GiB
    owner: OwnerTrace = field(default_factory=lambda: steady(0.0))
    pilot_load: float = 1.0  # fraction of its cpus a running pilot uses
    pilot_mem: float = 1.0  # fraction of its pool's memory a pilot holds
    lifetime: LifetimeFn = field(default=lambda _pool: None)
    stop_delay: float = 0.5  # a stopped pilot exits after this fraction of its stop_grace
    start_delay: float = 0.0  # seconds a start stays "in flight" before the pilot runs
    pause_delay: float = 0.0  # seconds before a decided freeze takes hold (Docker's pause)
    variables: Mapping[str, float | bool] = field(default_factory=dict)
    run_state: RunState = RunState.ACTIVE
    now: float = T0_MONOTONIC
    state: PolicyState = field(default_factory=PolicyState)
    pilots: dict[str, SimPilot] = field(default_factory=dict)
    in_flight: list[tuple[float, str]] = field(default_factory=list)  # (ready at, pool)
    pausing: list[tuple[float, str]] = field(default_factory=list)  # (takes hold at, pilot id)
    steps: list[Step] = field(default_factory=list)
    exits: list[ExitRecord] = field(default_factory=list)
    _serial: int = 0

    # --- clocks and readings ---------------------------------------------------------------------
    @property
    def t(self) -> float:
        """Seconds since the simulation began."""
        return self.now - T0_MONOTONIC

    @property
    def wall(self) -> float:
        return self.now - T0_MONOTONIC + T0_WALL

    def owner_now(self) -> tuple[float, int]:
        cpu, mem = self.owner(self.t)
        return min(max(cpu, 0.0), float(self.ncpus)), max(mem, 0)

    def snapshot(self) -> HostSnapshot:
        owner_cpu, owner_mem = self.owner_now()
        busy = PilotPhase.RUNNING, PilotPhase.STOPPING
        wanted = sum(p.cpus * self.pilot_load for p in self.pilots.values() if p.phase in busy)
        pilots_cpu = min(wanted, max(0.0, self.ncpus - owner_cpu))
        pilots_mem = sum(p.memory for p in self.pilots.values())
        return HostSnapshot(
            monotonic=self.now,
            wall=self.wall,
            ncpus=self.ncpus,
            host_cpu=owner_cpu + pilots_cpu,
            pilots_cpu=pilots_cpu,
            mem_total=self.mem_total,
            mem_available=max(0, self.mem_total - owner_mem - pilots_mem),
            variables=dict(self.variables),
        )

    def views(self) -> list[PilotView]:
        return [p.view() for p in self.pilots.values()]

    def starting(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, name in self.in_flight:
            out[name] = out.get(name, 0) + 1
        return out

    # --- building a host by hand ----------------------------------------------------------------
    def add_pilot(
        self,
        pool_name: str = "default",
        *,
        age: float = 0.0,
        phase: PilotPhase = PilotPhase.RUNNING,
    ) -> str:
        cfg = self.config.pool(pool_name)
        cpus = cfg.cpus if cfg is not None else 1.0
        memory = cfg.memory if cfg is not None else 0
        return self._create(pool_name, cpus, memory, self.wall - age, phase).id

    def _create(
        self, pool_name: str, cpus: float, memory: int, started_wall: float, phase: PilotPhase
    ) -> SimPilot:
        self._serial += 1
        p = SimPilot(
            id=f"p{self._serial:05d}",
            pool=pool_name,
            cpus=cpus,
            memory=int(memory * self.pilot_mem),
            started_wall=started_wall,
            phase=phase,
        )
        life = self.lifetime(pool_name)
        if life is not None:
            p.exit_at, p.exit_code = self.now + life[0], life[1]
        self.pilots[p.id] = p
        return p

    # --- the loop --------------------------------------------------------------------------------
    def decide(self, *, event_driven: bool = False) -> Step:
        host = self.snapshot()
        before = tuple(self.views())
        starting = self.starting()
        inp = PolicyInput(
            now=self.now,
            config=self.config,
            host=host,
            pilots=before,
            run_state=self.run_state,
            starting=starting,
        )
        decision, self.state, verdicts = decide(inp, self.state)
        self.apply(decision)
        step = Step(
            now=self.now,
            host=host,
            before=before,
            starting=starting,
            decision=decision,
            after=tuple(self.views()),
            in_flight_after=self.starting(),
            verdicts=verdicts,
            state=self.state,
            event_driven=event_driven,
        )
        self.steps.append(step)
        return step

    def apply(self, decision: Decision) -> None:
        for a in decision.remove:
            self.pilots.pop(a.pilot_id, None)
        for a in decision.stop:
            self._stop(a)
        for a in decision.freeze:
            if self.pause_delay > 0:
                self.pausing.append((self.now + self.pause_delay, a.pilot_id))
            else:
                self._pause(a.pilot_id)
        for a in decision.thaw:
            p = self.pilots.get(a.pilot_id)
            if p is not None and p.phase is PilotPhase.FROZEN:
                p.phase = PilotPhase.RUNNING
        for s in decision.start:
            cfg = self.config.pool(s.pool)
            assert cfg is not None, f"start for unknown pool {s.pool}"
            for _ in range(s.count):
                if self.start_delay > 0:
                    self.in_flight.append((self.now + self.start_delay, s.pool))
                else:
                    self._create(s.pool, cfg.cpus, cfg.memory, self.wall, PilotPhase.RUNNING)

    def _pause(self, pilot_id: str) -> None:
        """Like `docker pause`: a pilot that is running gets frozen, whatever was decided since."""
        p = self.pilots.get(pilot_id)
        if p is not None and p.phase is PilotPhase.RUNNING:
            p.phase = PilotPhase.FROZEN

    def _stop(self, a: PilotAction) -> None:
        p = self.pilots.get(a.pilot_id)
        if p is None or p.phase is PilotPhase.STOPPING:
            return
        cfg = self.config.pool(p.pool)
        grace = cfg.stop_grace if cfg is not None else 30.0
        p.phase = PilotPhase.STOPPING  # a frozen pilot is thawed to see its SIGTERM
        p.stopped_by_us = True
        p.stop_at = self.now + self.stop_delay * grace
        p.exit_code = 143

    def _next_event(self) -> float | None:
        times = [ready for ready, _ in self.in_flight] + [at for at, _ in self.pausing]
        for p in self.pilots.values():
            if p.phase is PilotPhase.STOPPING and p.stop_at is not None:
                times.append(p.stop_at)
            elif p.phase is PilotPhase.RUNNING and p.exit_at is not None:
                times.append(p.exit_at)
        return min(times) if times else None

    def _due(self) -> bool:
        """Process what happens at `now`; True if a pilot ended (the supervisor decides again)."""
        for _, pid in [x for x in self.pausing if x[0] <= self.now]:
            self._pause(pid)
        self.pausing = [x for x in self.pausing if x[0] > self.now]
        ready = [name for at, name in self.in_flight if at <= self.now]
        self.in_flight = [(at, name) for at, name in self.in_flight if at > self.now]
        for name in ready:
            cfg = self.config.pool(name)
            if cfg is not None:
                self._create(name, cfg.cpus, cfg.memory, self.wall, PilotPhase.RUNNING)
        ended = [
            p
            for p in self.pilots.values()
            if (p.phase is PilotPhase.STOPPING and p.stop_at is not None and p.stop_at <= self.now)
            or (p.phase is PilotPhase.RUNNING and p.exit_at is not None and p.exit_at <= self.now)
        ]
        for p in ended:
            del self.pilots[p.id]
            lifetime = self.wall - p.started_wall
            self.exits.append(
                ExitRecord(self.now, p.id, p.pool, p.exit_code, lifetime, p.stopped_by_us)
            )
            cfg = self.config.pool(p.pool)
            if cfg is not None:
                self.state, _ = after_pilot_end(
                    self.state,
                    cfg,
                    self.now,
                    exit_code=p.exit_code,
                    lifetime=lifetime,
                    stopped_by_us=p.stopped_by_us,
                )
        return bool(ended)

    def advance(self, seconds: float) -> None:
        """Move the clocks on, handling exits and finished starts in time order."""
        target = self.now + seconds
        while True:
            at = self._next_event()
            if at is None or at > target:
                break
            self.now = max(self.now, at)
            if self._due():
                self.decide(event_driven=True)
        self.now = target

    def tick(self) -> Step:
        self.advance(self.config.tick)
        return self.decide()

    def run(self, seconds: float) -> list[Step]:
        """Tick for `seconds` of simulated time; the steps taken (event-driven ones included)."""
        first = len(self.steps)
        end = self.now + seconds
        if not self.steps:
            self.decide()  # start-up: the supervisor decides before its first tick
        while self.now + self.config.tick <= end + 1e-9:
            self.tick()
        return self.steps[first:]

    # --- questions tests ask ---------------------------------------------------------------------
    def count(self, pool_name: str | None = None, *phases: PilotPhase) -> int:
        wanted = phases or tuple(PilotPhase)
        return sum(
            1
            for p in self.pilots.values()
            if (pool_name is None or p.pool == pool_name) and p.phase in wanted
        )

    def with_config(self, config: Config) -> HostSim:
        """A reload: the same host and policy memory, a new config."""
        self.config = config
        return self


def actions(steps: Sequence[Step], kind: str) -> list[tuple[float, PilotAction]]:
    """Every stop/freeze/thaw/remove of `steps` with its time."""
    out: list[tuple[float, PilotAction]] = []
    for s in steps:
        for a in getattr(s.decision, kind):
            out.append((s.now, a))
    return out


def started(steps: Sequence[Step]) -> int:
    return sum(x.count for s in steps for x in s.decision.start)
