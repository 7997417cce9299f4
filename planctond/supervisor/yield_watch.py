"""How fast, and how cleanly, the pilots got out of the owner's way: the owner yield figures.

An episode opens with the first host reading that shows the owner short of CPU or memory (the
policy's overload clock starting). It is measured from the start of the interval that reading
covers, so the figure is within one tick of the real moment the owner's demand crossed the
give-way line: the daemon cannot know when, inside an interval, that happened. It ends when the
last pilot the policy chose to give way (the `grace_kill` rung: frozen, or stopped when `freeze`
is 0) has been frozen or has stopped, as Docker answered. `grace_kill` is part of the figure by
design: it is what the owner lives through.

Beside the latency, the kernel-level figure: the CPU-seconds the pilots' parent cgroup used
during the episode. Under the idle parent it stays near zero whatever the latency, because the
kernel already gave the owner the CPU; without it, it is the CPU the owner lost.

An episode whose need passes before `grace_kill`, or that finds no running pilot to take, yields
nothing and is dropped: the owner was not waiting for the pilots. Docker going away drops it too
(the pauses under way will not be answered).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from planctond.policy.model import (
    OWNER_REASONS,
    Decision,
    HostSnapshot,
    PilotPhase,
    PilotView,
    Reason,
)
from planctond.policy.state import PolicyState
from planctond.supervisor.context import Context
from planctond.supervisor.events import Event, EventKind

log = logging.getLogger(__name__)

# The events that show a chosen pilot out of the owner's way.
GONE_KINDS: Final = frozenset(
    {
        EventKind.PILOT_FROZEN,
        EventKind.PILOT_STOPPED,
        EventKind.PILOT_KILLED,
        EventKind.PILOT_EXITED,
    }
)
# A chosen pilot not out of the way after this long (a pause Docker never answered) ends the
# episode unmeasured rather than keeping it open for ever.
STALE: Final = 900.0


@dataclass
class Episode:
    started: float  # monotonic: the start of the first reading that showed the owner short
    cpu_at_start: float | None  # the pilots' parent counter then
    reason: Reason
    waiting: set[str] | None = None  # the pilots chosen to give way and not yet out of the way
    chosen_at: float = 0.0
    pilots: int = 0


def victims(
    decision: Decision, pilots: Sequence[PilotView], before: PolicyState
) -> list[tuple[str, Reason]]:
    """Pilots this decision takes out of the owner's way: frozen, or stopped while running. A
    frozen pilot stopped after `freeze` had already given way in an earlier episode."""
    was_frozen = set(before.frozen_since) | {p.id for p in pilots if p.phase is PilotPhase.FROZEN}
    return [
        (a.pilot_id, a.reason)
        for a in (*decision.freeze, *decision.stop)
        if a.reason in OWNER_REASONS and a.pilot_id not in was_frozen
    ]


class YieldWatch:
    def __init__(self, ctx: Context, pilots_cpu_seconds: Callable[[], float | None]) -> None:
        self._ctx = ctx
        self._pilots_cpu_seconds = pilots_cpu_seconds
        self.episode: Episode | None = None

    def on_decision(
        self,
        host: HostSnapshot,
        pilots: Sequence[PilotView],
        before: PolicyState,
        after: PolicyState,
        decision: Decision,
    ) -> None:
        """Ticker hook, after every decision."""
        chosen = victims(decision, pilots, before)
        ep = self.episode
        if ep is None:
            if after.overload_since is None and not chosen:
                return
            reason = after.overload_reason or (chosen[0][1] if chosen else Reason.OWNER_CPU)
            start = host.since if host.since is not None else host.monotonic
            ep = self.episode = Episode(start, host.pilots_cpu_seconds_since, reason)
        now = self._ctx.clock.monotonic()
        if chosen:
            if ep.waiting is None:
                ep.waiting, ep.chosen_at, ep.reason = set(), now, chosen[0][1]
            ep.waiting.update(pid for pid, _ in chosen)
            ep.pilots += len(chosen)
        elif ep.waiting is None and after.overload_since is None:
            self.episode = None  # the need passed, or there was nothing to take
        elif ep.waiting and now - ep.chosen_at > STALE:
            log.warning("owner yield: %d pilot(s) never got out of the way", len(ep.waiting))
            self.episode = None

    def on_event(self, event: Event) -> None:
        """EventBus subscriber: each chosen pilot out of the way; the last one ends the episode."""
        if event.kind is EventKind.DOCKER_LOST:
            self.episode = None
            return
        ep = self.episode
        if ep is None or not ep.waiting or event.kind not in GONE_KINDS:
            return
        ep.waiting.discard(event.pilot_id or "")
        if not ep.waiting:
            self.episode = None
            self._report(ep)

    def _report(self, ep: Episode) -> None:
        latency = max(0.0, self._ctx.clock.monotonic() - ep.started)
        end = self._pilots_cpu_seconds()
        extra = {"latency_seconds": f"{latency:.3f}", "pilots": str(ep.pilots)}
        used = ""
        if end is not None and ep.cpu_at_start is not None:
            cpu = max(0.0, end - ep.cpu_at_start)
            extra["pilot_cpu_seconds"] = f"{cpu:.3f}"
            used = f"; pilots used {cpu:.2f} CPU-seconds meanwhile"
        self._ctx.emit(
            EventKind.OWNER_YIELD,
            f"gave way to the owner ({ep.reason.value}) in {latency:.1f}s: "
            f"{ep.pilots} pilot(s) frozen or stopped{used}",
            reason=ep.reason.value,
            extra=extra,
        )
