"""What one contender's replay of the trace leaves behind: plain data, no I/O.

The runner (owner.py) fills these; figures, report and plots only read them, so every number in
RESULTS.md can be recomputed (and unit-tested) from recorded readings alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.owner_host import OomKill
from bench.owner_trace import Step
from bench.owner_workloads import Latency


@dataclass(frozen=True)
class Fast:
    """One fast reading: cumulative CPU-seconds of the owner and of the pilots' parent, and
    the owner's cumulative CPU stall (PSI `some`: time some owner task waited for a CPU)."""

    t: float  # CLOCK_MONOTONIC
    owner: float
    pilots: float
    stall: float = math.nan  # nan: not measured on this host


@dataclass(frozen=True)
class Census:
    """One slow reading: the pilots' memory, and each live pilot's CPU-seconds and state."""

    t: float
    memory: int
    pilots: dict[str, tuple[float, bool]]  # id -> (CPU-seconds, frozen)

    @property
    def frozen(self) -> int:
        return sum(1 for _, f in self.pilots.values() if f)

    @property
    def running(self) -> int:
        return len(self.pilots) - self.frozen


@dataclass
class StepRecord:
    index: int
    step: Step
    started: float = 0.0  # monotonic, when its tool was spawned (idle: when it began)
    stopped: float = 0.0
    rates: dict[str, float] = field(default_factory=dict)  # stress-ng: stressor -> ops/s
    latency: Latency | None = None  # cyclictest
    returncode: int | None = None
    swap_in: int = 0  # pages, hog steps only (until the owner's next step)
    swap_out: int = 0
    oom_kills: int = 0  # the kernel's counter
    oom: list[OomKill] = field(default_factory=list)  # the kernel log's lines
    hog_bytes: int = 0


@dataclass
class Segment:
    """One contender's replay of the trace in one round."""

    contender: str
    round: int
    parent: str  # the pilots' parent cgroup
    t0: float  # trace start (monotonic)
    t1: float  # trace end
    idle_s: float  # CPU-seconds nobody used during the trace (/proc/stat idle + iowait)
    lead_s: float  # from the contender's start to the trace's start
    steps: list[StepRecord] = field(default_factory=list)
    fast: list[Fast] = field(default_factory=list)
    slow: list[Census] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_samples(text: str) -> tuple[list[Fast], list[Census]]:
    """The sampler's output (bench/owner_sampler.py) -> readings, in time order."""
    fast: list[Fast] = []
    slow: list[Census] = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "f" and len(words) in (4, 5):
            stall = float(words[4]) if len(words) == 5 else math.nan
            fast.append(Fast(float(words[1]), float(words[2]), float(words[3]), stall))
        elif words[0] == "s" and len(words) >= 3:
            pilots: dict[str, tuple[float, bool]] = {}
            for item in words[3:]:
                cid, cpu, state = item.split(":")
                pilots[cid] = (float(cpu), state == "F")
            slow.append(Census(float(words[1]), int(words[2]), pilots))
    return fast, slow
