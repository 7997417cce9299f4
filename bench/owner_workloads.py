"""The owner's workloads: well-known Debian tools (stress-ng, rt-tests' cyclictest), each
loading every core, and their own metrics read back.

Why these tools: their metrics (stress-ng's bogo ops per second of real time, cyclictest's
wake-up latency histogram) are what others publish too, and no home-made burner can be suspected
of being tuned to the benchmark. Each run is started at its trace step's start and stopped with
SIGINT at its end, which both tools answer by reporting what they did so far; their own timeout
(`-t`, `-D`) stays as a backstop, so a run the benchmark loses track of still ends.

The owner runs outside any container, as root like the benchmark, in the counting cgroup
(`owner_host.OwnerCgroup`); a wrapper shell puts itself there before it execs the tool, so
every process the tool forks is counted from its first instruction.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.owner_trace import Step

HIST_US = 20_000  # cyclictest histogram range: wake-ups later than this count as overflows
BACKSTOP = 30.0  # seconds a tool may outlive its step if nobody stops it
STOP_WAIT = 15.0  # seconds a tool has to report after SIGINT
# Process-per-core counts of the build-like mix: fork churn, compute, memory copies (a make -j
# three times the cores, the way builds oversubscribe).
MIX = ("fork", "cpu", "memcpy")
STREAM_L3 = "32M"  # the L3 size stress-ng's stream is told (see stress_argv)
# Enter the cgroups whose cgroup.procs files $0 lists, then become the tool (same pid, so
# signals reach it).
ENTER = 'for f in $0; do echo $$ > "$f" || exit 1; done; exec "$@"'


def stress_argv(
    step: Step, ncpus: int, *, yaml_path: str, hog_bytes: int, backstop: float = BACKSTOP
) -> list[str]:
    """stress-ng for a step; `hog_bytes` is the memory hog's total, split over its workers."""
    n = str(ncpus)
    stressors: list[str]
    if step.kind == "half":
        stressors = ["--cpu", str(max(1, ncpus // 2))]
    elif step.workload == "mix":
        stressors = [arg for name in MIX for arg in (f"--{name}", n)]
    elif step.workload == "vm":
        per = max(4096, hog_bytes // ncpus)
        # --oomable: an owner the OOM killer took stays dead (stress-ng would respawn it).
        stressors = ["--vm", n, "--vm-bytes", str(per), "--vm-keep", "--oomable"]
    elif step.workload == "stream":
        # stress-ng sizes its arrays from the L3 the CPU reports (4x it, three arrays a worker):
        # a VM on a large server reads a socket's 480 MiB and the arrays outgrow a small host,
        # or take longer to fill than the step lasts. A fixed size keeps the owner's working
        # set the same on every host: about 200 MiB a worker, beyond any one core's cache share.
        stressors = ["--stream", n, "--stream-l3-size", STREAM_L3]
    elif step.workload in ("matrix", "cache", "cpu"):
        stressors = [f"--{step.workload}", n]
    else:
        raise ValueError(f"no stress-ng workload for {step.kind} {step.workload}")
    timeout = math.ceil(step.seconds + backstop)
    return ["stress-ng", *stressors, "--metrics-brief", "--yaml", yaml_path, "-t", f"{timeout}s"]


def cyclictest_argv(step: Step, backstop: float = BACKSTOP) -> list[str]:
    """One measuring thread per core (-S), SCHED_OTHER like any interactive program (no -p)."""
    return [
        "cyclictest",
        "-q",
        "-S",
        "-i",
        "1000",
        "--policy=other",
        "-h",
        str(HIST_US),
        "-D",
        str(math.ceil(step.seconds + backstop)),
    ]


# --- their metrics -------------------------------------------------------------------------------
def parse_stress_yaml(text: str) -> dict[str, float]:
    """stressor -> bogo ops per second of real time, from `stress-ng --yaml`."""
    doc: Any = yaml.safe_load(text) if text.strip() else None
    out: dict[str, float] = {}
    if not isinstance(doc, dict):
        return out
    for item in doc.get("metrics") or []:
        if isinstance(item, dict) and "stressor" in item:
            rate = item.get("bogo-ops-per-second-real-time")
            if isinstance(rate, int | float):
                out[str(item["stressor"])] = float(rate)
    return out


@dataclass(frozen=True)
class Latency:
    """cyclictest's wake-up latencies of all threads together, microseconds."""

    samples: int
    p50: float
    p99: float
    max: float
    overflows: int  # later than the histogram's range (counted at the reported max)


def parse_cyclictest(text: str) -> Latency | None:
    """The histogram cyclictest prints with -h: `latency count count ...` lines, then `# Max
    Latencies` and `# Histogram Overflows`. Percentiles are read off the histogram (1 µs bins);
    overflows sit above every bin, at the largest latency cyclictest saw."""
    counts: dict[int, int] = {}
    maximum = 0
    overflows = 0
    for line in text.splitlines():
        if line.startswith("# Max Latencies:"):
            maximum = max(int(x) for x in line.split(":", 1)[1].split())
        elif line.startswith("# Histogram Overflows:"):
            overflows = sum(int(x) for x in line.split(":", 1)[1].split())
        elif line[:1].isdigit():
            words = line.split()
            n = sum(int(x) for x in words[1:])
            if n:
                counts[int(words[0])] = counts.get(int(words[0]), 0) + n
    total = sum(counts.values()) + overflows
    if total == 0:
        return None

    def quantile(q: float) -> float:
        rank = max(1, math.ceil(total * q))
        seen = 0
        for bucket in sorted(counts):
            seen += counts[bucket]
            if seen >= rank:
                return float(bucket)
        return float(max(maximum, HIST_US))

    return Latency(total, quantile(0.50), quantile(0.99), float(maximum), overflows)


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def slowdown(base: dict[str, float], other: dict[str, float]) -> float | None:
    """How many times slower `other` ran than `base`: the geometric mean over the stressors both
    report (the mix has several), each base rate / other rate. None if they share none."""
    common = [k for k in base if k in other and base[k] > 0 and other[k] > 0]
    return geomean([base[k] / other[k] for k in common]) if common else None


# --- running one -----------------------------------------------------------------------------------
@dataclass
class OwnerRun:
    """One tool run for one trace step."""

    step: Step
    argv: list[str]
    out_path: Path
    yaml_path: Path | None
    started: float = 0.0  # time.monotonic() just before the spawn: "the burst starts"
    stopped: float = 0.0
    returncode: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, procs_files: Sequence[str], prefix: Sequence[str]) -> None:
        out = self.out_path.open("wb")
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [*prefix, "sh", "-c", ENTER, " ".join(procs_files), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """SIGINT (the tool reports and exits), then SIGKILL to the group if it lingers."""
        if self.proc is None:
            return
        self.stopped = time.monotonic()
        self.signal(signal.SIGINT)
        try:
            self.returncode = self.proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.returncode = self.proc.wait(10)

    def kill(self) -> None:
        """For the exit paths: whatever state it is in, it is gone afterwards."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def output(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def rates(self) -> dict[str, float]:
        if self.yaml_path is None or not self.yaml_path.exists():
            return {}
        return parse_stress_yaml(self.yaml_path.read_text(errors="replace"))

    def latency(self) -> Latency | None:
        return parse_cyclictest(self.output())


def make_run(step: Step, index: int, ncpus: int, workdir: Path, hog_bytes: int) -> OwnerRun | None:
    """The run for a step (None for idle). Files are named by the step's index in the trace."""
    if step.kind == "idle":
        return None
    out = workdir / f"step{index:02d}-{step.workload}.out"
    if step.kind == "latency":
        return OwnerRun(step, cyclictest_argv(step), out, None)
    y = workdir / f"step{index:02d}-{step.workload}.yaml"
    return OwnerRun(step, stress_argv(step, ncpus, yaml_path=str(y), hog_bytes=hog_bytes), out, y)
