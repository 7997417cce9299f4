"""The last step of a decision: how many pilots each pool starts, and why the others start none.

It runs after every stop, freeze and thaw of the same decision has been settled, so a start
never competes with a pilot the decision gives back to the owner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from planctond.config.expr import ExprError, compile_expr
from planctond.config.model import PoolConfig
from planctond.policy.accounting import EPS, pool_variables, spare_cpus
from planctond.policy.model import (
    PilotPhase,
    PilotView,
    PolicyInput,
    PoolVerdict,
    RunState,
    StartPilots,
)
from planctond.policy.state import PolicyState


def evaluate_run_when(pool: PoolConfig, variables: Mapping[str, float | bool]) -> bool:
    """Any truthy value: run_when is a condition an admin writes, not a typed contract."""
    return bool(compile_expr(pool.run_when).evaluate(variables))


def start_blocker(inp: PolicyInput, state: PolicyState, owner_short: bool) -> str:
    """Why no pool may start anything this decision, or "". While a pilot stays frozen or the
    owner is short, a start would only be taken back; after a stop for the owner `grace_spawn`
    keeps a returning owner from meeting new pilots at once. A reading that covers no time yet
    (zeros) would start pilots beside an owner who uses every CPU: the next one decides."""
    if inp.run_state is RunState.DRAINING:
        return "draining"
    if inp.run_state is RunState.STOPPED:
        return "stopped"
    if state.frozen_since:
        return f"{len(state.frozen_since)} pilots frozen for the owner"
    if owner_short:
        return "the owner needs the host"
    if not inp.host.cpu_measured:
        return "waiting for a first reading of the host's CPU"
    if state.gave_way_at is not None:
        left = state.gave_way_at + inp.config.owner.grace_spawn - inp.now
        if left > 0:
            return f"gave way to the owner; grace_spawn {left:.0f}s left"
    return ""


def start_room(inp: PolicyInput, state: PolicyState) -> tuple[float, float]:
    """(CPUs, bytes of memory) new pilots may still be entitled to. Pilots still winding down
    count until their container is gone: a replacement for a pilot in its stop_grace would
    otherwise exceed max_pilots and the CPUs the owner left us. That holds for the pilots this
    very decision stops, too (a ttl stop must not start its replacement next to it); the
    replacement comes from the decision that follows its exit. Frozen pilots hold no CPU, starts
    in flight hold what they will be given."""
    cfg, starting = inp.config, inp.starting or {}
    entitled = sum(
        p.cpus
        for p in inp.pilots
        if p.phase is not PilotPhase.CREATED and p.id not in state.frozen_since
    )
    mem_budget = float(inp.host.mem_available - cfg.owner.reserve_memory)
    for pool in cfg.pools:
        entitled += starting.get(pool.name, 0) * pool.cpus
        mem_budget -= starting.get(pool.name, 0) * pool.memory
    return spare_cpus(cfg, inp.host) - entitled, mem_budget


def pool_starts(
    inp: PolicyInput,
    state: PolicyState,
    pool: PoolConfig,
    members: Sequence[PilotView],
    allowed: int,
    capacity: float,
    mem_budget: float,
) -> tuple[str, int]:
    """(why, how many) for one pool: the most every limit allows, and the first limit that holds
    the pool back as its note, so an admin reads the one thing to change."""
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
    fit = math.floor((capacity + EPS) / pool.cpus) if capacity > 0 else 0
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


def plan_starts(
    inp: PolicyInput, state: PolicyState, allowed: Mapping[str, int], owner_short: bool
) -> tuple[tuple[StartPilots, ...], PolicyState, dict[str, PoolVerdict]]:
    """The starts of every pool, in config order: the spare capacity is shared first come, first
    served, so the admin orders pools by priority. Each start is counted against the pool's
    per_tick window (at least a second long) at once, so that the event-driven decisions between
    two ticks cannot exceed it."""
    capacity, mem_budget = start_room(inp, state)
    blocker = start_blocker(inp, state, owner_short)
    start: list[StartPilots] = []
    verdicts: dict[str, PoolVerdict] = {}
    for pool in inp.config.pools:
        members = [
            p for p in inp.pilots if p.pool == pool.name and p.phase is not PilotPhase.CREATED
        ]
        note = blocker
        if not note:
            note, n = pool_starts(
                inp, state, pool, members, allowed[pool.name], capacity, mem_budget
            )
            if n > 0:
                start.append(StartPilots(pool.name, n, note))
                state = state.count_starts(pool.name, inp.now, max(inp.config.tick, 1.0), n)
                capacity -= n * pool.cpus
                mem_budget -= n * pool.memory
                note = ""
        verdicts[pool.name] = PoolVerdict(allowed[pool.name], len(members), note)
    return tuple(start), state, verdicts
