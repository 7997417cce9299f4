"""One cheap reading of the host per tick -> `HostSnapshot`.

CPU figures are in CPUs over the interval since the previous sample (1.0 = one core busy):

- host_cpu: busy jiffies from /proc/stat (user, nice, system, irq, softirq; guest time is already
  inside user). Idle and iowait are not busy; neither is steal: time the hypervisor gave to other
  guests is nobody's use on this host, and counting it as the owner's would make pilots give way
  to a noisy neighbour.
- pilots_cpu: the pilots' parent cgroup counter (see cgroups.py).
- owner_cpu = host_cpu - pilots_cpu, and its rolling means over the configured windows; or, with
  `owner.cgroup`, that cgroup's counter less the pilots inside it (the whole host's figure while
  the cgroup cannot be read, so a missing cgroup never hides the owner).

Besides the CPU: the owner's stalls (`owner_pressure.py`), which `owner.give_way: pressure`
judges the owner by, and whether the pilots' parent is idle to the scheduler.

Everything is read from files (no subprocess, no Docker call): a sample costs well under 1 ms.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping

import psutil

from planctond import constants as C
from planctond.config.variables import OWNER_CPU_WINDOWS
from planctond.policy.model import HostSnapshot
from planctond.sensors.averages import RollingMeans
from planctond.sensors.cgroups import OwnerScope, PilotCgroups
from planctond.sensors.owner_pressure import OwnerPressureSensor
from planctond.sensors.pressure import read_pressure

# Below this interval the jiffy counters (10 ms granularity per CPU) are too coarse to mean much
# (one jiffy in 5 ms reads as 2 CPUs): such a sample repeats the last good reading (0 before the
# first), is flagged as warming up, stays out of the averages and keeps the old baseline, so the
# next sample covers the whole interval.
MIN_INTERVAL = C.CPU_MIN_INTERVAL
# Totals that change only when an admin adds swap or a battery: re-read this often, not per tick.
SLOW_REFRESH = 60.0

log = logging.getLogger(__name__)


def read_proc_stat(path: str) -> tuple[int, int]:
    """(busy jiffies summed over all CPUs, number of CPUs listed)."""
    with open(path, encoding="ascii") as f:
        text = f.read()
    busy = 0
    ncpus = 0
    for line in text.splitlines():
        if not line.startswith("cpu"):
            break  # the cpu lines come first
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:]]
            v += [0] * (8 - len(v))
            # user nice system idle iowait irq softirq steal
            busy = v[0] + v[1] + v[2] + v[5] + v[6]
        else:
            ncpus += 1
    return busy, ncpus


def read_loadavg(path: str) -> tuple[float, float, float]:
    with open(path, encoding="ascii") as f:
        a, b, c = f.read().split()[:3]
    return float(a), float(b), float(c)


class HostSensor:
    def __init__(
        self,
        pilot_cgroups: PilotCgroups | None,
        disk_path: str,
        proc_root: str = "/proc",
        *,
        windows: Mapping[str, float] = OWNER_CPU_WINDOWS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        owner_scope: OwnerScope | None = None,
        owner_pressure: OwnerPressureSensor | None = None,
        pilots_idle: bool = False,
    ) -> None:
        self.pilot_cgroups = pilot_cgroups
        self.owner_scope = owner_scope
        self.owner_pressure = owner_pressure
        self.pilots_idle = pilots_idle
        self.disk_path = disk_path if os.path.exists(disk_path) else "/"
        self.proc_root = proc_root
        self._stat_path = os.path.join(proc_root, "stat")
        self._clock = clock
        self._wall = wall_clock
        self._hz = float(os.sysconf("SC_CLK_TCK"))
        self.owner_means = RollingMeans(windows)
        self._window_names = tuple(windows)
        # Baseline taken now, so the first sample() already covers a real interval.
        self._prev_t = clock()
        self._prev_busy, _ = read_proc_stat(self._stat_path)
        self._prev_pilots = self._pilots_seconds()
        self._prev_scope = self._scope_seconds()
        self._scope_unread = False  # said once per outage of the owner's cgroup
        self._slow_at = -math.inf
        self._swap_total = 0
        self._on_battery = False
        # (host, pilots, scoped owner) of the last interval long enough to trust
        self._last_cpu: tuple[float, float, float | None] = (0.0, 0.0, None)
        # Where that interval began, and the pilots' counter then (see HostSnapshot.since)
        self._last_since: tuple[float, float | None] = (self._prev_t, self._prev_pilots)
        self.warming_up = True  # the last sample covered less than MIN_INTERVAL
        self.measured = False  # some sample has covered MIN_INTERVAL: the CPU figures are real
        self.last_interval = 0.0

    def pilots_cpu_seconds(self) -> float | None:
        """The pilots' parent counter now: the end of a window that began at a `since`."""
        return self._pilots_seconds()

    def _pilots_seconds(self) -> float | None:
        return None if self.pilot_cgroups is None else self.pilot_cgroups.total_cpu_seconds()

    def _scope_seconds(self) -> float | None:
        return None if self.owner_scope is None else self.owner_scope.cpu_seconds()

    def _scoped_owner(self, elapsed: float, ncpus: int, pilots_cpu: float) -> float | None:
        """The owner's use inside `owner.cgroup` over the interval, None without one (or while
        it cannot be read: then the whole host counts, which never hides the owner)."""
        scope = self.owner_scope
        if scope is None:
            return None
        now, before = self._scope_seconds(), self._prev_scope
        self._prev_scope = now
        if now is None:
            if not self._scope_unread:
                self._scope_unread = True
                log.warning(
                    "owner.cgroup %s cannot be read (not there yet?); the owner is everything "
                    "but the pilots until it can",
                    scope.name,
                )
            return None
        if self._scope_unread:
            self._scope_unread = False
            log.info("owner.cgroup %s can be read again", scope.name)
        if before is None:
            return None
        used = min(float(ncpus), max(0.0, (now - before) / elapsed))
        return max(0.0, used - pilots_cpu) if scope.holds_pilots else used

    def _refresh_slow(self, now: float) -> None:
        if now - self._slow_at < SLOW_REFRESH:
            return
        self._slow_at = now
        self._swap_total = int(psutil.swap_memory().total)
        battery = psutil.sensors_battery()
        self._on_battery = bool(battery is not None and not battery.power_plugged)

    def _cpu(self, now: float) -> tuple[float, float, float | None, int]:
        busy, ncpus = read_proc_stat(self._stat_path)
        ncpus = ncpus or os.cpu_count() or 1
        elapsed = now - self._prev_t
        self.last_interval = elapsed
        if elapsed < MIN_INTERVAL:
            return (*self._last_cpu, ncpus)
        pilots = self._pilots_seconds()
        host_cpu = min(float(ncpus), max(0.0, (busy - self._prev_busy) / self._hz / elapsed))
        pilots_cpu = 0.0
        if pilots is not None and self._prev_pilots is not None:
            # Clamped to [0, host_cpu]: the cgroup counter (scheduler nanoseconds) and
            # /proc/stat (jiffies) are different clocks read a few microseconds apart, so with
            # pilots using every core their share can read a little above the host's total;
            # and a re-created parent restarts its counter at zero. Pilots can never really
            # use more than the host did, and the owner's use is never negative.
            pilots_cpu = min(host_cpu, max(0.0, (pilots - self._prev_pilots) / elapsed))
        scoped = self._scoped_owner(elapsed, ncpus, pilots_cpu)
        self._last_since = (self._prev_t, self._prev_pilots)
        self._prev_t, self._prev_busy, self._prev_pilots = now, busy, pilots
        self._last_cpu = (host_cpu, pilots_cpu, scoped)
        self.measured = True
        return host_cpu, pilots_cpu, scoped, ncpus

    def sample(self, extra: Mapping[str, float | bool] | None = None) -> HostSnapshot:
        now = self._clock()
        wall = self._wall()
        host_cpu, pilots_cpu, scoped, ncpus = self._cpu(now)
        self.warming_up = self.last_interval < MIN_INTERVAL
        owner_cpu = max(0.0, host_cpu - pilots_cpu) if scoped is None else scoped
        if not self.warming_up:
            self.owner_means.add(now, owner_cpu)
        self._refresh_slow(now)

        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(self.disk_path)
        load1, load5, load15 = read_loadavg(os.path.join(self.proc_root, "loadavg"))
        local = time.localtime(wall)

        variables: dict[str, float | bool] = {
            "ncpus": ncpus,
            "ram_bytes": int(mem.total),
            "swap_bytes": self._swap_total,
            "mem_available": int(mem.available),
            "disk_free": int(disk.free),
            "disk_used": disk.used / (disk.used + disk.free) if disk.used + disk.free else 0.0,
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "owner_cpu": owner_cpu,
            "on_battery": self._on_battery,
            "hour": local.tm_hour,
            "weekday": local.tm_wday,
        }
        variables.update(read_pressure(os.path.join(self.proc_root, "pressure")))
        for name in self._window_names:
            m = self.owner_means.mean(name)
            variables[f"owner_cpu_{name}"] = owner_cpu if m is None else m
        if extra:
            variables.update(extra)
        since, pilots_since = self._last_since
        return HostSnapshot(
            monotonic=now,
            wall=wall,
            ncpus=ncpus,
            host_cpu=host_cpu,
            pilots_cpu=pilots_cpu,
            mem_total=int(mem.total),
            mem_available=int(mem.available),
            swap_total=self._swap_total,
            variables=variables,
            scoped_owner_cpu=scoped,
            since=since,
            pilots_cpu_seconds_since=pilots_since,
            pilots_memory=None if self.pilot_cgroups is None else self.pilot_cgroups.memory_bytes(),
            owner_pressure=None if self.owner_pressure is None else self.owner_pressure.read(),
            pilots_idle=self.pilots_idle,
            cpu_measured=self.measured,
        )
