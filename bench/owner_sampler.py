"""The benchmark's eyes during a trace: the owner's and the pilots' CPU counters every few
milliseconds, and the pilots themselves (alive, frozen, their CPU, their memory) every 100 ms.

Why a process of its own, at SCHED_FIFO: "the owner has 90 % of the CPU within 50 ms" needs
readings a few milliseconds apart while the owner loads every core. A thread of the benchmark
would wait for Python's GIL behind threads the owner starves; a real-time process wakes on time
and costs the owner about 1 % of one core (four small file reads per wake-up, plus one per owner
thread where the stall comes from schedstat). Every reading carries its own CLOCK_MONOTONIC
time, so a late wake-up makes a window longer, never wrong.

    python3 -m bench.owner_sampler OUT OWNER_USAGE_FILE SCALE OWNER_STALL PARENT DRIVER [PERIOD]

OWNER_STALL says where the owner's CPU stall comes from:
  <path>        its cgroup's PSI file (cpu.pressure): `some`, the time at least one owner task
                waited for a CPU
  tasks:<path>  its cgroup's `tasks` (v1) or `cgroup.threads` (v2), where the host has no PSI
                for it: the owner's tasks' run-queue waits summed (/proc/<tid>/schedstat's
                run_delay, see owner_host.RunDelay), each wait placed just before the reading
                that saw it end (at most one period late). That is never less than PSI's
                `some`, so the figures' "the owner hardly waited" test is stricter there,
                never laxer.
  -             not measured

Writes, when it gets SIGTERM:
  f <t> <owner CPU-s> <pilots CPU-s> <owner's cumulative CPU stall s, or nan>
  s <t> <pilots' memory bytes> [<container id>:<CPU-s>:<R|F> ...]
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from types import FrameType

from bench.owner_host import (
    TASKS_PREFIX,
    RunDelay,
    backdated,
    read_run_delays,
    read_stall,
    read_usage,
)
from planctond.sensors.cgroups import CgroupLayout, PilotCgroups

SLOW_EVERY = 20  # census every this many fast readings (100 ms at the default period)
DEFAULT_PERIOD = 0.005


def _frozen(layout: CgroupLayout, pilots: PilotCgroups, name: str) -> bool:
    if layout.version == 2:
        base = pilots.parent_path("cpu")
        path = os.path.join(base or "", name, "cgroup.events")
        key, want = "frozen", "1"
    else:
        base = pilots.parent_path("freezer")
        path = os.path.join(base or "", name, "freezer.state")
        key, want = "", "FROZEN"
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except OSError:
        return False
    if not key:
        return text.strip() == want
    return any(line.split() == [key, want] for line in text.splitlines())


class Stalls:
    """The owner's cumulative CPU stall at each fast reading, in seconds (None: not measured
    or not readable then). Kept apart from the other columns because, read from schedstat, a
    reading's value is only known once later readings have seen the waits going on at it
    (owner_host.backdated): the values are settled when the sampler stops."""

    def __init__(self, arg: str) -> None:
        self._psi = None if arg == "-" or arg.startswith(TASKS_PREFIX) else arg
        self._tasks = arg.removeprefix(TASKS_PREFIX) if arg.startswith(TASKS_PREFIX) else None
        self._delays = RunDelay()
        self._read: list[float | None] = []
        self._times: list[float] = []
        self._waits: list[list[float]] = []

    def read(self, now: float) -> None:
        if self._tasks is None:
            self._read.append(None if self._psi is None else read_stall(self._psi, 1e-6))
            return
        reading = read_run_delays(self._tasks)
        self._times.append(now)
        self._waits.append(
            [] if reading is None else [ns * 1e-9 for ns in self._delays.update(reading)]
        )
        self._read.append(None if reading is None else 0.0)

    def values(self) -> list[float | None]:
        if self._tasks is None:
            return self._read
        placed = backdated(self._times, self._waits)
        return [None if r is None else p for r, p in zip(self._read, placed, strict=True)]


def census(layout: CgroupLayout, pilots: PilotCgroups) -> str:
    """One `s` line: the pilots' memory, and each pilot cgroup under the parent."""
    base = pilots.parent_path("cpuacct")
    memory = pilots.memory_bytes() or 0
    parts = [f"s {time.monotonic():.6f} {memory}"]
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(base or ""), key=lambda e: e.name):
            if not entry.is_dir(follow_symlinks=False):
                continue
            cid = entry.name.removeprefix("docker-").removesuffix(".scope")
            if len(cid) != 64:
                continue
            cpu = pilots.container_cpu_seconds(cid)
            if cpu is None:
                continue
            state = "F" if _frozen(layout, pilots, entry.name) else "R"
            parts.append(f"{cid}:{cpu:.6f}:{state}")
    return " ".join(parts)


def main(argv: list[str]) -> int:
    out_path, owner_file, scale_text, stall_arg, parent, driver = argv[:6]
    period = float(argv[6]) if len(argv) > 6 else DEFAULT_PERIOD
    scale = float(scale_text)
    layout = CgroupLayout.detect()
    stalls = Stalls(stall_arg)
    pilots = PilotCgroups(layout, parent, driver)
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    done = False

    def stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal done
        done = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lines: list[str | tuple[float, float, float]] = []  # `s` lines, and `f` readings but the stall
    i = 0
    next_at = time.monotonic()
    while not done:
        now = time.monotonic()
        try:
            owner = read_usage(owner_file, scale)
        except OSError:
            owner = float("nan")
        # None until a pilot ran: the parent does not exist yet.
        pilot = pilots.total_cpu_seconds() or 0.0
        stalls.read(now)
        lines.append((now, owner, pilot))
        if i % SLOW_EVERY == 0:
            lines.append(census(layout, pilots))
        i += 1
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    stall = iter(stalls.values())
    text = []
    for line in lines:
        if isinstance(line, str):
            text.append(line)
            continue
        now, owner, pilot = line
        value = next(stall)
        text.append(f"f {now:.6f} {owner:.9f} {pilot:.9f} {'nan' if value is None else value}")
    with open(out_path, "w", encoding="ascii") as f:
        f.write("\n".join(text) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
