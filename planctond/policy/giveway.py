"""The owner-first give-way ladder: the steps of a decision that answer the owner's needs.

Giving way is a ladder: the owner must be short (`shortage`: of CPU, memory, I/O, or at the
keyboard) for `grace_kill`; then the youngest pilots are frozen (they lose no work); if the owner
still needs the host `freeze` seconds later they are stopped gracefully, and no pilot starts for
`grace_spawn`. A frozen pilot is thawed as soon as it fits again, if what froze it can be trusted
to say so (below). Each decision climbs at most one rung, from the clocks kept in `PolicyState`.

The ladder is the same for both give-way rules; `give_way: pressure` changes what counts as a
shortage, and two answers:

* MemAvailable under `reserve_memory` skips `grace_kill` and the freeze: one pilot is stopped per
  decision, the youngest frozen one first (it holds memory and does no work).
* A pilot frozen because the owner stalled (CPU, memory or I/O pressure) is not thawed when the
  stalls end: they ended because it was frozen, and thawing it would bring them back every
  `grace_kill`. It is stopped after `freeze`. Pilots frozen for what they cannot cause (the owner
  at the keyboard, the owner's CPU use) come back as under `usage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from planctond.config.model import Config, GiveWayMode
from planctond.policy.accounting import EPS, oldest_first, spare_cpus, youngest_first
from planctond.policy.model import HostSnapshot, PilotAction, PilotPhase, PilotView, Reason
from planctond.policy.shortage import Shortage, owner_shortage
from planctond.policy.state import PolicyState

__all__ = ["GiveWay", "Shortage", "give_way", "owner_shortage"]


def frozen_and_running(
    live: Sequence[PilotView], frozen_since: Mapping[str, float]
) -> tuple[list[PilotView], list[PilotView]]:
    """(frozen, running). A pilot we decided to freeze is frozen from then on, even if the caller
    still shows it as running while its pause is under way: a decision in that gap (an exit
    elsewhere) must not forget it, freeze it again and restart its `freeze` clock. (The supervisor
    also shows it as frozen at once; the policy does not rely on that.)"""
    frozen = [
        p
        for p in live
        if p.phase is PilotPhase.FROZEN or (p.phase is PilotPhase.RUNNING and p.id in frozen_since)
    ]
    frozen_ids = {p.id for p in frozen}
    running = [p for p in live if p.phase is PilotPhase.RUNNING and p.id not in frozen_ids]
    return frozen, running


def thaws(config: Config, short: Shortage, reason: Reason) -> bool:
    """Whether a pilot frozen for `reason` may come back once the owner is no longer short.
    Under `usage` always (the owner's use is read without the pilots'). Under `pressure` only
    when what froze it does not fall because it is frozen: the owner at the keyboard, or the CPU
    while it is not judged by the owner's stalls (a pilot adopted paused is counted as frozen
    for the CPU)."""
    if config.owner.give_way is GiveWayMode.USAGE:
        return True
    return reason is Reason.OWNER_ACTIVE or (
        reason is Reason.OWNER_CPU and not short.cpu_by_pressure
    )


@dataclass(frozen=True)
class Settled:
    thaw: tuple[PilotAction, ...]
    stop: tuple[PilotAction, ...]
    frozen_since: dict[str, float]  # the clocks of the pilots that stay frozen
    frozen_reason: dict[str, Reason]


def settle_frozen(
    config: Config,
    now: float,
    frozen: Sequence[PilotView],
    state: PolicyState,
    need: float,
    spare: float,
    short: Shortage,
) -> Settled:
    """The frozen pilots' rung: each is stopped once it has been frozen for `freeze` (the owner
    still needs the host, and a paused pilot still holds its memory and its slot), else thawed,
    oldest first, if it fits next to the running ones without putting the owner short again. A
    paused pilot we did not freeze (adopted after a restart) starts its clock now, as if frozen
    for the CPU. Clocks of pilots that are gone are dropped."""
    frozen_since = {k: v for k, v in state.frozen_since.items() if any(p.id == k for p in frozen)}
    frozen_reason = {k: v for k, v in state.frozen_reason.items() if k in frozen_since}
    thaw: list[PilotAction] = []
    stop: list[PilotAction] = []
    for p in oldest_first(frozen):
        since = frozen_since.setdefault(p.id, now)
        reason = frozen_reason.setdefault(p.id, Reason.OWNER_CPU)
        if now - since >= config.owner.freeze:
            detail = f"owner still needs the host after {config.owner.freeze:.0f}s frozen"
            stop.append(PilotAction(p.id, reason, detail))
        elif not short.any and thaws(config, short, reason) and need + p.cpus <= spare + EPS:
            thaw.append(
                PilotAction(p.id, Reason.OWNER_GONE, f"fits again ({spare:.2f} CPUs spare)")
            )
            need += p.cpus
    for a in (*thaw, *stop):
        frozen_since.pop(a.pilot_id, None)
        frozen_reason.pop(a.pilot_id, None)
    return Settled(tuple(thaw), tuple(stop), frozen_since, frozen_reason)


def pick_victims(
    running: Sequence[PilotView], need: float, spare: float, short: Shortage
) -> list[PilotView]:
    """Who gives way. The owner at the keyboard: every running pilot, as it wants the whole
    host. Short of CPU by use: the youngest running pilots until the rest fits in the spare CPUs
    (not merely under the give-way line, or the next reading would take one more). Anything else
    (memory, the owner's stalls): the youngest one per `grace_kill`, because the policy does not
    know how much of it a pilot takes until it is gone."""
    if short.active:
        return youngest_first(running)
    if not (short.cpu and short.cpu_by_use):
        return youngest_first(running)[:1]
    victims: list[PilotView] = []
    budget = need
    for p in youngest_first(running):
        if budget <= spare + EPS:
            break
        victims.append(p)
        budget -= p.cpus
    return victims


def victim_actions(
    config: Config,
    running: Sequence[PilotView],
    need: float,
    spare: float,
    short: Shortage,
) -> tuple[list[PilotAction], list[PilotAction]]:
    """(freeze, stop) once the owner's need outlasted `grace_kill`: the victims are frozen, which
    costs them no work and can be undone within `freeze`, unless `freeze` is 0, which asks for
    them to be stopped at once."""
    actions = [
        PilotAction(p.id, short.reason, short.detail)
        for p in pick_victims(running, need, spare, short)
    ]
    return (actions, []) if config.owner.freeze > 0 else ([], actions)


def urgent_victim(
    frozen: Sequence[PilotView], running: Sequence[PilotView], short: Shortage
) -> list[PilotAction]:
    """The one pilot stopped at once for memory under the floor: the youngest frozen one first
    (it holds memory and does no work), else the youngest running one."""
    for group in (frozen, running):
        if group:
            victim = youngest_first(group)[0]
            return [PilotAction(victim.id, Reason.OWNER_MEMORY, short.detail)]
    return []


@dataclass(frozen=True)
class GiveWay:
    freeze: tuple[PilotAction, ...]
    thaw: tuple[PilotAction, ...]
    stop: tuple[PilotAction, ...]
    owner_short: bool  # the owner needs the host this instant: nothing may start
    state: PolicyState  # overload, frozen and gave_way_at clocks moved on


def give_way(
    config: Config, host: HostSnapshot, now: float, live: Sequence[PilotView], state: PolicyState
) -> GiveWay:
    """One decision's climb of the ladder. The overload clock starts when the owner first falls
    short and is reset by any reading that is not short, so `grace_kill` counts an uninterrupted
    need; once it has run out the victims are frozen (or stopped if `freeze` is 0) and the clock
    starts again, so a further rung waits another `grace_kill`. An urgent shortage (memory under
    the floor with `give_way: pressure`) climbs at once and stops. Every stop for the owner
    restarts `grace_spawn`."""
    spare = spare_cpus(config, host)
    frozen, running = frozen_and_running(live, state.frozen_since)
    need = sum(p.cpus for p in running)
    short = owner_shortage(config, host, need, spare)
    settled = settle_frozen(config, now, frozen, state, need, spare, short)
    frozen_since, frozen_reason = dict(settled.frozen_since), dict(settled.frozen_reason)
    freeze: list[PilotAction] = []
    stop = list(settled.stop)
    overload_since, overload_reason = state.overload_since, state.overload_reason
    if not short.any:
        overload_since, overload_reason = None, None
    else:
        if overload_since is None:
            overload_since, overload_reason = now, short.reason
        if short.urgent:
            still_frozen = [p for p in frozen if p.id in frozen_since]
            stop.extend(urgent := urgent_victim(still_frozen, running, short))
            for a in urgent:
                frozen_since.pop(a.pilot_id, None)
                frozen_reason.pop(a.pilot_id, None)
            overload_since, overload_reason = None, None
        elif now - overload_since >= config.owner.grace_kill:
            rung_freeze, rung_stop = victim_actions(config, running, need, spare, short)
            freeze.extend(rung_freeze)
            stop.extend(rung_stop)
            for a in rung_freeze:
                frozen_since[a.pilot_id] = now
                frozen_reason[a.pilot_id] = a.reason
            overload_since, overload_reason = None, None
    new_state = replace(
        state,
        overload_since=overload_since,
        overload_reason=overload_reason,
        frozen_since=frozen_since,
        frozen_reason=frozen_reason,
        gave_way_at=now if stop else state.gave_way_at,
    )
    return GiveWay(tuple(freeze), settled.thaw, tuple(stop), short.any, new_state)
