"""What the owner-impact benchmark reads from, and does to, the host itself.

- `OwnerCgroup`: cgroups that only *count* the owner's CPU and its CPU stalls (every process
  the owner's workloads fork), chosen so that they do not change how the scheduler treats the
  owner: on cgroup v1 a cpuacct hierarchy mounted apart from cpu, and the v2 tree a hybrid host
  mounts beside its controllers (no controller there). Only on a pure v2 host does the owner
  become a cpu group of its own, as a desktop user's session already is there (`user.slice`).
- `RunDelay`: the owner's CPU stall where its cgroup has no PSI, from its tasks' run-queue
  waits (/proc/<tid>/schedstat).
- /proc readers: idle CPU-seconds, MemAvailable, the swap and OOM counters, the kernel log's OOM
  kills (who was killed, and from which memory cgroup).
- `Ballast`: hugepages that take memory away from everyone at once, so that a host with a lot
  of RAM behaves like the small host the memory hog is meant for. Filling RAM by touching it
  runs at well under 1 GB/s in a VM; reserving hugepages takes milliseconds. It changes the
  whole machine, so it is restored on every exit path and a marker file lets the next run
  restore what a killed run left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from planctond.sensors.cgroups import CgroupLayout

USER_HZ = os.sysconf("SC_CLK_TCK")
HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
BALLAST_MARKER = Path("/run/planctond-bench-owner-ballast.json")
VMSTAT_KEYS = ("pswpin", "pswpout", "oom_kill")
TASKS_PREFIX = "tasks:"  # the sampler's OWNER_STALL for a tasks file rather than a PSI file
OOM_LINE = re.compile(
    r"oom-kill:.*?task_memcg=(?P<memcg>[^,]*),task=(?P<task>[^,]*),pid=(?P<pid>\d+)"
)


# --- the owner's CPU counter ---------------------------------------------------------------------
@dataclass(frozen=True)
class OwnerCgroup:
    """Where the owner's workloads are counted: CPU (`usage_file`) and their CPU stalls. The
    stalls tell an owner that waits for the CPU from one that does not want more of it yet (a
    tool still starting), which CPU use alone cannot. Where the host has the v2 tree with PSI,
    the stall is PSI's `some` (`pressure_file`: the time at least one owner task was runnable
    but not running); elsewhere it is the owner's tasks' (`tasks_file`) run-queue waits summed
    (`RunDelay`), which is never less than that."""

    dirs: tuple[str, ...]  # every cgroup directory the owner's processes are put in
    usage_file: str
    usage_scale: float  # seconds per unit of usage_file
    pressure_file: str | None
    how: str  # for the report
    # The owner's threads, one per line (None: this kernel keeps no /proc/<tid>/schedstat).
    tasks_file: str | None = None

    @property
    def procs_files(self) -> tuple[str, ...]:
        return tuple(os.path.join(d, "cgroup.procs") for d in self.dirs)

    @property
    def stall_source(self) -> str | None:
        """Where the owner's CPU stall comes from, for the report: "psi", "schedstat" or
        None (not measured)."""
        if self.pressure_file is not None:
            return "psi"
        return "schedstat" if self.tasks_file is not None else None

    @property
    def sampler_stall(self) -> str:
        """The sampler's OWNER_STALL argument (bench/owner_sampler.py)."""
        if self.pressure_file is not None:
            return self.pressure_file
        return "-" if self.tasks_file is None else TASKS_PREFIX + self.tasks_file

    @classmethod
    def create(cls, layout: CgroupLayout, name: str) -> OwnerCgroup:
        v2 = layout.root if layout.version == 2 else layout.unified
        v2_dir = None if v2 is None else os.path.join(v2, name)
        acct, cpu = layout.mount("cpuacct"), layout.mount("cpu")
        dirs: list[str] = []
        tasks = "cgroup.threads"  # v2: every thread of the cgroup's processes
        if layout.version == 1 and acct and cpu and os.path.realpath(acct) != os.path.realpath(cpu):
            dirs.append(os.path.join(acct, name))
            usage, scale = os.path.join(dirs[0], "cpuacct.usage"), 1e-9
            tasks = "tasks"
            how = "a cpuacct cgroup (cgroup v1, mounted apart from cpu: no effect on scheduling)"
        elif v2_dir is not None:
            usage, scale = os.path.join(v2_dir, "cpu.stat"), 1e-6
            how = (
                "a cgroup of the hybrid host's v2 tree (no controller there: no effect on "
                "scheduling)"
                if layout.version == 1
                else "a top-level cgroup (cgroup v2: the owner is a cpu group, as a desktop "
                "session is)"
            )
        else:
            raise RuntimeError("cgroup v1 with cpu and cpuacct mounted together: no owner counter")
        pressure = None
        if v2_dir is not None:
            dirs.append(v2_dir)
            pressure = os.path.join(v2_dir, "cpu.pressure")
        for d in dirs:
            os.makedirs(d, exist_ok=True)
        if pressure is not None and read_stall(pressure, 1e-6) is None:
            pressure = None  # a kernel without PSI (or psi=0)
        tasks_file = os.path.join(dirs[0], tasks) if has_schedstat() else None
        return cls(tuple(dirs), usage, scale, pressure, how, tasks_file)

    def seconds(self) -> float:
        return read_usage(self.usage_file, self.usage_scale)

    def pids(self) -> list[int]:
        try:
            with open(self.procs_files[0], encoding="ascii") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def remove(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        for d in self.dirs:
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as err:
                    if err.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


def parse_stall(text: str) -> float | None:
    """The `some` line's cumulative `total=` (microseconds) of a PSI file, or None."""
    for line in text.splitlines():
        if line.startswith("some "):
            for word in line.split():
                if word.startswith("total="):
                    return float(word[6:])
    return None


def read_stall(path: str, scale: float) -> float | None:
    try:
        with open(path, encoding="ascii") as f:
            value = parse_stall(f.read())
    except OSError:
        return None
    return None if value is None else value * scale


def parse_run_delay(text: str) -> int:
    """/proc/<tid>/schedstat's second field: nanoseconds the task spent runnable on a run
    queue, waiting for a CPU."""
    return int(text.split()[1])


def has_schedstat() -> bool:
    """A kernel without CONFIG_SCHED_INFO has no /proc/<tid>/schedstat."""
    try:
        with open("/proc/self/schedstat", encoding="ascii") as f:
            parse_run_delay(f.read())
    except (OSError, ValueError, IndexError):
        return False
    return True


def read_run_delays(tasks_file: str) -> dict[int, int] | None:
    """{tid: run_delay ns} of the tasks a cgroup's `tasks` (v1) or `cgroup.threads` (v2) file
    lists; None when that file cannot be read. A task that ends between the listing and its
    own read is left out: what it waited until the previous reading is already counted."""
    try:
        with open(tasks_file, "rb") as f:
            tids = f.read().split()
    except OSError:
        return None
    out: dict[int, int] = {}
    for word in tids:
        tid = int(word)
        try:
            with open(f"/proc/{tid}/schedstat", encoding="ascii") as f:
                out[tid] = parse_run_delay(f.read())
        except (OSError, ValueError, IndexError):
            continue
    return out


class RunDelay:
    """The owner's CPU stall where its cgroup has no PSI: the growth of each of its tasks'
    run-queue wait (`run_delay`), fed one {tid: run_delay ns} reading at a time.

    Why a sum over tasks stands in for PSI's `some` (the time at least one task waited): over
    the same time it is never less, so "the owner hardly waited" holds under it only if it held
    under PSI; two tasks waiting at once count twice, which makes that test stricter, never
    laxer. The kernel adds a wait to run_delay only when it ends (the task gets a CPU), so
    `backdated` puts each wait back before the reading that saw it.

    Per tid it keeps the last run_delay: a tid seen before adds its growth; a tid first seen
    adds all of it, since it started (or joined the cgroup) since the previous reading. The
    kernel zeroes run_delay at fork, so a task forked inside the owner's cgroup brings only
    its own waits; one moved in from outside (the wrapper shell that puts itself there right
    after its fork) brings the waits of its few moments outside, which are negligible. A tid
    no longer listed is forgotten: its waits until the previous reading are already counted.
    A run_delay below the one remembered is a new task that reuses the tid, and counts as new.
    """

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        self.total_ns = 0  # cumulative, every wait counted at the reading that saw it

    def update(self, delays: dict[int, int]) -> list[int]:
        """Feed one reading; returns the waits (ns, one per task that waited) it adds."""
        waits = []
        for tid, ns in delays.items():
            before = self._last.get(tid)
            wait = ns if before is None or ns < before else ns - before
            if wait > 0:
                waits.append(wait)
        self._last = dict(delays)
        self.total_ns += sum(waits)
        return waits


def backdated(times: list[float], waits: list[list[float]]) -> list[float]:
    """The cumulative stall (s) at each reading time, each wait (s) that reading i saw placed
    on [times[i] - wait, times[i]].

    Why: run_delay grows only when a wait ends, so a task that waits through a whole 10-ms
    window shows no stall there until the window after; counted where it was seen, the stall
    would be laxer than PSI's in the very windows where the owner waited longest (a 2-core VM
    at HZ=250 showed owner and rival alternating in 4-8 ms turns). A wait seen at reading i
    ended after reading i - 1, so this places it at most one reading period late, never
    early."""
    n = len(times)
    out = [0.0] * n
    seen = [0.0] * n
    for i, (t, ws) in enumerate(zip(times, waits, strict=True)):
        for d in ws:
            seen[i] += d
            start = t - d
            j = i - 1
            while j >= 0 and times[j] > start:
                out[j] += times[j] - start
                j -= 1
    total = 0.0
    for i in range(n):
        total += seen[i]
        out[i] += total
    return out


def read_usage(path: str, scale: float) -> float:
    """A cgroup's cumulative CPU: `cpuacct.usage` (one number) or cpu.stat's `usage_usec`."""
    with open(path, encoding="ascii") as f:
        text = f.read()
    if text.startswith("usage_usec"):
        return int(text.split()[1]) * scale
    return int(text.split()[0]) * scale


def reset_oom_adj(pids: list[int]) -> int:
    """oom_score_adj back to 0 for the owner's processes. stress-ng makes its memory stressors
    the OOM killer's first choice (1000); a real owner's program is not, and which process the
    kernel kills is exactly what the hog measures. Returns how many were changed."""
    changed = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            path = f"/proc/{pid}/oom_score_adj"
            with open(path, encoding="ascii") as f:
                if f.read().strip() == "0":
                    continue
            with open(path, "w", encoding="ascii") as f:
                f.write("0")
            changed += 1
    return changed


# --- /proc readers -------------------------------------------------------------------------------
def parse_idle_seconds(text: str) -> float:
    """Idle + iowait of all CPUs (the `cpu ` line of /proc/stat), in CPU-seconds: the CPU nobody
    used. Steal is not in it: time the hypervisor gave away was never available here."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            return (v[3] + v[4]) / USER_HZ
    raise ValueError("no `cpu ` line")


def idle_seconds() -> float:
    with open("/proc/stat", encoding="ascii") as f:
        return parse_idle_seconds(f.read())


def parse_meminfo(text: str) -> dict[str, int]:
    """Bytes by key (the kB lines); HugePages_* are counts and kept as they are."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        words = rest.split()
        if words:
            out[key] = int(words[0]) * (1024 if len(words) > 1 and words[1] == "kB" else 1)
    return out


def meminfo() -> dict[str, int]:
    with open("/proc/meminfo", encoding="ascii") as f:
        return parse_meminfo(f.read())


def parse_vmstat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in VMSTAT_KEYS:
            out[key] = int(value)
    return {k: out.get(k, 0) for k in VMSTAT_KEYS}


def vmstat() -> dict[str, int]:
    with open("/proc/vmstat", encoding="ascii") as f:
        return parse_vmstat(f.read())


@dataclass(frozen=True)
class OomKill:
    task: str
    pid: int
    memcg: str


def parse_oom_kills(messages: list[str]) -> list[OomKill]:
    """The kernel's `oom-kill:...task_memcg=...,task=...,pid=...` lines (one per kill)."""
    out = []
    for m in messages:
        hit = OOM_LINE.search(m)
        if hit:
            out.append(OomKill(hit["task"], int(hit["pid"]), hit["memcg"]))
    return out


class KernelLog:
    """The kernel log from now on (/dev/kmsg, read without blocking): OOM kills are said there."""

    def __init__(self) -> None:
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self._fd, 0, os.SEEK_END)

    @property
    def available(self) -> bool:
        return self._fd is not None

    def read(self) -> list[str]:
        if self._fd is None:
            return []
        out: list[str] = []
        while True:
            try:
                record = os.read(self._fd, 8192)
            except BlockingIOError:
                return out
            except OSError as err:
                if err.errno == errno.EPIPE:  # overwritten while we read: go on
                    continue
                return out
            text = record.decode(errors="replace")
            out.append(text.split(";", 1)[-1].strip())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --- the memory ballast --------------------------------------------------------------------------
HUGEPAGE_BYTES = 2 * 1024 * 1024


def ballast_pages(available: int, target: int, page: int = HUGEPAGE_BYTES) -> int:
    """Hugepages to reserve so that about `target` bytes stay available (0 if already less)."""
    return max(0, (available - target) // page)


class Ballast:
    """Reserve hugepages so MemAvailable drops to about `target` bytes; `release` puts the
    kernel's setting back. Only one benchmark may hold it (the marker says whose it is)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.original: int | None = None
        self.pages = 0

    @staticmethod
    def restore_stale() -> str:
        """Put back what a run killed outright left reserved; '' when nothing was left."""
        try:
            data = json.loads(BALLAST_MARKER.read_text())
        except (OSError, ValueError):
            return ""
        pid = int(data.get("pid", 0))
        if pid and Path(f"/proc/{pid}").exists():
            raise RuntimeError(f"another owner benchmark (pid {pid}) holds a memory ballast")
        HUGEPAGES.write_text(f"{int(data['original'])}\n")
        BALLAST_MARKER.unlink(missing_ok=True)
        return f"restored nr_hugepages={data['original']} left by an interrupted run"

    def take(self) -> int:
        """Reserve; returns MemAvailable afterwards."""
        self.original = int(HUGEPAGES.read_text())
        BALLAST_MARKER.write_text(json.dumps({"pid": os.getpid(), "original": self.original}))
        want = ballast_pages(meminfo()["MemAvailable"], self.target)
        HUGEPAGES.write_text(f"{self.original + want}\n")
        self.pages = int(HUGEPAGES.read_text()) - self.original
        return meminfo()["MemAvailable"]

    def release(self) -> None:
        if self.original is None:
            return
        HUGEPAGES.write_text(f"{self.original}\n")
        BALLAST_MARKER.unlink(missing_ok=True)
        self.original = None
