"""A process's own CPU time and peak memory, straight from /proc.

Why /proc and not psutil: the figures must be the kernel's, read the same way for every
contender, and `/proc/<pid>/stat` of a thread-group leader already sums all of its threads
(planctond's docker-py worker threads included).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_HZ = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    at: float  # time.monotonic() when read
    cpu_seconds: float  # user + system, all threads


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        raw = fh.read()
    # The command name (field 2) may hold spaces or parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _HZ


def status_kib(pid: int, key: str) -> int:
    """A `VmHWM`/`VmRSS`-style line of /proc/<pid>/status, in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def percent_of_core(a: CpuSample, b: CpuSample) -> float:
    elapsed = b.at - a.at
    return 100.0 * (b.cpu_seconds - a.cpu_seconds) / elapsed if elapsed > 0 else 0.0
