"""The "## Owner impact" section of bench/RESULTS.md: every contender's figures from one run,
issue 12's aims for each planctond contender, and, in words, where planctond loses.

Why the words are computed: a sentence like "docker harvests more than planctond" must follow the
numbers of the run it sits beside, not the hopes of whoever wrote the code.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.owner_contenders import Spec
from bench.owner_figures import BASELINE, MIN_HELD, SHARE, WINDOW, Summary
from bench.owner_trace import Trace

SECTION = "## Owner impact"
AIM_HARVEST = 0.95
AIM_CPU = 1.05  # matrix, cache
AIM_STREAM = 1.10
AIM_LATENCY = 0.050  # seconds, p95 of the time to 90 %
CPU_LABELS = ("matrix", "cache", "stream", "mix")  # the scatter's y: their geometric mean
GIB = 2**30
MIB = 2**20
# Differences smaller than these are within a shared machine's noise and not called a loss:
# harvest points, and relative slowdown.
EDGE_HARVEST = 0.05
EDGE_SLOWDOWN = 0.05


@dataclass(frozen=True)
class Machine:
    date: str
    cpu: str
    nproc: int
    mem_total: int
    available: int  # MemAvailable the run worked with (after the ballast)
    ballast_pages: int
    kernel: str
    cgroup: str
    docker: str
    python: str
    stress_ng: str
    cyclictest: str
    load_before: str
    load_after: str
    engine: str
    owner_counter: str
    owner_stall: str | None  # where the owner's CPU stall came from: "psi", "schedstat", None
    duration_s: float
    kmsg: bool


@dataclass(frozen=True)
class Params:
    rounds: int
    scale: float
    short: bool
    hog_bytes: int
    hold_bytes: int
    lead_max: float
    command: str


def stall_wording(source: str | None) -> tuple[str, str]:
    """How the owner's CPU stall was measured, and what that does to the time to 90 %: the
    Method's parenthesis and its note. A host without PSI for the owner's cgroup gets a
    stricter stall (or none), and a reader comparing runs across hosts must be told."""
    others = (
        "Other tenants of a shared host delay the owner alike with or without pilots, so "
        "their waits are not counted against the pilots by the first test."
    )
    if source == "psi":
        return "PSI `some` of its cgroup: the time at least one of them waited", others
    if source == "schedstat":
        return (
            "their run-queue waits summed: `run_delay` of /proc/<tid>/schedstat",
            "This host has no PSI for the owner's cgroup; its tasks' summed waits are at "
            "least PSI's `some` (two tasks waiting at once count twice), so the second test is "
            "stricter here than with PSI, never laxer. The kernel adds a wait when it ends; "
            "the sampler places it back before the reading that saw it end, at most one "
            f"reading (5 ms) late. {others}",
        )
    return (
        "not measured on this host",
        "This host has neither PSI for the owner's cgroup nor /proc/<tid>/schedstat: only the "
        "first test is used, which also counts a tool still starting against the pilots.",
    )


def _x(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}x"


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{v * 100:.0f} %"


def _ms(v: float | None) -> str:
    if v is None:
        return "never (some bursts)"
    return "-" if math.isnan(v) else f"{v * 1000:.0f} ms"


def _us(values: list[float], how: str) -> str:
    if not values:
        return "-"
    v = statistics.median(values) if how == "median" else max(values)
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def _freed(s: Summary) -> str:
    if not s.held or max(s.held) < MIN_HELD:
        return "no pilot memory"
    if any(f is None for f in s.freed_s):
        kept = sum(1 for f in s.freed_s if f is None)
        return f"kept in {kept} of {len(s.freed_s)} hogs"
    return f"{max(f for f in s.freed_s if f is not None):.1f} s (slowest)"


def _ok(good: bool) -> str:
    return "met" if good else "**not met**"


def aims(s: Summary, memory_tested: bool = True) -> list[tuple[str, str, str]]:
    """(aim, this run's value, met?) for one contender. Without a ballast the hog fits beside
    the pilots, and "never swapped" says nothing: that aim is then not tested."""
    h = s.median_harvest()
    p95 = s.latency(95)
    lat_ok = p95 is not None and not math.isnan(p95) and p95 <= AIM_LATENCY
    harmed = s.swap_in + s.swap_out + s.oom_owner
    out = [
        (f"harvest >= {AIM_HARVEST * 100:.0f} % of the idle CPU", _pct(h), _ok(h >= AIM_HARVEST)),
    ]
    for label, aim in (("matrix", AIM_CPU), ("cache", AIM_CPU), ("stream", AIM_STREAM)):
        v = s.median_slowdown(label)
        out.append((f"{label} <= {aim:.2f}x", _x(v), _ok(not math.isnan(v) and v <= aim)))
    out.append(
        (
            f"owner >= {SHARE * 100:.0f} % of the CPU within {AIM_LATENCY * 1000:.0f} ms (p95)",
            _ms(p95),
            _ok(lat_ok),
        )
    )
    out.append(
        (
            "hog: no swap, the owner never OOM-killed",
            f"swap {s.swap_in}/{s.swap_out} pages in/out, owner OOM-killed {s.oom_owner}x",
            _ok(harmed == 0) if memory_tested else "not tested (no ballast)",
        )
    )
    return out


def _gentler(a: float, b: float) -> bool:
    """Whether slowdown `a` is clearly under `b`."""
    return not (math.isnan(a) or math.isnan(b)) and a < b * (1 - EDGE_SLOWDOWN)


def losses(name: str, summaries: dict[str, Summary]) -> list[str]:
    """Where an alternative to planctond (not another planctond config) beats `name`."""
    me = summaries[name]
    out: list[str] = []
    my_h, my_cpu = me.median_harvest(), me.cpu_slowdown(CPU_LABELS)
    for other, s in summaries.items():
        if other == BASELINE or other.startswith("planctond"):
            continue
        h, cpu = s.median_harvest(), s.cpu_slowdown(CPU_LABELS)
        more = not math.isnan(h) and not math.isnan(my_h) and h > my_h + EDGE_HARVEST
        gentler = _gentler(cpu, my_cpu)
        if more and gentler:
            out.append(
                f"`{other}` is better on both: harvest {_pct(h)} against {_pct(my_h)}, owner "
                f"slowdown {_x(cpu)} against {_x(my_cpu)}."
            )
        elif more:
            taken = " (over 100 %: CPU taken from the owner)" if h > 1 else ""
            out.append(f"`{other}` harvests more: {_pct(h)}{taken} against {_pct(my_h)}.")
        elif gentler:
            out.append(f"`{other}` slows the owner less: {_x(cpu)} against {_x(my_cpu)}.")
        for label in ("matrix", "cache", "stream", "mix", "half", "hog"):
            a, b = s.median_slowdown(label), me.median_slowdown(label)
            if _gentler(a, b) and not gentler:
                out.append(f"`{other}` slows {label} less: {_x(a)} against {_x(b)}.")
        if s.oom_owner < me.oom_owner:
            out.append(
                f"the owner's hog was OOM-killed {me.oom_owner}x here, {s.oom_owner}x with "
                f"`{other}`."
            )
        p_me, p_other = me.latency(95), s.latency(95)
        if p_me is None and p_other is not None:
            out.append(f"with `{other}` every burst got 90 % of the CPU; here some never did.")
    return out


def _trace_lines(trace: Trace) -> list[str]:
    rows = ["| from (s) | seconds | kind | workload |", "|---|---|---|---|"]
    for s in trace.steps:
        rows.append(f"| {s.start:.1f} | {s.seconds:g} | {s.kind} | {s.workload} |")
    return rows


def render(
    m: Machine,
    p: Params,
    trace: Trace,
    specs: Sequence[Spec],
    summaries: dict[str, Summary],
    plots: list[str],
    notes: list[str],
) -> str:
    names = [s.name for s in specs if s.name in summaries]
    stall_how, stall_note = stall_wording(m.owner_stall)
    base = summaries.get(BASELINE)
    idle = statistics.median(base.idle_s) if base and base.idle_s else math.nan
    out = [SECTION, ""]
    ballast = (
        f"a hugepage ballast of {m.ballast_pages * 2 / 1024:.1f} GiB left {m.available / GIB:.1f} "
        "GiB available (a small host, so the memory hog can take most of it in seconds)"
        if m.ballast_pages
        else f"no ballast: {m.available / GIB:.1f} GiB available"
    )
    out.append(
        f"`{p.command}` (`python3 -m bench.owner"
        f"{' --short' if p.short else ''}`) on {m.date}: {m.cpu}, {m.nproc} CPUs, "
        f"{m.mem_total / GIB:.0f} GiB RAM ({ballast}), kernel {m.kernel}, {m.cgroup}, "
        f"Docker {m.docker}, Python {m.python}, {m.stress_ng}, cyclictest {m.cyclictest}; engine: "
        f"{m.engine}. Load average before / after: {m.load_before} / {m.load_after}. "
        f"{p.rounds} round(s) of a {trace.seconds:.0f}-s owner trace per contender "
        f"(durations x{p.scale:g}), contenders interleaved, their order rotating each round; "
        f"ratios are to the baseline of the same round. The whole run took "
        f"{m.duration_s / 60:.1f} min."
    )
    if p.short:
        out += [
            "",
            "**Short mode**: a smoke test that the benchmark works end to end. One round of a "
            "scaled-down trace, no memory ballast (the hog and the pilots' memory are capped, so "
            "the hog never competes with the pilots): these figures are not results.",
        ]
    out += [
        "",
        f"Memory: the hog takes {p.hog_bytes / GIB:.2f} GiB, each pilot holds "
        f"{p.hold_bytes / GIB:.2f} GiB. Idle CPU in the baseline's trace (median over rounds): "
        f"{idle:.1f} CPU-seconds of {m.nproc * trace.seconds:.0f}.",
        "",
        "### Harvest and the owner's speed",
        "",
        "Slowdown = the baseline's rate / the contender's (stress-ng's bogo ops/s of real "
        "time), median over rounds and repeats; > 1: the owner was slower.",
        "",
        "| contender | harvest | pilots' CPU-s (per round) | matrix | cache | stream | mix "
        "| half load | hog |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        s = summaries[n]
        cpu = " ".join(f"{v:.1f}" for v in s.pilot_cpu_s)
        out.append(
            f"| {n} | {_pct(s.median_harvest())} | {cpu} | "
            + " | ".join(
                _x(s.median_slowdown(k))
                for k in ("matrix", "cache", "stream", "mix", "half", "hog")
            )
            + " |"
        )
    out += [
        "",
        "### The owner's CPU back, and its wake-ups",
        "",
        f"Time until the owner has {SHARE * 100:.0f} % of the CPU it wants, from the start of a "
        f"burst or spike ({WINDOW * 1000:.0f}-ms windows; Method). cyclictest: one SCHED_OTHER "
        "thread per core waking every 1 ms.",
        "",
        "| contender | to 90 %: p50 | p95 | bursts that never got there | cyclictest p99 "
        "(median) | cyclictest max |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        s = summaries[n]
        never = sum(1 for v in s.latencies if v is None)
        out.append(
            f"| {n} | {_ms(s.latency(50))} | {_ms(s.latency(95))} | {never} of "
            f"{len(s.latencies)} | {_us(s.cyclic_p99, 'median')} | {_us(s.cyclic_max, 'max')} |"
        )
    out += [
        "",
        "### Memory hog, and the pilots' losses",
        "",
        "| contender | pilots' memory at the hog's start | freed (under 10 %) within "
        "| swap in / out (pages) | OOM kills: owner / pilots / other (kernel's count) "
        "| pilots stopped | their CPU-s lost |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in names:
        s = summaries[n]
        held = f"{statistics.median(s.held) / MIB:.0f} MiB" if s.held else "-"
        out.append(
            f"| {n} | {held} | {_freed(s)} | {s.swap_in} / {s.swap_out} | {s.oom_owner} / "
            f"{s.oom_pilot} / {s.oom_other} ({s.oom_counter}) | {s.stopped} | {s.lost_s:.1f} |"
        )
    out += ["", "### Issue 12's aims", ""]
    out += ["| contender | aim | this run | |", "|---|---|---|---|"]
    for n in names:
        if not n.startswith("planctond"):
            continue
        for aim, value, met in aims(summaries[n], m.ballast_pages > 0):
            out.append(f"| {n} | {aim} | {value} | {met} |")
    out += ["", "### Where planctond loses", ""]
    said = False
    for n in names:
        if not n.startswith("planctond"):
            continue
        lost = losses(n, summaries)
        missed = [a for a, _, met in aims(summaries[n], m.ballast_pages > 0) if met == _ok(False)]
        if missed:
            lost.append("aims not met: " + "; ".join(missed) + ".")
        if lost:
            said = True
            out.append(f"- **{n}**: " + " ".join(lost))
    if not said:
        out.append("- Nowhere in this run: no contender beat a planctond contender on any figure.")
    if plots:
        out += ["", "### Plots", ""]
        out += [f"![{name}]({name})" for name in plots]
    out += ["", "### Contenders", ""]
    out += [f"- `{s.name}`: {s.what}" for s in specs]
    out += ["", "### The owner's trace", ""]
    out += _trace_lines(trace)
    out += ["", "### Method", ""]
    out += [
        "- Owner workloads run as root outside any container, each on every core: "
        "`stress-ng --matrix N`, `--cache N`, `--stream N`, a build-like mix `--fork N --cpu N "
        "--memcpy N`, `--cpu N` (spikes) and `--cpu N/2` (half load), the hog `--vm N "
        "--vm-bytes HOG/N --vm-keep --oomable`, and `cyclictest -S -i 1000 --policy=other -h`. "
        "Each is spawned at its step's start and stopped with SIGINT at its end; their own "
        "reports (`--yaml`, the histogram) are the figures. stress-ng makes its memory workers "
        "the OOM killer's first choice (oom_score_adj 1000); a real owner's program is not, so "
        "the benchmark sets them back to 0.",
        f"- The owner's CPU is counted by {m.owner_counter}; the pilots' by their parent cgroup, "
        "one per contender and round (it keeps what stopped pilots used). A sampler process at "
        "SCHED_FIFO reads both every 5 ms, and every 100 ms each pilot's CPU, frozen state and "
        "the pilots' memory (bench/owner_sampler.py).",
        "- Harvest = the pilots' CPU-seconds during the trace / the CPU-seconds nobody used "
        "(/proc/stat idle + iowait) during the baseline's trace of the same round; median over "
        "rounds. Over 100 %: the pilots took CPU the owner wanted (or other work on the "
        "machine differed between the two replays).",
        f"- Time to {SHARE * 100:.0f} %: a burst starts in the first {WINDOW * 1000:.0f}-ms "
        "window after its tool was spawned in which the owner uses at least half a core's "
        "worth; from that window's end to the end of the first window in which the owner has "
        f"{SHARE * 100:.0f} % of the CPU it wants: the pilots use under "
        f"{100 - SHARE * 100:.0f} % of what the owner and they use together, or the owner's "
        f"tasks waited for a CPU ({stall_how}) under {100 - SHARE * 100:.0f} % of "
        "the window (it wanted no more: a tool still starting leaves cores free without being "
        f"denied anything). 0: at once. {stall_note} A burst that never gets there counts as "
        "infinite in the percentiles.",
        "- Memory hog: /proc/vmstat's pswpin, pswpout and oom_kill from the hog's start to the "
        "owner's next step; each OOM kill's victim from the kernel log (`task_memcg` under a "
        "pilots' parent: a pilot; stress-ng or cyclictest: the owner). Pilots' memory "
        "(usage less inactive file pages) freed: the time until it fell under 10 % of what it "
        "was at the hog's start.",
        "- Pilots stopped: pilot cgroups that disappeared (or whose counter restarted) during "
        "the trace; their CPU-seconds are lost work (the pilots spin until stopped).",
        "- Pilots: busybox (contrib/devstack/images.sh, never pulled) spinning one core each "
        "and holding memory with `dd` (bench/owner_contenders.py). Before the trace each "
        f"contender gets up to {p.lead_max:g} s to bring them up and fill their memory (what is "
        "not up by then is its loss).",
    ]
    if notes:
        out += ["", "### Notes", ""]
        out += [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(out) + "\n"
