"""The owner-first policy: one pure function from (host, pilots, config, memory) to actions.

Accounting is in *entitled* CPUs (`accounting`). Two consequences that fix Plancton 0.6's bugs
by construction:

* a pilot burning its own CPU never looks like an owner, so `max_pilots: 1` cannot start-kill-start;
* spawning needs ``spare >= need + cpus`` while giving way needs ``need > spare + margin``: after
  any start the host is at least `margin` away from the give-way line, so a steady load never flaps.

A decision is a chain of named pure steps, each in the module of its rules: leftovers, forced stops
and max_pilots (`limits`), the owner's give-way ladder (`giveway`; what counts as a shortage under
each `give_way` rule is `shortage`'s), then the starts (`spawn`). Each step sees only the pilots
the steps before it left alone, so a pilot gets at most one action.
"""

from __future__ import annotations

from planctond.policy.accounting import pool_variables, spare_cpus, without
from planctond.policy.giveway import give_way
from planctond.policy.limits import evaluate_max_pilots, forced_stops, leftovers, pool_limits
from planctond.policy.model import Decision, PilotPhase, PolicyInput, PoolVerdict
from planctond.policy.shortage import shortage_notes
from planctond.policy.spawn import evaluate_run_when, plan_starts
from planctond.policy.state import PolicyState

# The names callers have always imported from here, wherever they are defined now.
__all__ = [
    "PolicyInput",
    "PoolVerdict",
    "decide",
    "evaluate_max_pilots",
    "evaluate_run_when",
    "pool_variables",
    "spare_cpus",
]


def decide(
    inp: PolicyInput, state: PolicyState
) -> tuple[Decision, PolicyState, dict[str, PoolVerdict]]:
    """The actions of one tick (or one pilot's end), the memory to keep for the next decision, and
    each pool's figures. Pure: the same input and state always give the same output, and a tick
    that fails halfway can be retried from the old state."""
    remove = leftovers(inp.pilots)
    live = [p for p in inp.pilots if p.phase in (PilotPhase.RUNNING, PilotPhase.FROZEN)]
    forced = forced_stops(inp.config, inp.host, inp.run_state, live)
    live = without(live, forced)
    limits = pool_limits(inp.config, inp.host, inp.now, live, inp.starting or {}, state)
    live = without(live, limits.stop)
    ladder = give_way(inp.config, inp.host, inp.now, live, limits.state)
    start, new_state, verdicts = plan_starts(inp, ladder.state, limits.allowed, ladder.owner_short)
    decision = Decision(
        start=start,
        freeze=ladder.freeze,
        thaw=ladder.thaw,
        stop=(*forced, *limits.stop, *ladder.stop),
        remove=tuple(remove),
        notes=(*limits.notes, *shortage_notes(inp.config, inp.host)),
    )
    return decision, new_state, verdicts
