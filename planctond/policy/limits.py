"""The steps of a decision that do not depend on the owner: leftovers, forced stops, max_pilots.

They come first because a pilot they stop must neither be frozen for the owner nor counted as
running by the give-way ladder that follows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from planctond.config.expr import ExprError, compile_expr
from planctond.config.model import Config, PoolConfig
from planctond.policy.accounting import EPS, pool_variables, youngest_first
from planctond.policy.model import (
    HostSnapshot,
    PilotAction,
    PilotPhase,
    PilotView,
    Reason,
    RunState,
)
from planctond.policy.state import PolicyState


def evaluate_max_pilots(pool: PoolConfig, variables: Mapping[str, float | bool]) -> int:
    """A whole number of pilots: rounded down (half a pilot cannot run) after a nudge, so that a
    figure float rounding left a hair under a whole number still counts as that number; capped,
    so that an infinite or absurd figure cannot overflow the arithmetic that follows."""
    value = compile_expr(pool.max_pilots).evaluate(variables)
    number = float(value)
    if math.isnan(number):
        raise ExprError(f"max_pilots {pool.max_pilots!r} evaluated to NaN")
    return max(0, math.floor(min(number, 1e6) + EPS))


def leftovers(pilots: Sequence[PilotView]) -> list[PilotAction]:
    """Containers created but never started (a start failed halfway) hold a name and disk space
    and will never do any work: they are removed, not stopped, and count for nothing else."""
    return [
        PilotAction(p.id, Reason.NEVER_STARTED, "created but never started")
        for p in pilots
        if p.phase is PilotPhase.CREATED
    ]


def forced_stops(
    config: Config, host: HostSnapshot, run_state: RunState, live: Sequence[PilotView]
) -> list[PilotAction]:
    """Stops owed whatever the owner does: the admin stopped the daemon, the pool left the config
    (nothing says how its pilots should run any more) or a pilot reached its ttl. A stopped daemon
    stops every pilot, so its reason wins over the others."""
    if run_state is RunState.STOPPED:
        return [PilotAction(p.id, Reason.STOP_REQUESTED, "the daemon is stopped") for p in live]
    out: list[PilotAction] = []
    for p in live:
        pool = config.pool(p.pool)
        if pool is None:
            out.append(
                PilotAction(p.id, Reason.POOL_REMOVED, f"pool {p.pool!r} is no longer configured")
            )
        elif host.wall - p.started >= pool.ttl:
            out.append(PilotAction(p.id, Reason.TTL, f"older than its ttl of {pool.ttl:.0f}s"))
    return out


def allowed_pilots(
    pool: PoolConfig, host: HostSnapshot, live_total: int, members: int, in_flight: int
) -> tuple[int, str]:
    """(how many pilots the pool may have, a note if max_pilots cannot be evaluated). An
    expression that fails (an undefined variable, a division by zero) keeps what runs and what is
    being started and starts nothing more: a mistake in the config must not kill pilots, and a
    start in flight would otherwise count as an excess to stop."""
    variables = pool_variables(host, pool, live_total, members)
    try:
        return evaluate_max_pilots(pool, variables), ""
    except (ExprError, ArithmeticError, ValueError) as exc:
        note = f"pool {pool.name}: max_pilots {pool.max_pilots!r} cannot be evaluated: {exc}"
        return members + in_flight, note


@dataclass(frozen=True)
class PoolLimits:
    allowed: Mapping[str, int]  # pool -> max_pilots as evaluated this decision
    stop: tuple[PilotAction, ...]
    notes: tuple[str, ...]
    state: PolicyState  # with the pools' excess clocks moved on


def pool_limits(
    config: Config,
    host: HostSnapshot,
    now: float,
    live: Sequence[PilotView],
    starting: Mapping[str, int],
    state: PolicyState,
) -> PoolLimits:
    """Each pool's max_pilots, and the youngest pilots above it stopped. max_pilots may follow
    the host (`mem_available`, `owner_cpu`), so a pool must have been over it for `grace_kill`
    before anything is stopped: a dip shorter than that costs no pilot. Starts in flight count,
    so that a lowered limit is not overshot by pilots about to appear."""
    allowed: dict[str, int] = {}
    stop: list[PilotAction] = []
    notes: list[str] = []
    excess_since = dict(state.excess_since)
    for pool in config.pools:
        members = [p for p in live if p.pool == pool.name]
        in_flight = starting.get(pool.name, 0)
        allowed[pool.name], note = allowed_pilots(pool, host, len(live), len(members), in_flight)
        if note:
            notes.append(note)
        over = len(members) + in_flight - allowed[pool.name]
        if over > 0:
            since = excess_since.setdefault(pool.name, now)
            if now - since >= config.owner.grace_kill:
                stop.extend(
                    PilotAction(p.id, Reason.OVER_MAX_PILOTS, f"max_pilots is {allowed[pool.name]}")
                    for p in youngest_first(members)[:over]
                )
                excess_since.pop(pool.name, None)
        else:
            excess_since.pop(pool.name, None)
    return PoolLimits(
        allowed=allowed,
        stop=tuple(stop),
        notes=tuple(notes),
        state=replace(state, excess_since=excess_since),
    )
