"""planctond's owner-impact benchmark (issue 12): what the pilots harvest against what the owner
loses, for planctond and for what a site would run instead. Results in bench/RESULTS.md
("## Owner impact") with PNG plots beside it.

    sudo /usr/bin/python3 -m bench.owner            (or `make bench-owner`: ~18 min on 2 cores)
    sudo /usr/bin/python3 -m bench.owner --short    (or `make bench-owner-short`: < 3 min)

One run: a private dockerd (the test suite's helper) and, for each round, every contender in
turn (the order rotates round by round, so a shared machine's drift hits them alike) replaying
the same owner trace (bench/owner_trace.py): stress-ng and cyclictest on every core, outside any
container. Time: rounds x contenders x (trace + about 6 s to start and remove a contender); the
full mode is 3 x 7 x (43 + 6) s. --short is one round of the trace scaled down, written to
/tmp/planctond-bench-owner-short/ so the committed results stay as they are.

The memory hog needs a host whose free RAM it can take in a few seconds; filling RAM by touching
it runs at well under 1 GB/s in a VM. So the full mode first makes the host small: it reserves
hugepages until about --host-memory (2G) stays available (restored at exit, and by the next run
if this one is killed outright). That changes the whole machine: run the full mode on a machine
nobody else uses. --short takes no ballast (--host-memory none) and caps the hog and the
pilots' memory instead, so there its memory figures only show that the machinery works.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench import owner_contenders as contenders
from bench import owner_host as host
from bench.harness import PYTHON, REPO, Engine, open_engine, remove_labelled
from bench.owner_figures import summarise
from bench.owner_model import Census, Segment, StepRecord, parse_samples
from bench.owner_plot import write_plots
from bench.owner_report import SECTION, Machine, Params, render
from bench.owner_sampler import census
from bench.owner_trace import Trace, default_trace, parse_trace, scale
from bench.owner_workloads import OwnerRun, make_run
from bench.report import write_section
from planctond.config.units import parse_size
from planctond.sensors.cgroups import CgroupLayout, PilotCgroups

HOG_FRACTION = 0.80  # of the host's available memory (after the ballast)
# Per pilot, of the same: with a pilot per core on 2 cores they hold 40 %, and an owner's
# cache-sized buffers (stress-ng --cache takes the L3 it reads, 480 MiB on a large server) still
# leave reserve_memory free; the hog's 80 % then cannot fit beside them.
HOLD_FRACTION = 0.20
# Seconds a contender gets to bring its pilots up before the trace starts (short mode: 5): on a
# busy host pilots under an idle cgroup may not get the CPU to start at all.
LEAD_MAX = 15.0
LEAD_MAX_SHORT = 5.0
SETTLE = 1.0  # seconds between two replays, for dockerd to finish tearing down
SHORT_OUT = Path("/tmp/planctond-bench-owner-short")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Interrupted(Exception):
    """SIGTERM, turned into an exception so every cleanup path runs."""


def _on_term(_sig: int, _frame: FrameType | None) -> None:
    raise Interrupted


@dataclass
class Run:
    args: argparse.Namespace
    trace: Trace
    bench: contenders.Bench
    owner: host.OwnerCgroup
    kmsg: host.KernelLog
    hog_bytes: int
    prefix: tuple[str, ...]
    segments: list[Segment] = field(default_factory=list)
    live: list[OwnerRun] = field(default_factory=list)  # owner runs to kill on any exit
    running: contenders.Running | None = None


# --- one replay ----------------------------------------------------------------------------------
def _census(run: Run, parent: str) -> Census:
    pilots = PilotCgroups(run.bench.layout, parent, run.bench.driver)
    _, slow = parse_samples(census(run.bench.layout, pilots))
    return slow[0]


def wait_ready(run: Run, spec: contenders.Spec, parent: str) -> None:
    """Until the contender's pilots are up and hold their memory, and their number stayed the
    same for a second; at most --lead-max (what is not up by then is the contender's loss)."""
    if spec.kind == "none":
        time.sleep(SETTLE)
        return
    deadline = time.monotonic() + run.args.lead_max
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        c = _census(run, parent)
        n = len(c.pilots)
        if n != count:
            count, since = n, time.monotonic()
        full = c.memory >= 0.9 * n * run.bench.hold_bytes
        if n > 0 and full and time.monotonic() - since >= 1.0:
            return
        time.sleep(0.25)


def _hold_oom_adj(run: Run, until: threading.Event) -> None:
    while not until.wait(0.05):
        host.reset_oom_adj(run.owner.pids())


def _finish_hog(run: Run, rec: StepRecord, vm_before: dict[str, int]) -> None:
    after = host.vmstat()
    rec.swap_in = after["pswpin"] - vm_before["pswpin"]
    rec.swap_out = after["pswpout"] - vm_before["pswpout"]
    rec.oom_kills = after["oom_kill"] - vm_before["oom_kill"]
    rec.oom = host.parse_oom_kills(run.kmsg.read())


def replay(run: Run, seg: Segment) -> None:
    """The trace, step by step on the monotonic clock; each tool stopped at its step's end."""
    ncpus = run.bench.ncpus
    stepdir = run.bench.workdir / f"{seg.contender}-r{seg.round}"
    stepdir.mkdir()
    hog: tuple[StepRecord, dict[str, int]] | None = None
    t0 = seg.t0
    for index, step in enumerate(run.trace.steps):
        delay = t0 + step.start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rec = StepRecord(index, step, started=time.monotonic())
        seg.steps.append(rec)
        if hog is not None and step.kind != "idle":
            _finish_hog(run, *hog)
            hog = None
        owner_run = make_run(step, index, ncpus, stepdir, run.hog_bytes)
        if owner_run is None:
            time.sleep(max(0.0, t0 + step.end - time.monotonic()))
            rec.stopped = time.monotonic()
            continue
        stop_adj = threading.Event()
        if step.kind == "hog":
            run.kmsg.read()  # only what this hog causes
            hog = (rec, host.vmstat())
            rec.hog_bytes = run.hog_bytes
            threading.Thread(target=_hold_oom_adj, args=(run, stop_adj), daemon=True).start()
        run.live.append(owner_run)
        owner_run.start(run.owner.procs_files, run.prefix)
        rec.started = owner_run.started
        time.sleep(max(0.0, t0 + step.end - time.monotonic()))
        owner_run.stop()
        stop_adj.set()
        run.live.remove(owner_run)
        rec.stopped = owner_run.stopped
        rec.returncode = owner_run.returncode
        rec.rates = owner_run.rates()
        rec.latency = owner_run.latency()
        if step.kind != "latency" and not rec.rates:
            seg.notes.append(
                f"{seg.contender} round {seg.round + 1}: step {index} ({step.workload}) reported "
                f"nothing (exit {owner_run.returncode}): {owner_run.output()[-300:]!r}"
            )
    if hog is not None:
        _finish_hog(run, *hog)


def run_segment(run: Run, spec: contenders.Spec, rnd: int) -> Segment:
    tag = f"{run.bench.run_id}-r{rnd}-{spec.name}"
    parent = f"/planctond-owner-bench-{tag}"
    samples = run.bench.workdir / f"samples-{tag}.txt"
    sampler = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "bench.owner_sampler",
            str(samples),
            run.owner.usage_file,
            repr(run.owner.usage_scale),
            run.owner.sampler_stall,
            parent,
            run.bench.driver,
        ],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    began = time.monotonic()
    seg = Segment(spec.name, rnd, parent, 0.0, 0.0, 0.0, 0.0)
    try:
        run.running = contenders.start(spec, run.bench, parent, tag)
        wait_ready(run, spec, parent)
        seg.t0 = time.monotonic()
        seg.lead_s = seg.t0 - began
        idle0 = host.idle_seconds()
        replay(run, seg)
        seg.t1 = time.monotonic()
        seg.idle_s = host.idle_seconds() - idle0
    finally:
        with contextlib.suppress(ProcessLookupError):
            sampler.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sampler.wait(20)
        if run.running is not None:
            seg.notes += run.running.stop()
            run.running = None
    seg.fast, seg.slow = parse_samples(samples.read_text() if samples.exists() else "")
    return seg


# --- the whole run -------------------------------------------------------------------------------
def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--short", action="store_true", help="one round, trace scaled down (< 3 min)")
    ap.add_argument("--rounds", type=int, help="replays per contender (full 3, short 1)")
    ap.add_argument("--scale", type=float, help="trace durations times this (full 1, short 0.3)")
    ap.add_argument("--trace", help="replay this trace table instead of bench/owner_trace.py's")
    ap.add_argument("--contenders", help="comma-separated subset (the baseline always runs)")
    ap.add_argument("--host-memory", help="ballast down to this much free RAM, or none")
    ap.add_argument("--hog-max", help="cap on the memory hog (short: 512M)")
    ap.add_argument("--hold-max", help="cap on each pilot's memory (short: 128M)")
    ap.add_argument("--lead-max", type=float, help="seconds to wait for pilots (15, short 5)")
    ap.add_argument("--docker-url", help="use this engine instead of a private dockerd")
    ap.add_argument("--out", help="directory for RESULTS.md and the plots (default bench/)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    short = args.short
    args.rounds = args.rounds or (1 if short else 3)
    args.scale = args.scale or (0.3 if short else 1.0)
    args.host_memory = args.host_memory or ("none" if short else "2G")
    args.hog_max = args.hog_max or ("512M" if short else None)
    args.hold_max = args.hold_max or ("128M" if short else None)
    args.lead_max = args.lead_max or (LEAD_MAX_SHORT if short else LEAD_MAX)
    args.out = Path(args.out or (SHORT_OUT if short else REPO / "bench"))
    return args


def _size(text: str | None) -> int | None:
    if text is None or text.lower() == "none":
        return None
    return int(parse_size(text))


def _specs(args: argparse.Namespace) -> list[contenders.Spec]:
    if not args.contenders:
        return list(contenders.CONTENDERS)
    names = {n.strip() for n in args.contenders.split(",")} | {"none"}
    unknown = names - set(contenders.BY_NAME)
    if unknown:
        raise SystemExit(f"unknown contenders: {', '.join(sorted(unknown))}")
    return [s for s in contenders.CONTENDERS if s.name in names]


def _tool_version(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    return "?"


def _cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _load() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if os.geteuid() != 0:
        print("bench.owner needs root (dockerd, cgroups, the kernel log)", file=sys.stderr)
        return 1
    for tool in ("stress-ng", "cyclictest"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: run contrib/devstack/deps.sh", file=sys.stderr)
            return 1
    trace = parse_trace(Path(args.trace).read_text()) if args.trace else default_trace()
    trace = scale(trace, args.scale)
    specs = _specs(args)
    signal.signal(signal.SIGTERM, _on_term)
    began = time.monotonic()
    run_id = uuid.uuid4().hex[:10]
    workdir = Path(tempfile.mkdtemp(prefix="pbench-owner-", dir="/tmp"))
    layout = CgroupLayout.detect()
    load_before = _load()
    notes: list[str] = []
    stale = host.Ballast.restore_stale()
    if stale:
        notes.append(stale)
    engine: Engine | None = None
    ballast: host.Ballast | None = None
    owner: host.OwnerCgroup | None = None
    kmsg = host.KernelLog()
    api: Any = None
    run: Run | None = None
    try:
        import docker

        from tests.support.docker_engine import DIE_WITH_PARENT
        from tests.support.images import ensure_busybox

        engine = open_engine(args.docker_url, log)
        url = engine.url
        api = docker.APIClient(base_url=url, version="auto", timeout=120)
        ensure_busybox(url)
        info, version = api.info(), api.version()
        driver = str(info.get("CgroupDriver", "cgroupfs"))
        if driver != "cgroupfs":
            print(
                f"this benchmark makes cgroupfs parents; the engine uses {driver}", file=sys.stderr
            )
            return 2
        target = _size(args.host_memory)
        if target is not None:
            ballast = host.Ballast(target)
            available = ballast.take()
            log(f"memory ballast: {ballast.pages} hugepages; {available / 2**30:.2f} GiB available")
        else:
            available = host.meminfo()["MemAvailable"]
        hog = int(available * HOG_FRACTION)
        hold = int(available * HOLD_FRACTION)
        hog = min(hog, _size(args.hog_max) or hog)
        hold = min(hold, _size(args.hold_max) or hold)
        ncpus = os.cpu_count() or 1
        owner = host.OwnerCgroup.create(layout, f"planctond-owner-bench-{run_id}")
        bench = contenders.Bench(api, url, run_id, workdir, ncpus, hold, layout, driver)
        run = Run(args, trace, bench, owner, kmsg, hog, tuple(DIE_WITH_PARENT))
        log(
            f"trace {trace.seconds:.1f} s x {len(specs)} contenders x {args.rounds} rounds; "
            f"hog {hog / 2**30:.2f} GiB, pilots hold {hold / 2**30:.2f} GiB each"
        )
        for rnd in range(args.rounds):
            order = specs[rnd % len(specs) :] + specs[: rnd % len(specs)]
            for spec in order:
                seg = run_segment(run, spec, rnd)
                run.segments.append(seg)
                log(
                    f"round {rnd + 1} {spec.name}: lead {seg.lead_s:.1f} s, pilots "
                    f"{seg.fast[-1].pilots if seg.fast else 0:.1f} CPU-s, idle {seg.idle_s:.1f} s"
                )
                time.sleep(SETTLE)
        summaries = summarise(run.segments)
        machine = Machine(
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            cpu=_cpu_model(),
            nproc=ncpus,
            mem_total=host.meminfo()["MemTotal"],
            available=available,
            ballast_pages=ballast.pages if ballast else 0,
            kernel=platform.release(),
            cgroup=f"cgroup v{layout.version} ({driver} driver)",
            docker=str(version.get("Version", "?")),
            python=platform.python_version(),
            stress_ng=_tool_version(["stress-ng", "--version"]),
            cyclictest=_tool_version(["cyclictest", "--help"]),
            load_before=load_before,
            load_after=_load(),
            engine=engine.description,
            owner_counter=owner.how,
            owner_stall=owner.stall_source,
            duration_s=time.monotonic() - began,
            kmsg=kmsg.available,
        )
        params = Params(
            rounds=args.rounds,
            scale=args.scale,
            short=args.short,
            hog_bytes=hog,
            hold_bytes=hold,
            lead_max=args.lead_max,
            command="make bench-owner-short" if args.short else "make bench-owner",
        )
        for seg in run.segments:
            notes += seg.notes
        args.out.mkdir(parents=True, exist_ok=True)
        plots = write_plots(args.out, run.segments, summaries, trace, ncpus)
        text = render(machine, params, trace, specs, summaries, plots, notes)
        results = args.out / "RESULTS.md"
        write_section(results, text, SECTION)
        print(text)
        log(f"wrote {results} and {len(plots)} plots in {time.monotonic() - began:.0f} s")
        return 0
    except (KeyboardInterrupt, Interrupted):
        log("interrupted: cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if run is not None:
            for r in list(run.live):
                r.kill()
            if run.running is not None:
                with contextlib.suppress(Exception):
                    run.running.stop()
        if api is not None:
            with contextlib.suppress(Exception):
                remove_labelled(api, run_id)
            api.close()
        if owner is not None:
            with contextlib.suppress(OSError):
                owner.remove()
        if ballast is not None:
            ballast.release()
        kmsg.close()
        if engine is not None:
            engine.stop()
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
