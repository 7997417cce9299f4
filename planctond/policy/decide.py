"""The owner-first policy: one pure function from (host, pilots, config, memory) to actions.

Accounting is in *entitled* CPUs: a pilot is counted at the share it was given, whatever it uses
this instant, and the owner is everything on the host but the pilots (read from their cgroups).
Two consequences that fix Plancton 0.6's bugs by construction:

* a pilot burning its own CPU never looks like an owner, so `max_pilots: 1` cannot start-kill-start;
* spawning needs ``spare >= need + cpus`` while giving way needs ``need > spare + margin``: after
  any start the host is at least `margin` away from the give-way line, so a steady load never flaps.

Giving way is a ladder: the owner must need the CPU (or memory) for `grace_kill`; then the youngest
pilots are frozen (they lose no work); if the owner still needs it `freeze` seconds later they are
stopped gracefully, and no pilot starts for `grace_spawn`. A frozen pilot is thawed as soon as it
fits again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from planctond.config.expr import ExprError, compile_expr
from planctond.config.model import Config, PoolConfig
from planctond.policy.model import (
    Decision,
    HostSnapshot,
    PilotAction,
    PilotPhase,
    PilotView,
    Reason,
    RunState,
    StartPilots,
)
from planctond.policy.state import PolicyState

_EPS = 1e-9


@dataclass(frozen=True)
class PolicyInput:
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


def evaluate_max_pilots(pool: PoolConfig, variables: Mapping[str, float | bool]) -> int:
    value = compile_expr(pool.max_pilots).evaluate(variables)
    number = float(value)
    if math.isnan(number):
        raise ExprError(f"max_pilots {pool.max_pilots!r} evaluated to NaN")
    return max(0, math.floor(min(number, 1e6) + _EPS))


def evaluate_run_when(pool: PoolConfig, variables: Mapping[str, float | bool]) -> bool:
    return bool(compile_expr(pool.run_when).evaluate(variables))


def _youngest_first(pilots: Sequence[PilotView]) -> list[PilotView]:
    return sorted(pilots, key=lambda p: (-p.started, p.id))


def _oldest_first(pilots: Sequence[PilotView]) -> list[PilotView]:
    return sorted(pilots, key=lambda p: (p.started, p.id))


def spare_cpus(config: Config, host: HostSnapshot) -> float:
    """CPUs pilots may be entitled to: all but the owner's use and the owner's reserve."""
    return host.ncpus - config.owner.reserve - host.owner_cpu


def decide(
    inp: PolicyInput, state: PolicyState
) -> tuple[Decision, PolicyState, dict[str, PoolVerdict]]:
    cfg, host, now = inp.config, inp.host, inp.now
    starting = dict(inp.starting or {})
    stop: list[PilotAction] = []
    remove: list[PilotAction] = []
    freeze: list[PilotAction] = []
    thaw: list[PilotAction] = []
    notes: list[str] = []
    handled: set[str] = set()

    def _stop(p: PilotView, reason: Reason, detail: str) -> None:
        stop.append(PilotAction(p.id, reason, detail))
        handled.add(p.id)

    for p in inp.pilots:
        if p.phase is PilotPhase.CREATED:
            remove.append(PilotAction(p.id, Reason.NEVER_STARTED, "created but never started"))
            handled.add(p.id)
    live = [p for p in inp.pilots if p.phase in (PilotPhase.RUNNING, PilotPhase.FROZEN)]

    # --- stop what must go whatever the owner does ---------------------------------------------
    if inp.run_state is RunState.STOPPED:
        for p in live:
            _stop(p, Reason.STOP_REQUESTED, "the daemon is stopped")
    for p in live:
        if p.id in handled:
            continue
        pool = cfg.pool(p.pool)
        if pool is None:
            _stop(p, Reason.POOL_REMOVED, f"pool {p.pool!r} is no longer configured")
        elif host.wall - p.started >= pool.ttl:
            _stop(p, Reason.TTL, f"older than its ttl of {pool.ttl:.0f}s")
    live = [p for p in live if p.id not in handled]

    # --- per-pool limits ------------------------------------------------------------------------
    verdicts: dict[str, PoolVerdict] = {}
    allowed: dict[str, int] = {}
    excess_since = dict(state.excess_since)
    for pool in cfg.pools:
        members = [p for p in live if p.pool == pool.name]
        variables = pool_variables(host, pool, len(live), len(members))
        try:
            allowed[pool.name] = evaluate_max_pilots(pool, variables)
        except (ExprError, ArithmeticError, ValueError) as exc:
            # Keep what runs, start nothing: an undefined variable must not kill pilots (nor a
            # start already in flight, which would otherwise count as an excess to stop).
            allowed[pool.name] = len(members) + starting.get(pool.name, 0)
            notes.append(
                f"pool {pool.name}: max_pilots {pool.max_pilots!r} cannot be evaluated: {exc}"
            )
        over = len(members) + starting.get(pool.name, 0) - allowed[pool.name]
        if over > 0:
            since = excess_since.setdefault(pool.name, now)
            if now - since >= cfg.owner.grace_kill:
                for p in _youngest_first(members)[:over]:
                    _stop(p, Reason.OVER_MAX_PILOTS, f"max_pilots is {allowed[pool.name]}")
                excess_since.pop(pool.name, None)
        else:
            excess_since.pop(pool.name, None)
    live = [p for p in live if p.id not in handled]

    # --- owner first: the give-way ladder -------------------------------------------------------
    spare = spare_cpus(cfg, host)
    # A pilot we decided to freeze is frozen from then on, even if the caller still shows it as
    # running while its pause is under way: a decision in that gap (an exit elsewhere) must not
    # forget it, freeze it again and restart its `freeze` clock. (The supervisor also shows it
    # as frozen at once; the policy does not rely on that.)
    frozen = [
        p
        for p in live
        if p.phase is PilotPhase.FROZEN
        or (p.phase is PilotPhase.RUNNING and p.id in state.frozen_since)
    ]
    frozen_ids = {p.id for p in frozen}
    running = [p for p in live if p.phase is PilotPhase.RUNNING and p.id not in frozen_ids]
    need = sum(p.cpus for p in running)
    mem_short = host.mem_available < cfg.owner.reserve_memory
    cpu_short = need > spare + cfg.owner.margin + _EPS

    frozen_since = {k: v for k, v in state.frozen_since.items() if any(p.id == k for p in frozen)}
    frozen_reason = {k: v for k, v in state.frozen_reason.items() if k in frozen_since}
    gave_way_at = state.gave_way_at
    overload_since = state.overload_since
    overload_reason = state.overload_reason

    # Frozen pilots: stop after `freeze`, thaw (oldest first) when they fit again.
    for p in _oldest_first(frozen):
        since = frozen_since.setdefault(p.id, now)
        reason = frozen_reason.setdefault(p.id, Reason.OWNER_CPU)
        if now - since >= cfg.owner.freeze:
            _stop(p, reason, f"owner still needs the host after {cfg.owner.freeze:.0f}s frozen")
            gave_way_at = now
        elif not mem_short and not cpu_short and need + p.cpus <= spare + _EPS:
            thaw.append(
                PilotAction(p.id, Reason.OWNER_GONE, f"fits again ({spare:.2f} CPUs spare)")
            )
            need += p.cpus
    for a in thaw:
        frozen_since.pop(a.pilot_id, None)
        frozen_reason.pop(a.pilot_id, None)
    for p in frozen:
        if p.id in handled:
            frozen_since.pop(p.id, None)
            frozen_reason.pop(p.id, None)

    if cpu_short or mem_short:
        reason = Reason.OWNER_MEMORY if mem_short else Reason.OWNER_CPU
        if overload_since is None:
            overload_since, overload_reason = now, reason
        if now - overload_since >= cfg.owner.grace_kill:
            victims: list[PilotView] = []
            if cpu_short:
                budget = need
                for p in _youngest_first(running):
                    if budget <= spare + _EPS:
                        break
                    victims.append(p)
                    budget -= p.cpus
            elif running:
                victims.append(_youngest_first(running)[0])
            detail = (
                f"owner needs memory ({host.mem_available} bytes available)"
                if mem_short
                else f"owner uses {host.owner_cpu:.2f} CPUs, {spare:.2f} spare for {need:.2f} entitled"
            )
            for p in victims:
                if cfg.owner.freeze > 0:
                    freeze.append(PilotAction(p.id, reason, detail))
                    frozen_since[p.id] = now
                    frozen_reason[p.id] = reason
                else:
                    _stop(p, reason, detail)
                    gave_way_at = now
            overload_since, overload_reason = None, None
    else:
        overload_since, overload_reason = None, None

    # --- starts -------------------------------------------------------------------------------
    new_state = replace(
        state,
        overload_since=overload_since,
        overload_reason=overload_reason,
        frozen_since=frozen_since,
        frozen_reason=frozen_reason,
        gave_way_at=gave_way_at,
        excess_since=excess_since,
    )
    # Pilots still winding down count until their container is gone: a replacement for a pilot in
    # its stop_grace would otherwise exceed max_pilots and the CPUs the owner left us. That holds
    # for the pilots this very decision stops, too (a ttl stop must not start its replacement
    # next to it); the replacement comes from the decision that follows its exit.
    remaining = [p for p in inp.pilots if p.phase is not PilotPhase.CREATED]
    entitled = sum(p.cpus for p in remaining if p.id not in frozen_since)
    mem_budget = float(host.mem_available - cfg.owner.reserve_memory)
    for pool in cfg.pools:
        entitled += starting.get(pool.name, 0) * pool.cpus
        mem_budget -= starting.get(pool.name, 0) * pool.memory
    capacity = spare - entitled
    blocker = _global_blocker(inp, new_state, cpu_short or mem_short)
    start: list[StartPilots] = []
    for pool in cfg.pools:
        members = [p for p in remaining if p.pool == pool.name]
        note = blocker
        if not note:
            note, n = _pool_starts(
                inp, new_state, pool, members, allowed[pool.name], capacity, mem_budget
            )
            if n > 0:
                start.append(StartPilots(pool.name, n, note))
                new_state = new_state.count_starts(pool.name, now, max(cfg.tick, 1.0), n)
                capacity -= n * pool.cpus
                mem_budget -= n * pool.memory
                note = ""
        verdicts[pool.name] = PoolVerdict(allowed[pool.name], len(members), note)

    decision = Decision(
        start=tuple(start),
        freeze=tuple(freeze),
        thaw=tuple(thaw),
        stop=tuple(stop),
        remove=tuple(remove),
        notes=tuple(notes),
    )
    return decision, new_state, verdicts


def _global_blocker(inp: PolicyInput, state: PolicyState, owner_short: bool) -> str:
    """Why no pool may start anything this tick, or ""."""
    if inp.run_state is RunState.DRAINING:
        return "draining"
    if inp.run_state is RunState.STOPPED:
        return "stopped"
    if state.frozen_since:
        return f"{len(state.frozen_since)} pilots frozen for the owner"
    if owner_short:
        return "the owner needs the host"
    if state.gave_way_at is not None:
        left = state.gave_way_at + inp.config.owner.grace_spawn - inp.now
        if left > 0:
            return f"gave way to the owner; grace_spawn {left:.0f}s left"
    return ""


def _pool_starts(
    inp: PolicyInput,
    state: PolicyState,
    pool: PoolConfig,
    members: Sequence[PilotView],
    allowed: int,
    capacity: float,
    mem_budget: float,
) -> tuple[str, int]:
    """(why, how many) for one pool."""
    now = inp.now
    backoff = state.backoff.get(pool.name)
    if backoff is not None and backoff.active(now):
        return f"backing off {backoff.until - now:.0f}s: {backoff.last_reason}", 0
    variables = pool_variables(inp.host, pool, len(inp.pilots), len(members))
    try:
        if not evaluate_run_when(pool, variables):
            return f"run_when {pool.run_when!r} is false", 0
    except (ExprError, ArithmeticError, ValueError) as exc:
        return f"run_when {pool.run_when!r} cannot be evaluated: {exc}", 0
    in_flight = (inp.starting or {}).get(pool.name, 0)
    room = allowed - len(members) - in_flight
    if room <= 0:
        return f"at max_pilots ({allowed})", 0
    fit = math.floor((capacity + _EPS) / pool.cpus) if capacity > 0 else 0
    if fit <= 0:
        return f"no spare CPU ({max(capacity, 0.0):.2f} left, a pilot needs {pool.cpus:g})", 0
    mem_fit = math.floor(mem_budget / pool.memory) if pool.memory > 0 else room
    if mem_fit <= 0:
        return "not enough available memory for another pilot", 0
    budget = state.spawn_budget(pool.name, now, max(inp.config.tick, 1.0), pool.per_tick)
    if budget <= 0:
        return f"started per_tick={pool.per_tick} pilots already this tick", 0
    n = min(room, fit, mem_fit, budget)
    return f"{n} fit ({capacity:.2f} CPUs spare, owner {inp.host.owner_cpu:.2f})", n
