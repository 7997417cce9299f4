"""The owner-first give-way ladder: the steps of a decision that answer the owner's needs.

Giving way is a ladder: the owner must need the CPU (or memory) for `grace_kill`; then the youngest
pilots are frozen (they lose no work); if the owner still needs it `freeze` seconds later they are
stopped gracefully, and no pilot starts for `grace_spawn`. A frozen pilot is thawed as soon as it
fits again. Each decision climbs at most one rung, from the clocks kept in `PolicyState`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from planctond.config.model import Config
from planctond.policy.accounting import EPS, oldest_first, spare_cpus, youngest_first
from planctond.policy.model import HostSnapshot, PilotAction, PilotPhase, PilotView, Reason
from planctond.policy.state import PolicyState


@dataclass(frozen=True)
class Shortage:
    """What the owner is short of this instant (both can hold at once)."""

    cpu: bool
    memory: bool

    @property
    def any(self) -> bool:
        return self.cpu or self.memory

    @property
    def reason(self) -> Reason:
        """Memory first: a host short of memory swaps or kills, a host short of CPU only slows."""
        return Reason.OWNER_MEMORY if self.memory else Reason.OWNER_CPU


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


def owner_shortage(config: Config, host: HostSnapshot, need: float, spare: float) -> Shortage:
    """Whether the owner needs what the running pilots are entitled to. Giving way needs
    ``need > spare + margin`` while a start needs ``spare >= need + cpus``: after any start the
    host is at least `margin` away from the give-way line, so a steady load never flaps."""
    return Shortage(
        cpu=need > spare + config.owner.margin + EPS,
        memory=host.mem_available < config.owner.reserve_memory,
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
        elif not short.any and need + p.cpus <= spare + EPS:
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
    """Who gives way. Short of CPU: the youngest running pilots until the rest fits in the spare
    CPUs (not merely under the give-way line, or the next reading would take one more). Short of
    memory only: the youngest one per `grace_kill`, because the policy does not know how much
    memory a pilot holds until it is gone."""
    if not short.cpu:
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
    host: HostSnapshot,
    running: Sequence[PilotView],
    need: float,
    spare: float,
    short: Shortage,
) -> tuple[list[PilotAction], list[PilotAction]]:
    """(freeze, stop) once the owner's need outlasted `grace_kill`: the victims are frozen, which
    costs them no work and can be undone within `freeze`, unless `freeze` is 0, which asks for
    them to be stopped at once."""
    detail = (
        f"owner needs memory ({host.mem_available} bytes available)"
        if short.memory
        else f"owner uses {host.owner_cpu:.2f} CPUs, {spare:.2f} spare for {need:.2f} entitled"
    )
    actions = [
        PilotAction(p.id, short.reason, detail) for p in pick_victims(running, need, spare, short)
    ]
    return (actions, []) if config.owner.freeze > 0 else ([], actions)


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
    starts again, so a further rung waits another `grace_kill`. Every stop for the owner restarts
    `grace_spawn`."""
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
        if now - overload_since >= config.owner.grace_kill:
            rung_freeze, rung_stop = victim_actions(config, host, running, need, spare, short)
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
