"""Plain data the policy decides on and the actions it returns.

No I/O types here: the supervisor translates Docker containers and sensor readings into these, so
the policy can be driven by hypothesis-generated traces as easily as by a real host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from planctond.config.model import Config


class RunState(StrEnum):
    """The admin-facing state of the daemon (persisted across restarts)."""

    ACTIVE = "active"  # start pilots into spare capacity
    DRAINING = "draining"  # no new pilots; running ones finish or reach their TTL
    STOPPED = "stopped"  # pilots stopped, none started


class PilotPhase(StrEnum):
    RUNNING = "running"
    FROZEN = "frozen"  # paused by us because the owner needs the CPU
    STOPPING = "stopping"  # a stop was issued; not counted against capacity decisions twice
    CREATED = "created"  # created but never started (a failed start): to be removed


class Reason(StrEnum):
    """Why a pilot is frozen, thawed or stopped: every action carries one."""

    OWNER_CPU = "owner-cpu"
    OWNER_MEMORY = "owner-memory"
    OWNER_IO = "owner-io"  # give_way: pressure: the owner stalls on I/O
    OWNER_ACTIVE = "owner-active"  # the owner is at the keyboard (owner.active_within)
    OWNER_GONE = "owner-gone"  # thaw: the owner no longer needs the CPU
    TTL = "ttl"
    STOP_REQUESTED = "stop-requested"
    POOL_REMOVED = "pool-removed"
    OVER_MAX_PILOTS = "over-max-pilots"
    NEVER_STARTED = "never-started"
    SHUTDOWN = "shutdown"


# Every reason pilots give way to the owner for (monitoring counts these as owner yields).
OWNER_REASONS = frozenset(
    {Reason.OWNER_CPU, Reason.OWNER_MEMORY, Reason.OWNER_IO, Reason.OWNER_ACTIVE}
)


@dataclass(frozen=True)
class OwnerPressure:
    """How much the owner stalled: percent of the last 10 s (PSI avg10) per resource, None where
    this host cannot tell it from the pilots' own stalls.

    `per_cgroup`: read from the owner's own cgroups (CPU from their "full" line, memory and io
    from "some"); else host-wide from /proc/pressure (memory and io "full", CPU never: idle
    pilots wait for the CPU all the time, which is not the owner's harm)."""

    cpu: float | None
    memory: float | None
    io: float | None
    per_cgroup: bool
    source: str  # what was read, for the logs: "cgroups user.slice, system.slice", ...


@dataclass(frozen=True)
class HostSnapshot:
    """One reading of the host. CPU figures are in CPUs (1.0 = one core busy) over the last interval."""

    monotonic: float
    wall: float
    ncpus: int
    host_cpu: float  # all CPUs busy, pilots included
    pilots_cpu: float  # read from the pilots' parent cgroup
    mem_total: int
    mem_available: int
    swap_total: int = 0
    variables: Mapping[str, float | bool] = field(default_factory=dict)  # for expressions
    # The owner's use read from `owner.cgroup` (its pilots already taken out); None = the host's.
    scoped_owner_cpu: float | None = None
    # What the readings above cover: from `since` (monotonic) to `monotonic`. The pilots' parent
    # cgroup counter (CPU-seconds, None while unreadable) at `since`, and their memory now: what
    # monitoring needs to measure harvest and how much CPU pilots got while the owner wanted it.
    since: float | None = None
    pilots_cpu_seconds_since: float | None = None
    pilots_memory: int | None = None
    # The owner's stalls (None: not read, or no PSI at all), and whether the pilots' parent is
    # idle to the scheduler (cpu.idle=1): then the owner's CPU use costs the owner nothing.
    owner_pressure: OwnerPressure | None = None
    pilots_idle: bool = False
    # False: the CPU figures cover no interval yet (the sensor began a moment ago; a daemon
    # starting, Docker reconnecting): they read zero, which says nothing of the owner.
    cpu_measured: bool = True

    @property
    def owner_cpu(self) -> float:
        """What the owner used: everything but pilots, or what ran in `owner.cgroup` but pilots.
        The pilots' own load never counts."""
        if self.scoped_owner_cpu is not None:
            return max(0.0, self.scoped_owner_cpu)
        return max(0.0, self.host_cpu - self.pilots_cpu)


@dataclass(frozen=True)
class PilotView:
    id: str
    name: str
    pool: str
    started: float  # wall-clock seconds (epoch) the container started
    cpus: float  # the CPU share it was given
    phase: PilotPhase = PilotPhase.RUNNING
    outdated: bool = False  # made from an older pool spec


@dataclass(frozen=True)
class StartPilots:
    pool: str
    count: int
    why: str  # human words: "fits 3 more (owner 0.4 CPU, 1.1 spare)"


@dataclass(frozen=True)
class PilotAction:
    pilot_id: str
    reason: Reason
    detail: str = ""


@dataclass(frozen=True)
class Decision:
    start: tuple[StartPilots, ...] = ()
    freeze: tuple[PilotAction, ...] = ()
    thaw: tuple[PilotAction, ...] = ()
    stop: tuple[PilotAction, ...] = ()  # graceful: SIGTERM, stop_grace, SIGKILL
    remove: tuple[PilotAction, ...] = ()  # never-started leftovers
    notes: tuple[str, ...] = ()  # why nothing was started, once-per-change messages

    @property
    def empty(self) -> bool:
        return not (self.start or self.freeze or self.thaw or self.stop or self.remove)


@dataclass(frozen=True)
class PolicyInput:
    """Everything one decision reads besides its own memory, so a decision can be replayed."""

    now: float  # monotonic seconds
    config: Config
    host: HostSnapshot
    pilots: Sequence[PilotView]
    run_state: RunState
    starting: Mapping[str, int] | None = None  # pool -> starts in flight (not yet in `pilots`)


@dataclass(frozen=True)
class PoolVerdict:
    """Per-pool figures of one decision, for Status() and the logs."""

    allowed: int
    live: int
    note: str
