"""How every step of a decision counts, so the limits, the give-way ladder and the starts agree.

Accounting is in *entitled* CPUs: a pilot is counted at the share it was given, whatever it uses
this instant, and the owner is everything on the host but the pilots (read from their cgroups).
A pilot burning its own CPU therefore never looks like an owner.
"""

from __future__ import annotations

from collections.abc import Sequence

from planctond.config.model import Config, PoolConfig
from planctond.policy.model import HostSnapshot, PilotAction, PilotView

# Admins write CPU figures like 0.1 and 0.25 whose float sums miss the exact line by a hair: a
# comparison that lands on the line must count as on it, not flip with the summation order.
EPS = 1e-9


def spare_cpus(config: Config, host: HostSnapshot) -> float:
    """CPUs pilots may be entitled to: all but the owner's use and the owner's reserve."""
    return host.ncpus - config.owner.reserve - host.owner_cpu


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
