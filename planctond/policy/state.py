"""What the policy remembers between ticks.

Immutable: `decide` returns a new state, so a tick that fails halfway (Docker went away) can simply
be retried from the old one, and tests can replay traces deterministically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from planctond.policy.backoff import Backoff
from planctond.policy.model import Reason


@dataclass(frozen=True)
class PolicyState:
    overload_since: float | None = None  # owner has needed the CPU/memory since (monotonic)
    overload_reason: Reason | None = None
    frozen_since: Mapping[str, float] = field(default_factory=dict)  # pilot id -> monotonic
    frozen_reason: Mapping[str, Reason] = field(default_factory=dict)
    gave_way_at: float | None = None  # last stop for the owner: grace_spawn counts from here
    excess_since: Mapping[str, float] = field(default_factory=dict)  # pool -> over max_pilots since
    backoff: Mapping[str, Backoff] = field(default_factory=dict)  # pool -> back-off
    window_start: Mapping[str, float] = field(default_factory=dict)  # pool -> per_tick window start
    window_count: Mapping[str, int] = field(default_factory=dict)  # pool -> starts in that window

    def with_backoff(self, pool: str, value: Backoff) -> PolicyState:
        return replace(self, backoff={**self.backoff, pool: value})

    def spawn_budget(self, pool: str, now: float, window: float, per_tick: int) -> int:
        """Starts still allowed in the current rate window (event-driven replacements included)."""
        start = self.window_start.get(pool)
        if start is None or now - start >= window:
            return per_tick
        return max(0, per_tick - self.window_count.get(pool, 0))

    def count_starts(self, pool: str, now: float, window: float, n: int) -> PolicyState:
        if n <= 0:
            return self
        start = self.window_start.get(pool)
        if start is None or now - start >= window:
            starts, counts = {**self.window_start, pool: now}, {**self.window_count, pool: n}
        else:
            counts = {**self.window_count, pool: self.window_count.get(pool, 0) + n}
            starts = dict(self.window_start)
        return replace(self, window_start=starts, window_count=counts)

    def uncount_starts(self, pool: str, n: int) -> PolicyState:
        """Starts a decision counted but the caller could not make (image not ready yet)."""
        left = self.window_count.get(pool, 0) - n
        if n <= 0 or pool not in self.window_count:
            return self
        return replace(self, window_count={**self.window_count, pool: max(0, left)})
