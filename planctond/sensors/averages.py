"""Rolling means of one series over several time windows, in bounded memory.

The policy reads the owner's CPU use averaged over windows from a minute to a day. Keeping every
sample for a day would grow without bound and cost O(n) per read, so each window is a ring of
`resolution` buckets, each holding a sum and a count. A sample costs O(1) per window; time that
jumps forward (suspend, a stalled loop) only clears the buckets it skipped, at most `resolution` of
them, so the cost is bounded whatever the gap.

The mean of a window is the mean of the samples whose bucket is still live: the window's start is
rounded down to a bucket boundary, so it covers between `window - window/resolution` and `window`
seconds back from the newest sample. Samples are weighted equally (the supervisor samples once per
tick, so equal weights are equal time weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping


class _Ring:
    """One window: `n` buckets of `width` seconds, indexed by floor(t / width) modulo n."""

    __slots__ = ("count", "counts", "head", "n", "sums", "total", "width")

    def __init__(self, window: float, resolution: int) -> None:
        self.n = resolution
        self.width = window / resolution
        self.sums = [0.0] * resolution
        self.counts = [0] * resolution
        self.total = 0.0
        self.count = 0
        self.head: int | None = None  # index of the newest bucket seen

    def add(self, t: float, value: float) -> None:
        b = math.floor(t / self.width)
        if self.head is None:
            self.head = b
        elif b > self.head:
            self._advance(b)
        elif b <= self.head - self.n:
            return  # older than the whole window: it would expire at once
        slot = b % self.n
        self.sums[slot] += value
        self.counts[slot] += 1
        self.total += value
        self.count += 1

    def _advance(self, b: int) -> None:
        assert self.head is not None
        if b - self.head >= self.n:  # a gap longer than the window: everything expires
            self.sums = [0.0] * self.n
            self.counts = [0] * self.n
            self.total = 0.0
            self.count = 0
        else:
            for k in range(self.head + 1, b + 1):
                slot = k % self.n
                self.total -= self.sums[slot]
                self.count -= self.counts[slot]
                self.sums[slot] = 0.0
                self.counts[slot] = 0
            if self.count == 0:
                self.total = 0.0  # no rounding residue survives an empty window
        self.head = b

    def mean(self, now: float | None) -> float | None:
        if self.head is None:
            return None
        if now is None or math.floor(now / self.width) <= self.head:
            return self.total / self.count if self.count else None
        # Asked later than the newest sample: leave out the buckets that have expired by `now`,
        # without changing state (reads must not race with adds' bookkeeping).
        oldest_live = math.floor(now / self.width) - self.n + 1
        total = 0.0
        count = 0
        for k in range(max(oldest_live, self.head - self.n + 1), self.head + 1):
            slot = k % self.n
            total += self.sums[slot]
            count += self.counts[slot]
        return total / count if count else None


class RollingMeans:
    """Means of one series over named windows (seconds), e.g. {"1m": 60, "1d": 86400}."""

    def __init__(self, windows: Mapping[str, float], resolution: int = 60) -> None:
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, not {resolution}")
        for name, seconds in windows.items():
            if not seconds > 0:
                raise ValueError(f"window {name!r} must be > 0 seconds, not {seconds}")
        self._rings = {name: _Ring(float(s), resolution) for name, s in windows.items()}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._rings)

    def add(self, t: float, value: float) -> None:
        """Record `value` at time `t` (seconds, any monotonic origin). NaN/inf are ignored:
        one bad reading must not poison a day-long mean."""
        if not math.isfinite(value) or not math.isfinite(t):
            return
        for ring in self._rings.values():
            ring.add(t, value)

    def mean(self, name: str, now: float | None = None) -> float | None:
        """Mean over window `name`, None when it holds no samples. With `now`, buckets that have
        expired by then are left out (the window has moved on without samples)."""
        return self._rings[name].mean(now)
