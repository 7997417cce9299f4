"""The figures of issue 12, computed from recorded segments (pure: no I/O, no clock).

Definitions (RESULTS.md's Method says the same in words):

- harvest: the pilots' CPU-seconds during the trace (their parent cgroup's counter, which keeps
  what stopped pilots used) / the CPU-seconds nobody used during the baseline's trace in the same
  round. Per round, then the median.
- slowdown of a workload: the baseline's rate / the contender's rate of the same step of the same
  round (stress-ng's bogo ops per second of real time; the geometric mean over the stressors of a
  mix); the median over rounds and repeats.
- time to 90 %: a CPU burst (or spike) starts when, in a 10-ms window after its tool was
  spawned, the owner's processes use at least half a core's worth; from the end of that window
  to the end of the first window in which the owner has 90 % of the CPU it wants (see
  `owner_has_it`). 0 when the owner has it at once; None when it never does before the step
  ends. The owner's CPU stall it uses is PSI's `some` for the owner's cgroup where the host
  has it; on hosts without per-cgroup PSI (cgroup v1 without a v2 tree beside it, or psi=0) it
  is the owner's tasks' summed run-queue wait from /proc/<tid>/schedstat (owner_host.RunDelay,
  each wait placed within one 5-ms reading of where it ended), which is at least PSI's `some`,
  so the "hardly waited" test is stricter there, never laxer.
- memory freed: the pilots' memory when a hog starts, and the time until it is below 10 % of
  that (None: it never was before the hog's step ended).
- pilots stopped and CPU-seconds lost: pilots that were alive during the trace and gone before
  its end, and the CPU they had used (every pilot here spins until stopped, so all of it is
  work a batch system would have to redo).
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.owner_model import Census, Fast, Segment, StepRecord
from bench.owner_trace import CPU_BURSTS
from bench.owner_workloads import slowdown
from bench.report import percentile

WINDOW = 0.010  # seconds: the resolution of the time-to-90 % figure
# The owner's use that says a burst has begun: half a core, so that an owner held to one core
# by the pilots (what is being measured) is not taken for one that has not started yet.
ONSET = 0.5
SHARE = 0.90
FREED = 0.10  # memory counts as freed below this fraction of what pilots held
MIN_HELD = 16 * 1024 * 1024  # less than this at a hog's start: the pilots held nothing to free
BASELINE = "none"


def counter_at(fast: list[Fast], t: float, which: str) -> float:
    """A cumulative counter at time t, linear between the two readings around it."""
    if not fast:
        return 0.0
    i = bisect.bisect_left(fast, t, key=lambda f: f.t)
    a = fast[max(0, min(i - 1, len(fast) - 1))]
    b = fast[min(i, len(fast) - 1)]
    if a.t > t:  # before the first reading
        b = a
    va, vb = getattr(a, which), getattr(b, which)
    if b.t <= a.t:
        return float(va)
    return float(va + (vb - va) * (t - a.t) / (b.t - a.t))


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    owner: float  # cores
    pilots: float  # cores
    stall: float  # share of the window some owner task waited for a CPU (nan: not measured)


def windows(fast: list[Fast], start: float, end: float, width: float = WINDOW) -> list[Window]:
    """Consecutive windows at least `width` long, made of whole readings between start and
    end."""
    inside = [f for f in fast if start <= f.t <= end]
    out = []
    i = 0
    while i < len(inside) - 1:
        j = i + 1
        while j < len(inside) - 1 and inside[j].t - inside[i].t < width:
            j += 1
        a, b = inside[i], inside[j]
        dt = b.t - a.t
        if dt > 0:
            out.append(
                Window(
                    a.t,
                    b.t,
                    (b.owner - a.owner) / dt,
                    (b.pilots - a.pilots) / dt,
                    (b.stall - a.stall) / dt,
                )
            )
        i = j
    return out


def owner_has_it(w: Window, share: float = SHARE) -> bool:
    """The owner has `share` of the CPU it wants: the pilots use less than the rest of what the
    owner and they use together, or the owner hardly waited for a CPU at all (it did not want
    more: a tool still starting leaves cores to the pilots without being denied anything).
    The first alone cannot tell a waiting owner from one that wants no more; the second alone
    would blame the pilots for the waits other tenants of a shared host cause."""
    used = w.owner + max(0.0, w.pilots)
    if used > 0 and w.owner / used >= share:
        return True
    return not math.isnan(w.stall) and w.stall <= 1.0 - share


def time_to_share(fast: list[Fast], start: float, end: float, share: float = SHARE) -> float | None:
    onset: float | None = None
    for w in windows(fast, start, end):
        if onset is None:
            if w.owner >= ONSET:
                onset = w.end
            else:
                continue
        if owner_has_it(w, share):
            return max(0.0, w.end - onset)
    return None


def pilot_seconds(seg: Segment) -> float:
    return counter_at(seg.fast, seg.t1, "pilots") - counter_at(seg.fast, seg.t0, "pilots")


def owner_seconds(seg: Segment) -> float:
    return counter_at(seg.fast, seg.t1, "owner") - counter_at(seg.fast, seg.t0, "owner")


def burst_latencies(seg: Segment) -> list[float | None]:
    return [
        time_to_share(seg.fast, r.started, r.stopped)
        for r in seg.steps
        if r.step.kind in CPU_BURSTS
    ]


def step_label(r: StepRecord) -> str:
    """The row a step's slowdown goes to: its workload, or the kind for half load and hog."""
    if r.step.kind == "half":
        return "half"
    if r.step.kind == "hog":
        return "hog"
    return r.step.workload


SLOWDOWN_KINDS = frozenset({"burst", "half", "hog"})


def slowdowns(seg: Segment, base: Segment) -> dict[str, list[float]]:
    """label -> this segment's ratios against the baseline's same steps (same round)."""
    by_index = {r.index: r for r in base.steps}
    out: dict[str, list[float]] = {}
    for r in seg.steps:
        b = by_index.get(r.index)
        if r.step.kind not in SLOWDOWN_KINDS or b is None:
            continue
        ratio = slowdown(b.rates, r.rates)
        if ratio is not None:
            out.setdefault(step_label(r), []).append(ratio)
    return out


def memory_freed(slow: list[Census], start: float, end: float) -> tuple[int, float | None]:
    """(pilots' memory at `start`, seconds until it fell under FREED of that, or None)."""
    before = [c for c in slow if c.t <= start]
    held = before[-1].memory if before else (slow[0].memory if slow else 0)
    if held < MIN_HELD:
        return held, 0.0
    for c in slow:
        if start <= c.t <= end and c.memory < FREED * held:
            return held, c.t - start
    return held, None


def pilot_losses(slow: list[Census], t0: float, t1: float) -> tuple[int, float]:
    """(pilots gone before the trace's end, their CPU-seconds). A pilot whose counter went
    down was restarted in place (Docker's restart policy): its earlier run counts as lost."""
    last: dict[str, tuple[float, float]] = {}  # id -> (t, cpu)
    stopped = 0
    lost = 0.0
    for c in slow:
        if c.t > t1:
            break
        for cid, (cpu, _frozen) in c.pilots.items():
            seen = last.get(cid)
            if seen is not None and cpu + 1e-6 < seen[1] and c.t >= t0:
                stopped += 1
                lost += seen[1]
            last[cid] = (c.t, cpu)
        present = set(c.pilots)
        for cid in [k for k in last if k not in present]:
            t, cpu = last.pop(cid)
            if t >= t0 or c.t >= t0:
                stopped += 1
                lost += cpu
    return stopped, lost


# --- one contender over all its rounds -----------------------------------------------------------
@dataclass
class Summary:
    contender: str
    harvest: list[float] = field(default_factory=list)  # per round, fraction
    pilot_cpu_s: list[float] = field(default_factory=list)
    idle_s: list[float] = field(default_factory=list)  # the baseline's, per round
    slow: dict[str, list[float]] = field(default_factory=dict)
    latencies: list[float | None] = field(default_factory=list)
    cyclic_p99: list[float] = field(default_factory=list)
    cyclic_max: list[float] = field(default_factory=list)
    swap_in: int = 0
    swap_out: int = 0
    oom_owner: int = 0
    oom_pilot: int = 0
    oom_other: int = 0
    oom_counter: int = 0
    held: list[int] = field(default_factory=list)  # pilots' memory at each hog's start
    freed_s: list[float | None] = field(default_factory=list)
    stopped: int = 0
    lost_s: float = 0.0
    owner_failed: int = 0  # owner tool runs that did not report (killed, crashed)

    def median_harvest(self) -> float:
        return statistics.median(self.harvest) if self.harvest else math.nan

    def median_slowdown(self, label: str) -> float:
        values = self.slow.get(label, [])
        return statistics.median(values) if values else math.nan

    def latency(self, q: float) -> float | None:
        """Percentile of the time to 90 %, a burst that never got there counting as infinite;
        None: infinite (some bursts never did)."""
        if not self.latencies:
            return math.nan
        values = [math.inf if v is None else v for v in self.latencies]
        value = percentile(values, q)
        return None if math.isinf(value) else value

    def cpu_slowdown(self, labels: Iterable[str]) -> float:
        """The geometric mean of the median slowdowns of `labels` (the scatter's y)."""
        values = [self.median_slowdown(label) for label in labels]
        values = [v for v in values if not math.isnan(v)]
        return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def _classify(task: str, memcg: str, parents: set[str]) -> str:
    if any(memcg == p or memcg.startswith(p + "/") for p in parents):
        return "pilot"
    if task.startswith(("stress-ng", "cyclictest")):
        return "owner"
    return "other"


def summarise(segments: list[Segment]) -> dict[str, Summary]:
    """Every contender's figures; the baseline ("none") is the reference of each round."""
    base = {s.round: s for s in segments if s.contender == BASELINE}
    parents = {"/" + s.parent.strip("/") for s in segments}
    out: dict[str, Summary] = {}
    for seg in segments:
        su = out.setdefault(seg.contender, Summary(seg.contender))
        b = base.get(seg.round)
        cpu = pilot_seconds(seg)
        su.pilot_cpu_s.append(cpu)
        if b is not None and b.idle_s > 0:
            su.idle_s.append(b.idle_s)
            su.harvest.append(cpu / b.idle_s)
        if b is not None:
            for label, ratios in slowdowns(seg, b).items():
                su.slow.setdefault(label, []).extend(ratios)
        su.latencies.extend(burst_latencies(seg))
        for r in seg.steps:
            if r.step.kind in SLOWDOWN_KINDS and not r.rates:
                su.owner_failed += 1
            if r.latency is not None:
                su.cyclic_p99.append(r.latency.p99)
                su.cyclic_max.append(r.latency.max)
            elif r.step.kind == "latency":
                su.owner_failed += 1
            if r.step.kind == "hog":
                su.swap_in += r.swap_in
                su.swap_out += r.swap_out
                su.oom_counter += r.oom_kills
                for k in r.oom:
                    who = _classify(k.task, k.memcg, parents)
                    if who == "owner":
                        su.oom_owner += 1
                    elif who == "pilot":
                        su.oom_pilot += 1
                    else:
                        su.oom_other += 1
                held, freed = memory_freed(seg.slow, r.started, r.stopped)
                su.held.append(held)
                su.freed_s.append(freed)
        stopped, lost = pilot_losses(seg.slow, seg.t0, seg.t1)
        su.stopped += stopped
        su.lost_s += lost
    return out


def binned(
    fast: list[Fast], t0: float, t1: float, width: float
) -> list[tuple[float, float, float]]:
    """(seconds from t0, owner cores, pilot cores) per `width`-second bin: the plots' lines."""
    out = []
    t = t0
    while t < t1 - 1e-9:
        u = min(t1, t + width)
        owner = counter_at(fast, u, "owner") - counter_at(fast, t, "owner")
        pilots = counter_at(fast, u, "pilots") - counter_at(fast, t, "pilots")
        out.append((t - t0, owner / (u - t), pilots / (u - t)))
        t = u
    return out


def census_series(slow: list[Census], t0: float) -> list[tuple[float, int, int]]:
    """(seconds from t0, pilots running, pilots frozen) per census."""
    return [(c.t - t0, c.running, c.frozen) for c in slow]
