"""The benchmark's eyes during a trace: the owner's and the pilots' CPU counters every few
milliseconds, and the pilots themselves (alive, frozen, their CPU, their memory) every 100 ms.

Why a process of its own, at SCHED_FIFO: "the owner has 90 % of the CPU within 50 ms" needs
readings a few milliseconds apart while the owner loads every core. A thread of the benchmark
would wait for Python's GIL behind threads the owner starves; a real-time process wakes on time
and costs the owner about 1 % of one core (four small file reads per wake-up). Every reading
carries its own CLOCK_MONOTONIC time, so a late wake-up makes a window longer, never wrong.

    python3 -m bench.owner_sampler OUT OWNER_USAGE_FILE SCALE OWNER_PRESSURE|- PARENT DRIVER [PERIOD]

Writes, when it gets SIGTERM:
  f <t> <owner CPU-s> <pilots CPU-s> <owner's CPU stall s, or nan>
  s <t> <pilots' memory bytes> [<container id>:<CPU-s>:<R|F> ...]
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from types import FrameType

from bench.owner_host import read_stall, read_usage
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
    out_path, owner_file, scale_text, pressure, parent, driver = argv[:6]
    period = float(argv[6]) if len(argv) > 6 else DEFAULT_PERIOD
    scale = float(scale_text)
    layout = CgroupLayout.detect()
    pilots = PilotCgroups(layout, parent, driver)
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    done = False

    def stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal done
        done = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    lines: list[str] = []
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
        stall = read_stall(pressure, 1e-6) if pressure != "-" else None
        lines.append(f"f {now:.6f} {owner:.9f} {pilot:.9f} {stall if stall is not None else 'nan'}")
        if i % SLOW_EVERY == 0:
            lines.append(census(layout, pilots))
        i += 1
        next_at += period
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()
    with open(out_path, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
