"""The owner's replayable trace: what the owner does, second by second, as data.

Why data and not a loop in code: every contender must meet exactly the same owner, and a reader
of RESULTS.md must be able to see that owner at a glance. The trace is a table (kind, workload,
seconds) kept below as text; `--trace FILE` replays another table of the same form.

Kinds:
  idle     the owner does nothing: what the pilots may harvest
  burst    a workload on every core (its own metric is the owner's speed)
  spike    a short burst on every core (too short for any policy tick: only the kernel can help)
  half     a steady load on half the cores: the other half is the pilots' to take
  hog      a memory hog taking most of the host's free RAM
  latency  an interactive-style task measured by its wake-up latency (cyclictest)

Scaling (the short mode) multiplies every duration but keeps each kind above the floor its tool
needs to report something meaningful; spikes are never scaled, as their shortness is the point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

KINDS: Final = ("idle", "burst", "spike", "half", "hog", "latency")
# Workloads each kind may run; "-" = none.
WORKLOADS: Final[dict[str, tuple[str, ...]]] = {
    "idle": ("-",),
    "burst": ("matrix", "cache", "stream", "mix"),
    "spike": ("cpu",),
    "half": ("cpu",),
    "hog": ("vm",),
    "latency": ("cyclictest",),
}
# Shortest run a kind may be scaled down to (seconds): below it the tools report noise (stream
# spends its first second allocating, the hog filling memory). None: never scaled.
FLOORS: Final[dict[str, float | None]] = {
    "idle": 0.5,
    "burst": 1.5,
    "spike": None,
    "half": 1.0,
    "hog": 3.0,
    "latency": 1.0,
}
# Kinds in which the owner wants every core at once: a start of one is "a burst" for the
# time-to-90 % figure.
CPU_BURSTS: Final = frozenset({"burst", "spike"})

# About 43 s; rounds repeat it once per contender each (see owner.py for the arithmetic).
TRACE: Final = """
# kind   workload    seconds  what it stands for
idle     -           4        a quiet host: the pilots may have it all
burst    matrix      3        CPU-bound work on every core
idle     -           1.5
burst    cache       3        cache-bound work on every core
idle     -           1.5
burst    stream      4        memory-bandwidth-bound work on every core (its first second allocates)
idle     -           1.5
spike    cpu         0.4      a click that loads every core for a moment
idle     -           1.1
spike    cpu         0.4
idle     -           1.1
spike    cpu         0.4
idle     -           1.1
half     cpu         5        a steady load on half the cores
burst    mix         3        a build: processes forking, compiling, copying memory
idle     -           1.5
hog      vm          6        most of the free RAM, taken as fast as the kernel gives it
idle     -           1.5
latency  cyclictest  3        an interactive task: how late it wakes up
"""


class TraceError(ValueError):
    """A trace table that cannot be replayed; the message names the line."""


@dataclass(frozen=True)
class Step:
    kind: str
    workload: str
    seconds: float
    start: float = 0.0  # offset from the trace's start, seconds
    line: int = 0  # in the table it came from, for messages

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass(frozen=True)
class Trace:
    steps: tuple[Step, ...]

    @property
    def seconds(self) -> float:
        return self.steps[-1].end if self.steps else 0.0

    def of_kind(self, *kinds: str) -> list[Step]:
        return [s for s in self.steps if s.kind in kinds]

    def workloads(self) -> list[str]:
        """The burst workloads, in the order they first appear."""
        seen: list[str] = []
        for s in self.of_kind("burst"):
            if s.workload not in seen:
                seen.append(s.workload)
        return seen


def _placed(steps: list[Step]) -> Trace:
    out: list[Step] = []
    at = 0.0
    for s in steps:
        out.append(replace(s, start=round(at, 6)))
        at += s.seconds
    return Trace(tuple(out))


def parse_trace(text: str) -> Trace:
    """The table -> steps with their start offsets. `#` starts a comment; words after the
    seconds are a description and ignored."""
    steps: list[Step] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) < 3:
            raise TraceError(f"line {number}: expected `kind workload seconds`, got {raw!r}")
        kind, workload, seconds_text = words[:3]
        if kind not in KINDS:
            raise TraceError(f"line {number}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        if workload not in WORKLOADS[kind]:
            raise TraceError(
                f"line {number}: {kind} runs one of {', '.join(WORKLOADS[kind])}, not {workload!r}"
            )
        try:
            seconds = float(seconds_text)
        except ValueError:
            raise TraceError(
                f"line {number}: {seconds_text!r} is not a number of seconds"
            ) from None
        if not 0 < seconds <= 3600:
            raise TraceError(f"line {number}: {seconds:g} s is outside 0..3600")
        steps.append(Step(kind, workload, seconds, line=number))
    if not steps:
        raise TraceError("the trace has no step")
    return _placed(steps)


def scale(trace: Trace, factor: float) -> Trace:
    """Every duration times `factor`, each kind kept above its floor (spikes unchanged)."""
    if factor <= 0:
        raise TraceError(f"scale factor must be positive, not {factor:g}")
    steps = []
    for s in trace.steps:
        floor = FLOORS[s.kind]
        seconds = s.seconds if floor is None else max(min(floor, s.seconds), s.seconds * factor)
        steps.append(replace(s, seconds=round(seconds, 3)))
    return _placed(steps)


def default_trace() -> Trace:
    return parse_trace(TRACE)
