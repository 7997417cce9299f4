"""The owner-impact benchmark's pure parts: the trace (parsing, scaling), the tools' command
lines and output, the host readings' parsers, Plancton 0.6's rule, the figures and the report.
No engine, no root: every input is recorded text or made-up readings. `make bench-owner-short`
runs the whole benchmark for real, in under 3 minutes."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import owner_contenders as contenders
from bench import owner_figures as fig
from bench import owner_host as host
from bench import owner_plancton06 as p06
from bench import owner_report as report
from bench import owner_trace as tr
from bench import owner_workloads as wl
from bench.owner_model import Census, Fast, Segment, StepRecord, parse_samples
from planctond.config.loader import load_config

REPO = Path(__file__).resolve().parents[2]


# --- the trace ----------------------------------------------------------------------------------
def test_the_default_trace_has_every_kind_and_fits_the_budget() -> None:
    trace = tr.default_trace()
    assert {s.kind for s in trace.steps} == set(tr.KINDS)
    assert trace.workloads() == ["matrix", "cache", "stream", "mix"]
    # 3 rounds x 7 contenders x (trace + ~6 s to start and remove one) must stay under 20 min.
    assert 3 * 7 * (trace.seconds + 6) < 19 * 60
    starts = [s.start for s in trace.steps]
    assert starts == sorted(starts) and starts[0] == 0
    for a, b in zip(trace.steps, trace.steps[1:], strict=False):
        assert b.start == pytest.approx(a.end)


def test_a_trace_table_is_parsed_with_comments_and_descriptions() -> None:
    trace = tr.parse_trace("# c\n\nidle - 2  quiet\nburst matrix 1.5 # x\nspike cpu 0.4\n")
    assert [(s.kind, s.workload, s.seconds, s.start) for s in trace.steps] == [
        ("idle", "-", 2.0, 0.0),
        ("burst", "matrix", 1.5, 2.0),
        ("spike", "cpu", 0.4, 3.5),
    ]
    assert trace.seconds == pytest.approx(3.9)
    assert trace.steps[1].line == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("idle -", "line 1: expected"),
        ("nap - 1", "unknown kind 'nap'"),
        ("burst vm 1", "burst runs one of matrix, cache, stream, mix"),
        ("\nidle - soon", "line 2: 'soon' is not a number"),
        ("idle - 0", "outside 0..3600"),
        ("# only a comment", "no step"),
    ],
)
def test_a_bad_trace_table_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(tr.TraceError, match=message):
        tr.parse_trace(text)


def test_scaling_keeps_floors_and_spikes() -> None:
    trace = tr.parse_trace("idle - 4\nburst stream 4\nspike cpu 0.4\nhog vm 5\nburst cache 1\n")
    short = tr.scale(trace, 0.25)
    assert [s.seconds for s in short.steps] == [1.0, 1.5, 0.4, 3.0, 1.0]
    assert [s.start for s in short.steps] == [0.0, 1.0, 2.5, 2.9, 5.9]
    assert [s.seconds for s in tr.scale(trace, 2).steps] == [8.0, 8.0, 0.4, 10.0, 2.0]
    with pytest.raises(tr.TraceError):
        tr.scale(trace, 0)


# --- the tools ----------------------------------------------------------------------------------
def _step(kind: str, workload: str, seconds: float = 3.0) -> tr.Step:
    return tr.Step(kind, workload, seconds)


def test_stress_ng_loads_every_core_and_reports_yaml() -> None:
    argv = wl.stress_argv(_step("burst", "matrix", 2.5), 4, yaml_path="/w/m.yaml", hog_bytes=0)
    assert argv[:3] == ["stress-ng", "--matrix", "4"]
    at = argv.index("--yaml")
    assert argv[at : at + 2] == ["--yaml", "/w/m.yaml"]
    assert argv[-2:] == ["-t", f"{math.ceil(2.5 + wl.BACKSTOP)}s"]
    assert "--metrics-brief" in argv


def test_the_half_load_mix_and_hog_command_lines() -> None:
    half = wl.stress_argv(_step("half", "cpu"), 4, yaml_path="y", hog_bytes=0)
    assert half[1:3] == ["--cpu", "2"]
    assert wl.stress_argv(_step("half", "cpu"), 1, yaml_path="y", hog_bytes=0)[1:3] == [
        "--cpu",
        "1",
    ]
    mix = wl.stress_argv(_step("burst", "mix"), 2, yaml_path="y", hog_bytes=0)
    assert mix[1:7] == ["--fork", "2", "--cpu", "2", "--memcpy", "2"]
    hog = wl.stress_argv(_step("hog", "vm"), 2, yaml_path="y", hog_bytes=3 * 2**30)
    assert hog[1:5] == ["--vm", "2", "--vm-bytes", str(3 * 2**30 // 2)]
    assert "--vm-keep" in hog and "--oomable" in hog
    stream = wl.stress_argv(_step("burst", "stream"), 2, yaml_path="y", hog_bytes=0)
    assert stream[1:5] == ["--stream", "2", "--stream-l3-size", "32M"]  # not the host's L3


def test_cyclictest_runs_sched_other_one_thread_per_core() -> None:
    argv = wl.cyclictest_argv(_step("latency", "cyclictest", 3))
    assert argv[0] == "cyclictest" and "-S" in argv and "--policy=other" in argv
    assert "-p" not in argv and not any(a.startswith("--priority") for a in argv)
    assert argv[argv.index("-h") + 1] == str(wl.HIST_US)


STRESS_YAML = """---
system-info:
      stress-ng-version: 0.15.06
      cpus: 2
metrics:
    - stressor: cpu
      bogo-ops: 1983
      bogo-ops-per-second-usr-sys-time: 1354.90
      bogo-ops-per-second-real-time: 990.614971
      wall-clock-time: 2.0
    - stressor: memcpy
      bogo-ops: 179
      bogo-ops-per-second-real-time: 89.196856
...
"""


def test_stress_ng_yaml_gives_real_time_rates_per_stressor() -> None:
    assert wl.parse_stress_yaml(STRESS_YAML) == {"cpu": 990.614971, "memcpy": 89.196856}
    assert wl.parse_stress_yaml("") == {}
    assert wl.parse_stress_yaml("---\nsystem-info:\n  cpus: 2\n") == {}


CYCLICTEST = """# /dev/cpu_dma_latency set to 0us
# Histogram
000000 000000\t000000
000010 000050\t000040
000011 000005\t000003
000100 000000\t000001
# Total: 000000100 000000045
# Min Latencies: 00010 00010
# Avg Latencies: 00012 00013
# Max Latencies: 25000 00100
# Histogram Overflows: 00001 00000
# Histogram Overflow at cycle number:
# Thread 0: 00017
# Thread 1:
"""


def test_cyclictest_percentiles_come_off_the_histogram() -> None:
    lat = wl.parse_cyclictest(CYCLICTEST)
    assert lat is not None
    assert lat.samples == 100  # 90 + 8 + 1 binned, 1 overflow
    assert lat.p50 == 10 and lat.max == 25000 and lat.overflows == 1
    assert lat.p99 == 100  # rank 99: the 1 at 100 µs; rank 100 is the overflow
    assert wl.parse_cyclictest("# Histogram\n# Max Latencies: 00000\n") is None


def test_an_overflowing_p99_counts_at_the_histogram_edge_or_beyond() -> None:
    text = "000005 000001\n# Max Latencies: 30000\n# Histogram Overflows: 00009\n"
    lat = wl.parse_cyclictest(text)
    assert lat is not None and lat.p50 == 30000 and lat.p99 == 30000


def test_slowdown_is_the_geometric_mean_of_the_stressors_both_report() -> None:
    assert wl.slowdown({"matrix": 100.0}, {"matrix": 50.0}) == pytest.approx(2.0)
    mix = wl.slowdown({"cpu": 100.0, "fork": 10.0, "x": 1.0}, {"cpu": 50.0, "fork": 20.0})
    assert mix == pytest.approx(1.0)
    assert wl.slowdown({"a": 1.0}, {}) is None
    assert wl.slowdown({"a": 1.0}, {"a": 0.0}) is None


# --- host readings ------------------------------------------------------------------------------
def test_host_parsers() -> None:
    hz = host.USER_HZ
    stat = f"cpu  10 0 5 {300 * hz // 100} {20 * hz // 100} 1 2 7 0 0\ncpu0 1 2 3 4 5\n"
    assert host.parse_idle_seconds(stat) == pytest.approx(3.2)
    mem = host.parse_meminfo("MemTotal:  100 kB\nMemAvailable: 50 kB\nHugePages_Total: 3\n")
    assert mem == {"MemTotal": 102400, "MemAvailable": 51200, "HugePages_Total": 3}
    vm = host.parse_vmstat("nr_free_pages 1\npswpin 4\npswpout 5\noom_kill 2\n")
    assert vm == {"pswpin": 4, "pswpout": 5, "oom_kill": 2}
    assert host.parse_vmstat("") == {"pswpin": 0, "pswpout": 0, "oom_kill": 0}
    assert host.ballast_pages(10 * 2**30, 3 * 2**30) == 7 * 512
    assert host.ballast_pages(2**30, 3 * 2**30) == 0


def test_oom_kills_name_the_victim_and_its_memory_cgroup() -> None:
    lines = [
        "stress-ng-vm invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)",
        "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,"
        "task_memcg=/planctond-owner-bench-x/0123abcd,task=dd,pid=4242,uid=0",
        "Out of memory: Killed process 4242 (dd) total-vm:1060380kB, anon-rss:1048576kB",
        "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
        "global_oom,task_memcg=/,task=stress-ng-vm,pid=77,uid=0",
    ]
    kills = host.parse_oom_kills(lines)
    assert kills == [
        host.OomKill("dd", 4242, "/planctond-owner-bench-x/0123abcd"),
        host.OomKill("stress-ng-vm", 77, "/"),
    ]


# --- Plancton 0.6's rule ------------------------------------------------------------------------
P = p06.Params(max_docks=2, main_sleep=30, grace_kill=120, grace_spawn=60)


def test_plancton_launches_what_fits_the_idle_cpu_up_to_its_limits() -> None:
    d = p06.decide(P, p06.State(), 0.0, 0.0, 2, [])
    assert d.launch == 1  # 100 % idle * 0.95 * 2 CPUs = 1.9 -> 1 (floored, as Plancton did)
    d = p06.decide(P, p06.State(), 0.0, 0.0, 4, [])
    assert d.launch == 2  # 3.8 fit, max_docks 2
    d = p06.decide(P, p06.State(), 0.0, 0.6, 2, [p06.Pilot("a", 0.0)])
    assert d.launch == 0  # 40 % idle: 0.76 of a pilot


def test_a_pilot_at_full_load_is_not_taken_for_the_owner() -> None:
    # One pilot spinning one core of two: efficiency 0.5, threshold 1/2 + 10 %.
    d = p06.decide(P, p06.State(), 500.0, 0.5, 2, [p06.Pilot("a", 0.0)])
    assert d.kill == () and d.state.over_since is None


def test_plancton_kills_the_youngest_after_grace_kill_one_per_loop() -> None:
    pilots = [p06.Pilot("old", 0.0), p06.Pilot("young", 10.0)]
    # 2 pilots x 1 CPU / 2 CPUs + 10 % = 1.1: a full 2-CPU host is never over it.
    d = p06.decide(P, p06.State(), 100.0, 1.0, 2, pilots)
    assert d.kill == () and d.state.over_since is None
    # On 4 CPUs the same two pilots leave room over their line: 2/4 + 10 %.
    d = p06.decide(P, p06.State(), 100.0, 0.9, 4, pilots)
    assert d.kill == () and d.state.over_since == 100.0
    d = p06.decide(P, d.state, 219.0, 0.9, 4, pilots)
    assert d.kill == ()
    d = p06.decide(P, d.state, 220.0, 0.9, 4, pilots)
    assert d.kill == ("young",) and d.state.last_kill == 220.0
    assert d.launch == 0  # grace_spawn starts with the kill
    # Still over at the next loop (1/4 + 10 %): the next one goes, one per loop.
    d2 = p06.decide(P, d.state, 250.0, 0.9, 4, pilots[:1])
    assert d2.kill == ("old",)


def test_no_launch_during_grace_spawn_and_the_clock_resets_under_the_line() -> None:
    state = p06.State(over_since=None, last_kill=100.0)
    assert p06.decide(P, state, 159.0, 0.0, 2, []).launch == 0
    assert p06.decide(P, state, 160.0, 0.0, 2, []).launch == 1
    over = p06.State(over_since=50.0)
    assert p06.decide(P, over, 60.0, 0.1, 2, [p06.Pilot("a", 0.0)]).state.over_since is None


def test_pilots_past_max_ttl_are_killed() -> None:
    params = p06.Params(max_docks=2, max_ttl=100)
    d = p06.decide(params, p06.State(), 150.0, 0.5, 2, [p06.Pilot("a", 0.0), p06.Pilot("b", 100)])
    assert d.kill == ("a",)


# --- figures ------------------------------------------------------------------------------------
def readings(
    t0: float, seconds: float, owner_rate: object, pilot_rate: object, dt: float = 0.005
) -> list[Fast]:
    """Cumulative counters sampled every dt; rates are functions of time since t0."""
    out = [Fast(t0, 0.0, 0.0)]
    t = t0
    while t < t0 + seconds - 1e-9:
        t += dt
        o = out[-1].owner + owner_rate(t - t0) * dt  # type: ignore[operator]
        p = out[-1].pilots + pilot_rate(t - t0) * dt  # type: ignore[operator]
        out.append(Fast(t, o, p))
    return out


def test_time_to_90_percent() -> None:
    alone = readings(0.0, 1.0, lambda t: 2.0 if t >= 0.03 else 0.0, lambda t: 0.0)
    assert fig.time_to_share(alone, 0.0, 1.0) == 0.0
    # Pilots keep 1 core for 100 ms after the owner arrives at 50 ms, then give it back.
    yielding = readings(
        0.0,
        1.0,
        lambda t: 0.0 if t < 0.05 else (1.0 if t < 0.15 else 2.0),
        lambda t: 2.0 if t < 0.05 else (1.0 if t < 0.15 else 0.0),
    )
    late = fig.time_to_share(yielding, 0.0, 1.0)
    assert late is not None and 0.09 <= late <= 0.12
    # Docker's default shares: a third stays with the pilots.
    shared = readings(0.0, 1.0, lambda t: 1.33, lambda t: 0.67)
    assert fig.time_to_share(shared, 0.0, 1.0) is None
    # An owner that never wants a core: no burst started.
    assert fig.time_to_share(readings(0.0, 1.0, lambda t: 0.2, lambda t: 0.0), 0.0, 1.0) is None


def test_an_owner_that_wants_no_more_is_not_denied_anything() -> None:
    # stress-ng starting: one core busy, the pilots on the other, the owner never waiting.
    starting = readings(0.0, 0.2, lambda t: 1.0, lambda t: 1.0)
    assert fig.time_to_share(starting, 0.0, 0.2) is None  # without PSI: taken for a denial
    stalls = [Fast(f.t, f.owner, f.pilots, 0.0) for f in starting]
    assert fig.time_to_share(stalls, 0.0, 0.2) == 0.0
    # Default shares: the owner's tasks wait half the time; the pilots keep a third.
    waiting = [Fast(f.t, f.owner, f.pilots, f.t * 0.5) for f in starting]
    assert fig.time_to_share(waiting, 0.0, 0.2) is None
    w = fig.Window(0.0, 0.01, 1.9, 0.0, 0.8)  # another tenant delays it, the pilots do not
    assert fig.owner_has_it(w)


def test_psi_totals_are_read() -> None:
    text = "some avg10=1.00 avg60=0.50 avg300=0.1 total=2500000\nfull avg10=0 total=7\n"
    assert host.parse_stall(text) == 2500000.0
    assert host.parse_stall("full avg10=0 total=7\n") is None


def test_run_queue_waits_add_up_across_tasks_that_come_and_go() -> None:
    assert host.parse_run_delay("195153119 9069474 351\n") == 9069474
    delays = host.RunDelay()
    assert delays.update({}) == [] and delays.total_ns == 0
    assert delays.update({10: 1000, 11: 500}) == [1000, 500]  # first seen: all of it
    assert delays.update({10: 1300, 11: 500}) == [300]  # growth only
    # 11 ended (its waits stay counted), 12 started since the last reading.
    assert delays.update({10: 1400, 12: 200}) == [100, 200]
    # 11 comes back as a new task reusing the tid: counted whole, not subtracted.
    assert delays.update({10: 1400, 11: 300, 12: 200}) == [300]
    # 12 is reused with a smaller run_delay than remembered: a new task, counted whole.
    assert delays.update({10: 1400, 11: 300, 12: 50}) == [50]
    assert delays.total_ns == 2450


def test_a_wait_is_placed_before_the_reading_that_saw_it_end() -> None:
    times = [0.0, 0.005, 0.010, 0.015, 0.020]
    # A 12-ms wait seen at 0.020 began at 0.008; a 1-ms one seen at 0.005.
    placed = host.backdated(times, [[], [0.001], [], [], [0.012]])
    assert placed == pytest.approx([0.0, 0.001, 0.003, 0.008, 0.013])
    # Two tasks' waits add up; one older than every reading fills them all.
    placed = host.backdated(times[:3], [[], [], [0.003, 0.030]])
    assert placed == pytest.approx([0.020, 0.025, 0.033])
    assert host.backdated([], []) == []


def test_the_stall_source_follows_what_the_host_has() -> None:
    base = ("/cg/o/cpuacct.usage", 1e-9)
    psi = host.OwnerCgroup(("/cg/o",), *base, "/u/o/cpu.pressure", "x", "/cg/o/tasks")
    assert (psi.stall_source, psi.sampler_stall) == ("psi", "/u/o/cpu.pressure")
    sched = host.OwnerCgroup(("/cg/o",), *base, None, "x", "/cg/o/tasks")
    assert (sched.stall_source, sched.sampler_stall) == ("schedstat", "tasks:/cg/o/tasks")
    none = host.OwnerCgroup(("/cg/o",), *base, None, "x", None)
    assert (none.stall_source, none.sampler_stall) == (None, "-")


def test_counters_are_read_between_readings() -> None:
    fast = [Fast(1.0, 0.0, 10.0), Fast(2.0, 1.0, 12.0)]
    assert fig.counter_at(fast, 1.5, "pilots") == pytest.approx(11.0)
    assert fig.counter_at(fast, 0.0, "owner") == 0.0
    assert fig.counter_at(fast, 9.0, "owner") == 1.0
    assert fig.counter_at([], 1.0, "owner") == 0.0
    lines = fig.binned(readings(0.0, 2.0, lambda t: 1.0, lambda t: 0.5), 0.0, 2.0, 0.5)
    assert len(lines) == 4
    assert all(o == pytest.approx(1.0) and p == pytest.approx(0.5) for _, o, p in lines)


def c(t: float, memory: int, **pilots: tuple[float, bool]) -> Census:
    return Census(t, memory, dict(pilots))


def test_pilots_stopped_and_their_cpu_lost() -> None:
    slow = [
        c(0.0, 0, a=(1.0, False), b=(1.0, False)),
        c(1.0, 0, a=(2.0, False), b=(2.0, True)),
        c(2.0, 0, a=(3.0, False)),  # b stopped, having used 2.0
        c(3.0, 0, a=(0.5, False)),  # a restarted in place (Docker's restart policy)
        c(9.0, 0),  # after the trace: not counted
    ]
    stopped, lost = fig.pilot_losses(slow, 0.5, 5.0)
    assert stopped == 2 and lost == pytest.approx(5.0)
    assert slow[1].frozen == 1 and slow[1].running == 1


def test_memory_freed_after_a_hog_starts() -> None:
    g = 2**30
    slow = [c(0.0, g), c(1.0, g), c(1.5, g // 2), c(2.0, g // 20), c(3.0, 0)]
    held, freed = fig.memory_freed(slow, 1.0, 5.0)
    assert held == g and freed == pytest.approx(1.0)
    assert fig.memory_freed(slow[:3], 1.0, 5.0) == (g, None)
    assert fig.memory_freed([c(0.0, 1024)], 0.5, 5.0) == (1024, 0.0)


def segment(name: str, pilot_rate: float, matrix: float, idle: float = 10.0) -> Segment:
    steps = [
        StepRecord(0, tr.Step("idle", "-", 5.0), 0.0, 5.0),
        StepRecord(1, tr.Step("burst", "matrix", 5.0, 5.0), 5.0, 10.0, {"matrix": matrix}),
    ]
    fast = readings(0.0, 10.0, lambda t: 2.0 if t >= 5 else 0.0, lambda t: pilot_rate)
    return Segment(name, 0, f"/p-{name}", 0.0, 10.0, idle, 1.0, steps, fast, [c(0.0, 0)])


def test_summaries_against_the_baseline_of_the_round() -> None:
    sums = fig.summarise([segment("none", 0.0, 100.0), segment("x", 1.0, 80.0)])
    assert sums["none"].median_harvest() == 0.0
    assert sums["x"].median_harvest() == pytest.approx(1.0)  # 10 CPU-s of 10 idle
    assert sums["x"].median_slowdown("matrix") == pytest.approx(1.25)
    assert sums["x"].cpu_slowdown(report.CPU_LABELS) == pytest.approx(1.25)
    assert math.isnan(sums["x"].median_slowdown("stream"))


def test_latency_percentiles_count_a_burst_that_never_got_there_as_infinite() -> None:
    s = fig.Summary("x", latencies=[0.0, 0.01, None])
    assert s.latency(50) == 0.01 and s.latency(95) is None
    assert math.isnan(fig.Summary("y").latency(95))  # type: ignore[arg-type]


def test_oom_victims_are_told_apart() -> None:
    seg = segment("x", 0.0, 1.0)
    hog = StepRecord(2, tr.Step("hog", "vm", 1.0, 10.0), 10.0, 11.0, {"vm": 1.0})
    hog.oom = [
        host.OomKill("dd", 1, "/p-x/abc"),
        host.OomKill("stress-ng-vm", 2, "/"),
        host.OomKill("qemu", 3, "/"),
    ]
    hog.oom_kills, hog.swap_out = 3, 7
    seg.steps.append(hog)
    s = fig.summarise([seg])["x"]
    assert (s.oom_pilot, s.oom_owner, s.oom_other, s.oom_counter, s.swap_out) == (1, 1, 1, 3, 7)


# --- the sampler's protocol ---------------------------------------------------------------------
def test_samples_parse() -> None:
    fast, slow = parse_samples(
        "f 1.0 0.5 0.25 nan\ns 1.0 4096 aa:1.5:R bb:2.0:F\nf 1.005 0.51 0.26 0.125\ns 1.1 0\n\n"
    )
    assert fast[1] == Fast(1.005, 0.51, 0.26, 0.125)
    assert (fast[0].t, fast[0].owner, fast[0].pilots) == (1.0, 0.5, 0.25)
    assert math.isnan(fast[0].stall)
    assert slow[0].pilots == {"aa": (1.5, False), "bb": (2.0, True)}
    assert slow[1].pilots == {} and slow[1].memory == 0


@pytest.mark.parametrize("stall", ["-", "tasks"])
def test_the_sampler_reads_until_told_to_stop(stall: str, tmp_path: Path) -> None:
    usage = tmp_path / "cpu.stat"
    usage.write_text("usage_usec 1500000\nuser_usec 1\n")
    out = tmp_path / "samples.txt"
    if stall == "tasks":  # this test's own process and one that is gone stand for the owner
        if not host.has_schedstat():
            pytest.skip("no /proc/<tid>/schedstat on this kernel")
        gone = subprocess.Popen(["true"])
        gone.wait()
        tasks = tmp_path / "tasks"
        tasks.write_text(f"{os.getpid()}\n{gone.pid}\n")
        stall = f"tasks:{tasks}"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.owner_sampler", str(out), str(usage), "1e-06", stall),
            *("/planctond-owner-bench-test-none", "cgroupfs"),
        ],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 10
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(max(1.0, deadline - time.monotonic())) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    fast, slow = parse_samples(out.read_text())
    assert len(fast) >= 10 and slow
    assert {f.owner for f in fast} == {1.5} and {f.pilots for f in fast} == {0.0}
    assert slow[0].pilots == {}
    stalls = [f.stall for f in fast]
    if stall == "-":
        assert all(math.isnan(x) for x in stalls)
    else:  # cumulative seconds, never going back
        assert all(0.0 <= a <= b for a, b in itertools.pairwise(stalls))


# --- contenders ---------------------------------------------------------------------------------
def test_the_pilot_spins_holds_memory_and_leaves_on_sigterm() -> None:
    argv = contenders.pilot_command(300 * 2**20)
    assert argv[:2] == ["sh", "-c"]
    assert "trap 'exit 0' TERM" in argv[2] and "bs=300M count=1 iflag=fullblock" in argv[2]
    assert argv[2].endswith("while :; do :; done")
    assert "dd" not in contenders.pilot_command(0)[2]


@pytest.mark.parametrize("name", [s.name for s in contenders.CONTENDERS if s.kind == "planctond"])
def test_every_planctond_contender_is_a_config_planctond_accepts(name: str, tmp_path: Path) -> None:
    text = contenders.planctond_config(
        contenders.BY_NAME[name],
        parent="/planctond-owner-bench-t",
        run_id="r1",
        hold_bytes=512 * 2**20,
        labels={contenders.CONTENDER_LABEL: "t"},
    )
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = load_config(str(path), missing_ok=False)
    pool = cfg.pools[0]
    assert cfg.docker.cgroup_parent == "/planctond-owner-bench-t"
    assert pool.memory == 512 * 2**20 + contenders.MEMORY_SLACK
    assert dict(pool.labels)["planctond.bench.run"] == "r1"
    if name == "planctond":  # the defaults: nothing about the policy is set
        assert cfg.owner == type(cfg.owner)()
        assert cfg.tick == 10.0 and pool.max_pilots == "ncpus"
        assert cfg.owner.give_way.value == "pressure"
    if name == "planctond-usage":
        assert cfg.owner.give_way.value == "usage" and pool.max_pilots == "max(1, ncpus - 2)"
        assert cfg.owner.reserve == 0.5


def test_overlays_merge_key_by_key() -> None:
    base = {"a": {"b": 1, "c": 2}, "d": [1]}
    assert contenders.merged(base, {"a": {"c": 3}, "d": [2]}) == {"a": {"b": 1, "c": 3}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}


# --- the report ---------------------------------------------------------------------------------
def _summary(name: str, harvest: float, slow: float, p95: float | None) -> fig.Summary:
    s = fig.Summary(name, harvest=[harvest], pilot_cpu_s=[harvest * 10], idle_s=[10.0])
    s.slow = {k: [slow] for k in ("matrix", "cache", "stream", "mix", "half", "hog")}
    s.latencies = [0.0, p95]
    return s


def test_the_report_says_where_planctond_loses_and_which_aims_it_meets() -> None:
    sums = {
        "none": _summary("none", 0.0, 1.0, 0.0),
        "docker": _summary("docker", 1.6, 1.9, None),
        "planctond": _summary("planctond", 0.4, 1.02, 0.01),
    }
    lost = report.losses("planctond", sums)
    assert lost == [
        "`docker` harvests more: 160 % (over 100 %: CPU taken from the owner) against 40 %."
    ]
    got = {a: (v, met) for a, v, met in report.aims(sums["planctond"])}
    assert got["harvest >= 95 % of the idle CPU"] == ("40 %", "**not met**")
    assert got["matrix <= 1.05x"] == ("1.02x", "met")
    assert got["owner >= 90 % of the CPU within 50 ms (p95)"] == ("10 ms", "met")
    assert got["hog: no swap, the owner never OOM-killed"][1] == "met"
    untested = report.aims(sums["planctond"], memory_tested=False)[-1]
    assert untested[2] == "not tested (no ballast)"
    machine = report.Machine(
        "2026-01-01", "cpu", 2, 2**34, 2**31, 0, "k", "cgroup v1", "20", "3.11", "s", "c",
        "0 0 0", "1 1 1", "e", "a counter", "psi", 60.0, True,
    )  # fmt: skip
    params = report.Params(1, 0.3, True, 2**29, 2**27, 5.0, "make bench-owner-short")
    specs = [contenders.BY_NAME[n] for n in ("none", "docker", "planctond")]
    text = report.render(machine, params, tr.default_trace(), specs, sums, ["p.png"], ["a note"])
    assert text.startswith(report.SECTION + "\n")
    assert "**Short mode**" in text and "![p.png](p.png)" in text and "- a note" in text
    assert "**planctond**: `docker` harvests more" in text
    assert "| docker | 0 ms | never (some bursts) | 1 of 2 |" in text
    assert "(PSI `some` of its cgroup: the time at least one of them waited)" in text
    no_psi = report.render(
        dataclasses.replace(machine, owner_stall="schedstat"),
        *(params, tr.default_trace(), specs, sums, [], []),
    )
    assert "waited for a CPU (their run-queue waits summed: `run_delay` of /proc/<tid>/" in no_psi
    assert "the second test is stricter here than with PSI, never laxer" in no_psi
    assert "PSI `some` of its cgroup" not in no_psi
    unmeasured = report.stall_wording(None)
    assert "only the first test is used" in unmeasured[1]


def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench.owner_plot import FRONTIER, plot_name, write_plots

    segs = [segment("none", 0.0, 100.0), segment("docker", 1.0, 50.0)]
    segs[1].slow = [c(0.0, 0, a=(0.0, False)), c(5.0, 0, a=(1.0, True))]
    names = write_plots(tmp_path, segs, fig.summarise(segs), tr.default_trace(), 2)
    assert names == [FRONTIER, plot_name("none"), plot_name("docker")]
    assert all((tmp_path / n).read_bytes()[:4] == b"\x89PNG" for n in names)
