"""The policy simulator (tests.support.policy_sim) with the owner's stalls and keyboard.

`PressureSim` is `HostSim` whose readings also carry `OwnerPressure` and logind's `owner_idle`.
The owner's stalls are a function of the time and of how many pilots are running, so a test can
model pilots that cause the owner's stalls (the stalls end when they are frozen) as easily as an
owner who stalls on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from planctond.config.model import Config, GiveWayMode, PoolConfig
from planctond.policy.model import HostSnapshot, OwnerPressure, PilotPhase
from tests.support.policy_sim import HostSim, make_config

# (seconds since the start, running pilots) -> (cpu, memory, io) percent, None = not measured
PressureTrace = Callable[[float, int], tuple[float | None, float | None, float | None]]
IdleTrace = Callable[[float], float | None]  # seconds since the owner's last input, None = unknown


def calm(_t: float, _running: int) -> tuple[float | None, float | None, float | None]:
    return 0.0, 0.0, 0.0


def pressure_config(
    *pools: PoolConfig,
    give_way: GiveWayMode = GiveWayMode.PRESSURE,
    cpu_pressure: float | None = 10.0,
    memory_pressure: float | None = 10.0,
    io_pressure: float | None = 25.0,
    active_within: float = 0.0,
    **owner: float,
) -> Config:
    """`make_config` with the give-way rule and its lines."""
    cfg = make_config(*pools, **owner)
    return replace(
        cfg,
        owner=replace(
            cfg.owner,
            give_way=give_way,
            cpu_pressure=cpu_pressure,
            memory_pressure=memory_pressure,
            io_pressure=io_pressure,
            active_within=active_within,
        ),
    )


@dataclass
class PressureSim(HostSim):
    pressure: PressureTrace = calm
    psi: bool = True  # False: the host has no PSI at all (owner_pressure None)
    per_cgroup: bool = True
    pilots_idle: bool = True
    owner_idle: IdleTrace | None = None

    def running(self) -> int:
        return sum(1 for p in self.pilots.values() if p.phase is PilotPhase.RUNNING)

    def snapshot(self) -> HostSnapshot:
        host = super().snapshot()
        variables = dict(host.variables)
        if self.owner_idle is not None:
            idle = self.owner_idle(self.t)
            if idle is not None:
                variables["owner_idle"] = idle
        reading = None
        if self.psi:
            cpu, memory, io = self.pressure(self.t, self.running())
            reading = OwnerPressure(cpu, memory, io, self.per_cgroup, "sim")
        return replace(
            host, owner_pressure=reading, pilots_idle=self.pilots_idle, variables=variables
        )
