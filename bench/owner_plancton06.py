"""Plancton 0.6's rule, reproduced as a contender (../shared/reference/plancton-0.6.md).

Why a reimplementation and not Plancton itself: Plancton 0.6 is Python 2 and talks to Docker
through a client Debian 12 no longer has. What matters for the owner is its rule, which is
short, and reproduced here step by step:

  every main_sleep seconds:
    efficiency = share of all CPUs busy since the last loop, the pilots' own use included
    if efficiency > cpus of running pilots / ncpus + 10 % for longer than grace_kill:
        force-remove the youngest pilot (one per loop), remember when
    unless a kill was less than grace_spawn ago:
        launch min(fitting, max_docks - running, docks_per_loop) pilots, where
        fitting = idle % * 0.95 * ncpus / (cpus_per_dock * 100)
    remove pilots that exited; kill those older than max_ttl

Pilots get a CPU quota of `cpus_per_dock` and Docker's default cgroup weight. Busy CPU is read
with the daemon's own /proc/stat reader (`planctond.sensors.host.read_proc_stat`), so both
tools see the same host. Deliberate departures: `max_docks` is ncpus (Plancton's default,
`ncpus - 2`, starts nothing on a 2-core host), and the first loop runs at once instead of
after `grace_spawn` (a reported Plancton bug, not its rule).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bench.owner_host import USER_HZ
from planctond.sensors.host import read_proc_stat

THRESHOLD_MARGIN = 0.10
FIT_FACTOR = 0.95


@dataclass(frozen=True)
class Params:
    """Plancton 0.6's keys (its defaults, but max_docks; see the module's docstring)."""

    max_docks: int
    main_sleep: float = 30.0
    grace_kill: float = 120.0
    grace_spawn: float = 60.0
    cpus_per_dock: float = 1.0
    docks_per_loop: int = 4
    max_ttl: float = 43200.0
    max_dock_mem: int = 2_000_000_000


@dataclass(frozen=True)
class State:
    over_since: float | None = None  # when efficiency first went over the threshold
    last_kill: float | None = None


@dataclass(frozen=True)
class Pilot:
    id: str
    started: float  # seconds (any clock the caller uses for `now`)


@dataclass(frozen=True)
class Decision:
    kill: tuple[str, ...]  # force-removed now (the youngest; older than max_ttl)
    launch: int
    state: State
    efficiency: float


def decide(
    p: Params, state: State, now: float, efficiency: float, ncpus: int, running: list[Pilot]
) -> Decision:
    """One loop of the rule, pure: what to kill and how many to launch."""
    kill: list[str] = [x.id for x in running if now - x.started > p.max_ttl]
    alive = [x for x in running if x.id not in kill]
    threshold = len(alive) * p.cpus_per_dock / ncpus + THRESHOLD_MARGIN
    if efficiency > threshold and alive:
        over = state.over_since if state.over_since is not None else now
        state = replace(state, over_since=over)
        if now - over >= p.grace_kill:
            youngest = max(alive, key=lambda x: x.started)
            kill.append(youngest.id)
            alive.remove(youngest)
            state = replace(state, last_kill=now)
    else:
        state = replace(state, over_since=None)
    launch = 0
    if state.last_kill is None or now - state.last_kill >= p.grace_spawn:
        idle_pct = max(0.0, 1.0 - efficiency) * 100.0
        fitting = math.floor(idle_pct * FIT_FACTOR * ncpus / (p.cpus_per_dock * 100.0))
        launch = max(0, min(fitting, p.max_docks - len(alive), p.docks_per_loop))
    return Decision(tuple(kill), launch, state, efficiency)


class Plancton06:
    """The rule's loop in a thread of the benchmark, against Docker (docker-py's low-level API).

    `create` makes one pilot container (the benchmark's spec: image, command, labels, cgroup
    parent) and returns its id; the loop adds Plancton's quota and memory limit to it."""

    def __init__(
        self,
        api: Any,
        params: Params,
        ncpus: int,
        labels: dict[str, str],
        create: Callable[[dict[str, Any]], str],
        stat_path: str = "/proc/stat",
    ) -> None:
        self.api = api
        self.params = params
        self.ncpus = ncpus
        self.labels = labels
        self.create = create
        self.stat_path = stat_path
        self.state = State()
        self.kills = 0
        self.launches = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="plancton06", daemon=True)
        self._started: dict[str, float] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _host_config(self) -> dict[str, Any]:
        period = 100_000
        return {
            "cpu_period": period,
            "cpu_quota": int(self.params.cpus_per_dock * period),
            "mem_limit": self.params.max_dock_mem,
        }

    def _running(self) -> list[Pilot]:
        flt = {"label": [f"{k}={v}" for k, v in self.labels.items()]}
        out = []
        for c in self.api.containers(all=True, filters=flt):
            cid = c["Id"]
            if c.get("State") != "running":
                self.api.remove_container(cid, force=True)  # exited or never started
                self._started.pop(cid, None)
                continue
            out.append(Pilot(cid, self._started.setdefault(cid, time.monotonic())))
        return out

    def loop_once(self, busy_before: int, at_before: float) -> tuple[int, float]:
        busy, ncpus = read_proc_stat(self.stat_path)
        now = time.monotonic()
        elapsed = max(now - at_before, 1e-3)
        efficiency = min(1.0, (busy - busy_before) / USER_HZ / (ncpus * elapsed))
        d = decide(self.params, self.state, now, efficiency, self.ncpus, self._running())
        self.state = d.state
        for cid in d.kill:
            self.api.remove_container(cid, force=True)
            self._started.pop(cid, None)
            self.kills += 1
        for _ in range(d.launch):
            cid = self.create(self._host_config())
            self.api.start(cid)
            self._started[cid] = time.monotonic()
            self.launches += 1
        return busy, now

    def _run(self) -> None:
        busy, _ = read_proc_stat(self.stat_path)
        at = time.monotonic()
        # The first loop a moment after start (it needs an interval to measure), then every
        # main_sleep.
        wait = 1.0
        while not self._stop.wait(wait):
            try:
                busy, at = self.loop_once(busy, at)
            except Exception as exc:  # a Docker error: Plancton logged and looped on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            wait = self.params.main_sleep
