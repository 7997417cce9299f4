"""What the policy remembers of the things that happen between decisions.

A pilot's end, a failed start, a start the supervisor could not make, an admin's Start: each
changes what the next decision may do, so the rule for it belongs to the policy, next to the
decision that reads it, and not to the supervisor that merely observes the event. Pure like
`decide`: no clock is read (`now` is the caller's monotonic time) and the state passed in is never
changed, so the supervisor can apply the result whenever it likes and tests can replay any
sequence of events.
"""

from __future__ import annotations

from dataclasses import replace

from planctond.config.model import PoolConfig
from planctond.policy.backoff import Backoff, after_exit
from planctond.policy.state import PolicyState


def after_pilot_end(
    state: PolicyState,
    pool: PoolConfig,
    now: float,
    *,
    exit_code: int | None,
    lifetime: float,
    stopped_by_us: bool,
) -> tuple[PolicyState, Backoff | None]:
    """New state after one of the pool's pilots ended. The second item is the pool's Backoff when
    this end is a NEW failure the admin should hear about (failures count went up), else None.

    Every end counts, even while the pool is backing off: pilots started before the back-off
    began may still be failing, and each of them is one more sign the pool is broken. A normal
    end resets the back-off, so a pool that works again starts again at once."""
    current = state.backoff.get(pool.name, Backoff())
    backoff = after_exit(
        current, pool, now, exit_code=exit_code, lifetime=lifetime, stopped_by_us=stopped_by_us
    )
    news = backoff.failures > 0 and backoff.failures != current.failures
    return state.with_backoff(pool.name, backoff), backoff if news else None


def after_start_failure(
    state: PolicyState, pool: PoolConfig, now: float, why: str
) -> tuple[PolicyState, Backoff | None]:
    """A pilot of the pool could not be started (engine refused). If the pool's back-off is already
    active at `now` (the other starts of the same burst failing for the same reason) the state is
    unchanged and None is returned: one failure per burst, not one doubling per pilot asked for.
    Otherwise the failure is recorded (exit_code None, lifetime 0, reason text
    `f"cannot start a pilot: {why}"`) and the new Backoff returned."""
    current = state.backoff.get(pool.name, Backoff())
    if current.active(now):
        return state, None
    backoff = after_exit(
        current,
        pool,
        now,
        exit_code=None,
        lifetime=0.0,
        stopped_by_us=False,
        why=f"cannot start a pilot: {why}",
    )
    return state.with_backoff(pool.name, backoff), backoff


def after_start_skipped(state: PolicyState, pool: str, n: int) -> PolicyState:
    """The decision counted n starts against per_tick but the supervisor could not make them
    (image not ready): give the allowance back, or the pool would wait a whole window for
    starts that never happened once the image is there."""
    return state.uncount_starts(pool, n)


def after_admin_start(state: PolicyState) -> PolicyState:
    """An admin's Start: forget grace_spawn (gave_way_at=None) and every pool's back-off. The
    admin asks for pilots now, typically after fixing what made a pool fail: making them wait
    for a delay earned before the fix would only look like the daemon ignoring the command."""
    return replace(state, gave_way_at=None, backoff={})
