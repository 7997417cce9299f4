"""RollingMeans against a naive reference that keeps every sample.

The specification: the mean of window W over the samples whose bucket (floor(t / (W / R))) is one
of the R newest buckets reached so far. So the window starts at a bucket boundary, covering
between W - W/R and W seconds before the newest sample.
"""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.sensors.averages import RollingMeans

WINDOWS = {"short": 10.0, "mid": 60.0, "long": 600.0}


def naive_mean(samples: list[tuple[float, float]], window: float, resolution: int) -> float | None:
    if not samples:
        return None
    width = window / resolution
    head = max(math.floor(t / width) for t, _ in samples)
    live = [v for t, v in samples if math.floor(t / width) > head - resolution]
    return sum(live) / len(live) if live else None


# Irregular steps: mostly tick-like, sometimes bursts (0), gaps longer than any window, and
# clocks stepping back (out-of-order samples, some landing exactly one window behind).
steps = st.one_of(
    st.floats(min_value=0.0, max_value=15.0),
    st.just(0.0),
    st.floats(min_value=100.0, max_value=5000.0),
    st.floats(min_value=-700.0, max_value=0.0),
    st.sampled_from([-10.0, -60.0, -600.0]),
)
values = st.floats(min_value=0.0, max_value=64.0)


@settings(max_examples=300, deadline=None)
@given(
    trace=st.lists(st.tuples(steps, values), max_size=300),
    resolution=st.integers(min_value=1, max_value=30),
    start=st.sampled_from([0.0, 1e6]) | st.floats(min_value=0.0, max_value=1e6),
)
def test_matches_naive_reference(
    trace: list[tuple[float, float]], resolution: int, start: float
) -> None:
    rm = RollingMeans(WINDOWS, resolution=resolution)
    samples: list[tuple[float, float]] = []
    t = start
    for step, v in trace:
        t += step
        rm.add(t, v)
        samples.append((t, v))
        for name, w in WINDOWS.items():
            got = rm.mean(name)
            want = naive_mean(samples, w, resolution)
            if want is None:
                assert got is None
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(
    trace=st.lists(st.tuples(steps, values), min_size=1, max_size=200),
    later=st.floats(min_value=0.0, max_value=2000.0),
)
def test_mean_at_a_later_time_drops_expired_buckets(
    trace: list[tuple[float, float]], later: float
) -> None:
    """mean(now=...) equals what the reference gives once a sample-less `now` is reached."""
    resolution = 10
    rm = RollingMeans(WINDOWS, resolution=resolution)
    samples: list[tuple[float, float]] = []
    t = 0.0
    for step, v in trace:
        t += step
        rm.add(t, v)
        samples.append((t, v))
    now = max(ts for ts, _ in samples) + later
    for name, w in WINDOWS.items():
        width = w / resolution
        head = max(math.floor(ts / width) for ts, _ in samples)
        oldest = max(math.floor(now / width), head) - resolution + 1
        live = [v for ts, v in samples if math.floor(ts / width) >= oldest]
        got = rm.mean(name, now=now)
        if not live:
            assert got is None
        else:
            assert got == pytest.approx(sum(live) / len(live), rel=1e-9, abs=1e-9)
        # reading never changes state
        assert rm.mean(name) == pytest.approx(naive_mean(samples, w, resolution), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(trace=st.lists(st.tuples(st.floats(0.0, 20.0), values), min_size=1, max_size=200))
def test_window_coverage_is_within_one_bucket(trace: list[tuple[float, float]]) -> None:
    """Every sample newer than W - W/R is in the mean; none older than W is."""
    resolution = 6
    w = 60.0
    rm = RollingMeans({"w": w}, resolution=resolution)
    samples: list[tuple[float, float]] = []
    t = 0.0
    for step, v in trace:
        t += step
        rm.add(t, v)
        samples.append((t, v))
    must = [v for ts, v in samples if ts > t - (w - w / resolution)]
    may = [v for ts, v in samples if ts > t - w]
    got = rm.mean("w")
    assert got is not None
    # The bucketed set lies between `must` and `may` (both non-empty: the newest sample is in both).
    assert min(must + may) - 1e-9 <= got <= max(must + may) + 1e-9
    sel = [
        v
        for ts, v in samples
        if math.floor(ts / (w / resolution)) > math.floor(t / (w / resolution)) - resolution
    ]
    assert len(must) <= len(sel) <= len(may)


def test_gap_longer_than_window_expires_everything() -> None:
    rm = RollingMeans({"1m": 60.0, "1h": 3600.0})
    for i in range(60):
        rm.add(float(i), 2.0)
    assert rm.mean("1m") == 2.0
    rm.add(60.0 + 120.0, 0.5)  # two minutes of nothing (a suspended laptop)
    assert rm.mean("1m") == 0.5
    assert rm.mean("1h") == pytest.approx((60 * 2.0 + 0.5) / 61)


def test_empty_and_bad_values() -> None:
    rm = RollingMeans({"1m": 60.0})
    assert rm.mean("1m") is None
    rm.add(0.0, math.nan)
    rm.add(1.0, math.inf)
    assert rm.mean("1m") is None
    rm.add(2.0, 1.0)
    rm.add(math.nan, 5.0)
    assert rm.mean("1m") == 1.0
    assert rm.names == ("1m",)
    with pytest.raises(KeyError):
        rm.mean("5m")
    with pytest.raises(ValueError, match="resolution"):
        RollingMeans({"1m": 60.0}, resolution=0)
    with pytest.raises(ValueError, match="window"):
        RollingMeans({"x": 0.0})


def test_sample_older_than_the_window_is_ignored() -> None:
    rm = RollingMeans({"1m": 60.0})
    rm.add(1000.0, 1.0)
    rm.add(900.0, 100.0)  # out of order and already outside the window
    assert rm.mean("1m") == 1.0
    rm.add(990.0, 3.0)  # out of order but inside: counted
    assert rm.mean("1m") == 2.0


def test_memory_is_bounded_by_resolution() -> None:
    rm = RollingMeans({"1m": 60.0, "1d": 86400.0}, resolution=60)

    def size() -> int:
        total = 0
        for ring in rm._rings.values():
            total += sys.getsizeof(ring.sums) + sys.getsizeof(ring.counts)
        return total

    for i in range(1000):
        rm.add(i * 0.5, 1.0)
    before = size()
    for i in range(1000, 200_000):
        rm.add(i * 0.5, float(i % 3))
    assert size() == before
