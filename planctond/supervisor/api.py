"""What the control layers (D-Bus, systemd notify, planctonctl via D-Bus, monitoring) may ask of
the supervisor. The supervisor implements it; transports depend only on this contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from planctond.policy.model import RunState
from planctond.supervisor.events import EventBus


class ControlError(Exception):
    """A request the supervisor refuses, with a message for the caller (bad argument, bad config)."""


@dataclass(frozen=True)
class PilotInfo:
    id: str
    name: str
    pool: str
    phase: str  # running | frozen | stopping | created
    started: float  # epoch seconds
    cpu: float  # CPUs used over the last tick (from its cgroup), 0.0 if unknown
    image: str


@dataclass(frozen=True)
class PilotCounts:
    """Pilots by phase, from the supervisor's memory alone (no Docker or cgroup read): cheap
    enough to refresh D-Bus properties on every event."""

    running: int = 0
    frozen: int = 0
    stopping: int = 0


@dataclass(frozen=True)
class PoolStatus:
    name: str
    running: int
    frozen: int
    allowed: int  # max_pilots as evaluated at the last tick
    backoff_until: float | None  # epoch seconds, when a failing pool may start again
    note: str  # why it is not starting pilots, "" when it is


@dataclass(frozen=True)
class StatusReport:
    state: RunState
    docker_ok: bool
    docker_error: str
    pools: tuple[PoolStatus, ...]
    pilots: int
    capacity_cpus: float  # spare CPUs left for pilots after owner and reserve
    owner_cpu: float
    host_cpu: float
    ncpus: int
    started: float  # epoch seconds the daemon started
    version: str
    config_path: str
    last_error: str
    last_tick: float  # epoch seconds of the last completed tick
    extra: dict[str, str] = field(default_factory=dict)
    pilots_cpu: float = 0.0  # CPUs the pilots used over the last reading, from their cgroup
    pilots_memory: int | None = None  # bytes the pilots hold (working set); None = unreadable

    def summary(self) -> str:
        """One line a person reads in `systemctl status` (STATUS=)."""
        if not self.docker_ok:
            return f"waiting for Docker: {self.docker_error}"
        if self.state is RunState.DRAINING:
            return f"draining: {self.pilots} pilots left"
        if self.state is RunState.STOPPED:
            return f"stopped: {self.pilots} pilots"
        allowed = sum(p.allowed for p in self.pools)
        return f"active: {self.pilots}/{allowed} pilots, owner CPU {self.owner_cpu * 100 / max(1, self.ncpus):.0f} %"


class Controller(Protocol):
    @property
    def events(self) -> EventBus:
        """Everything that happens, for signals, the journal and monitoring."""
        ...

    async def start(self) -> None:
        """Leave drain/stopped and start pilots now (Plancton's force-start)."""

    async def drain(self) -> None: ...

    async def resume(self) -> None: ...

    async def stop(self) -> None:
        """Stop all pilots and start none until Start/Resume."""

    async def reload(self) -> None:
        """Re-read the config; raises ControlError (last good config kept) when it is invalid."""

    def status(self) -> StatusReport: ...

    def pilots(self) -> list[PilotInfo]: ...

    def counts(self) -> PilotCounts: ...
