"""How every step of a decision counts, so the limits, the give-way ladder and the starts agree.

Accounting is in *entitled* CPUs: a pilot is counted at the share it was given, whatever it uses
this instant, and the owner is everything on the host but the pilots (read from their cgroups).
A pilot burning its own CPU therefore never looks like an owner.
"""

from __future__ import annotations

from collections.abc import Sequence

from planctond.config.model import Config, GiveWayMode, PoolConfig
from planctond.policy.model import HostSnapshot, PilotAction, PilotView

# Admins write CPU figures like 0.1 and 0.25 whose float sums miss the exact line by a hair: a
# comparison that lands on the line must count as on it, not flip with the summation order.
EPS = 1e-9


def owner_cpu_counts(config: Config, host: HostSnapshot) -> bool:
    """Whether the owner's CPU use limits the pilots' CPUs. Under `give_way: usage` always.
    Under `give_way: pressure` only while the owner's CPU is watched at all (`cpu_pressure` set)
    and the pilots are not idle to the scheduler: under `cpu.idle=1` a waking owner task takes
    its CPU back at once, so a pilot on a CPU the owner uses now costs the owner nothing, and
    leaving it out would only give up the harvest of every instant the owner does not use it."""
    if config.owner.give_way is GiveWayMode.USAGE:
        return True
    return config.owner.cpu_pressure is not None and not host.pilots_idle


def spare_cpus(config: Config, host: HostSnapshot) -> float:
    """CPUs pilots may be entitled to: all but the owner's reserve and, where it counts
    (`owner_cpu_counts`), the owner's use."""
    owner = host.owner_cpu if owner_cpu_counts(config, host) else 0.0
    return host.ncpus - config.owner.reserve - owner


def pool_variables(
    host: HostSnapshot, pool: PoolConfig, live_total: int, live_pool: int
) -> dict[str, float | bool]:
    """The host variables plus those that depend on the pool being judged."""
    out: dict[str, float | bool] = dict(host.variables)
    out.setdefault("ncpus", host.ncpus)
    out.setdefault("ram_bytes", host.mem_total)
    out.setdefault("swap_bytes", host.swap_total)
    out.setdefault("mem_available", host.mem_available)
    out.setdefault("owner_cpu", host.owner_cpu)
    out["pilots"] = live_total
    out["pool_pilots"] = live_pool
    out["max_dock_mem"] = pool.memory
    out["max_dock_swap"] = pool.swap
    return out


def youngest_first(pilots: Sequence[PilotView]) -> list[PilotView]:
    """The order in which pilots are given up: the youngest has done the least work. Ties go by
    id so that a replayed decision picks the same pilots."""
    return sorted(pilots, key=lambda p: (-p.started, p.id))


def oldest_first(pilots: Sequence[PilotView]) -> list[PilotView]:
    """The order in which frozen pilots get the CPU back: the oldest has the most work at stake."""
    return sorted(pilots, key=lambda p: (p.started, p.id))


def without(pilots: Sequence[PilotView], acted: Sequence[PilotAction]) -> list[PilotView]:
    """The pilots no earlier step has dealt with: each pilot gets at most one action per decision."""
    done = {a.pilot_id for a in acted}
    return [p for p in pilots if p.id not in done]
