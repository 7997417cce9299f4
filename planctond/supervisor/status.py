"""What the supervisor tells the outside (D-Bus Status, STATUS=, planctonctl): built from its
memory, never by asking Docker."""

from __future__ import annotations

import os

from planctond import __version__
from planctond.policy.decide import spare_cpus
from planctond.policy.model import PilotPhase
from planctond.supervisor.api import PilotCounts, PilotInfo, PoolStatus, StatusReport
from planctond.supervisor.context import Context
from planctond.supervisor.ports import HostProbe


def pool_statuses(ctx: Context) -> tuple[PoolStatus, ...]:
    now, wall = ctx.clock.monotonic(), ctx.clock.wall()
    out = []
    live = ctx.registry.live()
    for pool in ctx.config.pools:
        members = [p for p in live if p.pool == pool.name]
        verdict = ctx.verdicts.get(pool.name)
        backoff = ctx.policy.backoff.get(pool.name)
        until = None
        if backoff is not None and backoff.active(now):
            until = wall + (backoff.until - now)
        out.append(
            PoolStatus(
                name=pool.name,
                running=sum(
                    1 for p in members if p.phase in (PilotPhase.RUNNING, PilotPhase.STOPPING)
                ),
                frozen=sum(1 for p in members if p.phase is PilotPhase.FROZEN),
                allowed=verdict.allowed if verdict else 0,
                backoff_until=until,
                note=verdict.note if verdict else "",
            )
        )
    return tuple(out)


def status_report(ctx: Context, started: float, instance: str, engine_calls: int) -> StatusReport:
    host = ctx.host
    return StatusReport(
        state=ctx.run_state,
        docker_ok=ctx.docker_ok,
        docker_error="" if ctx.docker_ok else ctx.docker_error,
        pools=pool_statuses(ctx),
        pilots=len(ctx.registry.live()),
        capacity_cpus=spare_cpus(ctx.config, host) if host else 0.0,
        owner_cpu=host.owner_cpu if host else 0.0,
        host_cpu=host.host_cpu if host else 0.0,
        ncpus=host.ncpus if host else (os.cpu_count() or 1),
        started=started,
        version=__version__,
        config_path=ctx.config_path or "(built-in defaults)",
        last_error=ctx.last_error,
        last_tick=ctx.last_tick,
        extra={"instance": instance, "docker_calls": str(engine_calls)},
        pilots_cpu=host.pilots_cpu if host else 0.0,
        pilots_memory=host.pilots_memory if host else None,
    )


def pilot_infos(ctx: Context, host: HostProbe) -> list[PilotInfo]:
    """Each pilot with its mean CPU use over its life (one cgroup read per pilot: on request
    only, never on a tick or an event)."""
    out = []
    now = ctx.clock.wall()
    for p in ctx.registry.live():
        cpu = 0.0
        used = host.pilot_cpu_seconds(p.id)
        if used is not None and now > p.created:
            cpu = used / max(1.0, now - p.created)
        out.append(PilotInfo(p.id, p.name, p.pool, p.phase.value, p.created, cpu, p.image))
    return sorted(out, key=lambda i: i.started)


def pilot_counts(ctx: Context) -> PilotCounts:
    phases = [p.phase for p in ctx.registry.live()]
    return PilotCounts(
        running=phases.count(PilotPhase.RUNNING),
        frozen=phases.count(PilotPhase.FROZEN),
        stopping=phases.count(PilotPhase.STOPPING),
    )
