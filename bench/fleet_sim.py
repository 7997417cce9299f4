"""Simulated planctond hosts: the points a real daemon writes, made by the daemon's own code.

Each host is a `SeriesRecorder` (and, for hosts written Plancton's way, the Plancton 0.6 series)
fed what a supervisor would hand it: a `StatusReport` every tick and the events of a plausible
day, encoded by `lineproto` as the daemon's InfluxDB writer encodes them. Only the inputs are
made up; every point, tag, field and byte comes from the monitoring code in planctond/, so a new
series the daemon writes shows up here (and in the figures) without a change to this file.

The day of a host, by default: pilots of `cpus` 1.0 (max_pilots = ncpus - 2, as the default
`max(1, ncpus - 2)`), each living 10 minutes to 14 hours (log-uniform; stopped at the 12 h TTL),
replaced as soon as one ends; an owner using 5-40 % of the CPUs, who a few times a day
(`OWNER_BURSTS_PER_DAY`) needs most of the machine for 2-60 minutes: after `grace_kill` (120 s)
the pilots in the way are frozen (then an owner-yield event), and stopped if the owner still
needs the CPU `freeze` (30 s) later; thawed if not, and new pilots start `grace_spawn` (60 s)
after the owner is gone. A config reload about every other day. Docker never goes away.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from planctond import __version__
from planctond import constants as C
from planctond.monitoring.legacy_series import legacy_event, legacy_status
from planctond.monitoring.lineproto import encode_point
from planctond.monitoring.point import Point
from planctond.monitoring.series import SeriesRecorder
from planctond.policy.model import Reason, RunState
from planctond.supervisor.api import PoolStatus, StatusReport
from planctond.supervisor.events import Event, EventKind

TICK: Final = C.DEFAULT_TICK
DAY: Final = 86400.0
OWNER_BURSTS_PER_DAY: Final = 4.0
RELOADS_PER_DAY: Final = 0.5
LIFETIME_RANGE: Final = (600.0, 14 * 3600.0)  # log-uniform, before the TTL cut
BURST_RANGE: Final = (120.0, 3600.0)  # log-uniform owner bursts
REPLACE_DELAY: Final = 0.3  # an ended pilot's successor starts this much later (event path)
PILOT_MEMORY: Final = (300e6, 1.8e9)  # bytes a pilot holds, uniform
CONFIG_PATH: Final = "/etc/planctond/config.yaml"
# Fields StatusReport has in this checkout: the report is built by keyword from these only, so
# fields added later (with defaults) keep their defaults and fields added here are used when
# they exist (pilots_cpu, pilots_memory).
_REPORT_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(StatusReport))
_OWNER_YIELD: Final = getattr(EventKind, "OWNER_YIELD", None)


@dataclass(frozen=True)
class PoolSpec:
    name: str
    cpus: float
    max_pilots: int


@dataclass(frozen=True)
class HostProfile:
    name: str
    ncpus: int
    pools: tuple[PoolSpec, ...]
    legacy: bool  # its target is written Plancton's way (URL#db): Plancton 0.6's series too
    seed: int
    phase: float  # where in the tick this host's ticks fall: hosts do not tick together


@dataclass
class Request:
    """What the daemon's writer sends as one HTTP request: a tick's status, or an event's points
    (an event is put in the outbox when it happens and its sender thread sends it at once)."""

    time: float
    lines: list[bytes]
    status: bool


def host_name(index: int) -> str:
    return f"node-{index:04d}"


def profile(index: int, *, pools: int | None = None, legacy: bool | None = None) -> HostProfile:
    """Host `index` of the simulated fleet: every fifth host runs 3 pools, every tenth (others
    than those) is written Plancton's way; 4 to 32 CPUs."""
    rng = random.Random(index * 7919 + 17)
    ncpus = rng.choice((4, 8, 8, 16, 16, 32))
    n_pools = pools if pools is not None else (3 if index % 5 == 2 else 1)
    if n_pools == 1:
        specs: tuple[PoolSpec, ...] = (PoolSpec(C.DEFAULT_POOL_NAME, 1.0, max(1, ncpus - 2)),)
    else:
        names = ("alice", "cms", "lhcb", "atlas", "belle")
        share = max(1, (ncpus - 2) // n_pools)
        specs = tuple(PoolSpec(names[i % len(names)], 1.0, share) for i in range(n_pools))
    is_legacy = legacy if legacy is not None else index % 10 == 0
    return HostProfile(host_name(index), ncpus, specs, is_legacy, index, rng.uniform(0, TICK))


@dataclass
class _Pilot:
    name: str
    pool: str
    started: float
    ends: float  # when it exits by itself (or reaches the TTL)
    frozen_at: float | None = None


@dataclass
class _State:
    pilots: list[_Pilot] = field(default_factory=list)
    serial: int = 0
    owner_base: float = 0.1  # fraction of the CPUs the owner uses outside bursts
    burst_until: float = 0.0
    burst_level: float = 0.0
    overload_since: float | None = None


class SimHost:
    """One host's daemon, as its monitoring sees it. `advance(until)` runs the host's ticks up
    to `until` and returns what its writer would send; the first call may run a warm-up whose
    points are not returned (the counters of a daemon that has been up a while)."""

    def __init__(self, profile: HostProfile, start: float, *, warmup: float = 6 * 3600.0) -> None:
        self.profile = profile
        self.rng = random.Random(profile.seed)
        self.recorder = SeriesRecorder(profile.name)
        self.recorder.set_pool_cpus({p.name: p.cpus for p in profile.pools})
        first = math.floor((start - warmup) / TICK) * TICK + profile.phase
        self.now = first
        self.emit_from = start
        self.started = first - self.rng.uniform(0, 20 * DAY)  # the daemon's start
        self.state = _State(owner_base=self.rng.uniform(0.05, 0.4))
        self._pending: list[Request] = []
        owner = self.state.owner_base * 1.1 * profile.ncpus
        fits = int((profile.ncpus - owner - C.DEFAULT_OWNER_RESERVE) // len(profile.pools))
        for pool in profile.pools:
            for _ in range(max(0, min(pool.max_pilots, fits))):
                self._new_pilot(pool.name, first, quiet=True)
        self._event(Event(EventKind.CONFIG_LOADED, self._config_message(), time=first))

    # --- the public side -------------------------------------------------------------------------
    def advance(self, until: float) -> list[Request]:
        """Every request the host's writer sends in (now, until]: event requests at their time,
        one status request per tick."""
        out: list[Request] = []
        while self.now + TICK <= until:
            prev, self.now = self.now, self.now + TICK
            self._between(prev, self.now)
            self._tick(self.now)
            out.extend(r for r in self._pending if r.time >= self.emit_from)
            self._pending.clear()
        return out

    # --- one tick ----------------------------------------------------------------------------------
    def _between(self, prev: float, now: float) -> None:
        """Pilots that ended since the last tick, each replaced at once (the event path)."""
        for pilot in sorted(
            (p for p in self.state.pilots if prev < p.ends <= now and p.frozen_at is None),
            key=lambda p: p.ends,
        ):
            lifetime = pilot.ends - pilot.started
            self._end(pilot, pilot.ends, lifetime >= C.DEFAULT_TTL - 1, lifetime)
            if not self._owner_busy(pilot.ends):
                self._new_pilot(pilot.pool, pilot.ends + REPLACE_DELAY)

    def _tick(self, now: float) -> None:
        st = self.state
        rng = self.rng
        if now >= st.burst_until and rng.random() < OWNER_BURSTS_PER_DAY * TICK / DAY:
            st.burst_until = now + math.exp(rng.uniform(*map(math.log, BURST_RANGE)))
            st.burst_level = rng.uniform(0.7, 1.0)
        if rng.random() < RELOADS_PER_DAY * TICK / DAY:
            self._event(Event(EventKind.CONFIG_LOADED, self._config_message(), time=now))
        self._give_way(now)
        self._status(now)

    def _owner_cpu(self, now: float) -> float:
        st = self.state
        level = st.burst_level if now < st.burst_until else st.owner_base
        jitter = self.rng.uniform(0.9, 1.1)
        return min(float(self.profile.ncpus), level * self.profile.ncpus * jitter)

    def _owner_busy(self, now: float) -> bool:
        return now < self.state.burst_until

    def _give_way(self, now: float) -> None:
        """The policy's ladder, as far as monitoring sees it: the events and their times."""
        st = self.state
        owner = self._owner_cpu(now)
        self._owner = owner
        spare = max(0.0, self.profile.ncpus - owner - C.DEFAULT_OWNER_RESERVE)
        cpus = {p.name: p.cpus for p in self.profile.pools}
        running = [p for p in st.pilots if p.frozen_at is None]
        frozen = [p for p in st.pilots if p.frozen_at is not None]
        used = sum(cpus[p.pool] for p in running)
        held = sum(cpus[p.pool] for p in frozen)
        if used > spare + C.DEFAULT_OWNER_MARGIN:
            if st.overload_since is None:
                st.overload_since = now
            if now - st.overload_since >= C.DEFAULT_GRACE_KILL:
                self._freeze(now, running, spare, cpus)
        else:
            st.overload_since = None
        if frozen and spare < used + held:  # the owner still wants what they would take
            for pilot in frozen:
                if pilot.frozen_at is not None and now - pilot.frozen_at >= C.DEFAULT_FREEZE:
                    self._end(pilot, now + 1.0, None, now - pilot.started, stopped=True)
            return
        for pilot in frozen:
            pilot.frozen_at = None
            self._event(self._pilot_event(EventKind.PILOT_THAWED, pilot, now + 0.2))
        if frozen or self._owner_busy(now) or now - st.burst_until < C.DEFAULT_GRACE_SPAWN:
            return
        headroom = spare - used - held - 0.2 * owner  # what the owner's jitter may take back
        for pool in self.profile.pools:
            have = sum(1 for p in st.pilots if p.pool == pool.name)
            room = int(headroom // pool.cpus)
            for _ in range(max(0, min(C.DEFAULT_PER_TICK, pool.max_pilots - have, room))):
                self._new_pilot(pool.name, now + 0.5)
                headroom -= pool.cpus

    def _freeze(
        self, now: float, running: list[_Pilot], spare: float, cpus: dict[str, float]
    ) -> None:
        """`grace_kill` is over: the newest pilots in the way are frozen, then the owner-yield
        event says how long the owner waited."""
        st = self.state
        used = sum(cpus[p.pool] for p in running)
        count = 0
        for pilot in sorted(running, key=lambda p: -p.started):
            if used <= spare:
                break
            pilot.frozen_at = now + 0.2
            used -= cpus[pilot.pool]
            count += 1
            self._event(self._pilot_event(EventKind.PILOT_FROZEN, pilot, now + 0.2))
        since = st.overload_since if st.overload_since is not None else now
        st.overload_since = None
        if _OWNER_YIELD is None or not count:
            return
        latency = now + 0.3 - since + self.rng.uniform(0, TICK)  # from within the first interval
        extra = {
            "latency_seconds": f"{latency:.3f}",
            "pilot_cpu_seconds": f"{self.rng.uniform(0, 0.5):.3f}",
            "pilots": str(count),
        }
        message = f"owner-yield: {count} pilots out of the way in {latency:.1f}s"
        reason = Reason.OWNER_CPU.value
        self._event(Event(_OWNER_YIELD, message, reason=reason, extra=extra, time=now + 0.3))

    def _status(self, now: float) -> None:
        if now < self.emit_from:
            return
        st = self.state
        running = [p for p in st.pilots if p.frozen_at is None]
        pools = tuple(
            PoolStatus(
                name=pool.name,
                running=sum(1 for p in running if p.pool == pool.name),
                frozen=sum(1 for p in st.pilots if p.pool == pool.name and p.frozen_at is not None),
                allowed=pool.max_pilots,
                backoff_until=None,
                note="owner needs the CPU" if self._owner_busy(now) else "",
            )
            for pool in self.profile.pools
        )
        pilots_cpu = sum(self.rng.uniform(0.6, 1.0) for _ in running)
        values: dict[str, Any] = {
            "state": RunState.ACTIVE,
            "docker_ok": True,
            "docker_error": "",
            "pools": pools,
            "pilots": len(st.pilots),
            "capacity_cpus": max(0.0, self.profile.ncpus - self._owner - C.DEFAULT_OWNER_RESERVE),
            "owner_cpu": self._owner,
            "host_cpu": min(float(self.profile.ncpus), self._owner + pilots_cpu),
            "ncpus": self.profile.ncpus,
            "started": self.started,
            "version": __version__,
            "config_path": CONFIG_PATH,
            "last_error": "",
            "last_tick": now - TICK + 0.05,
            "pilots_cpu": pilots_cpu,
            "pilots_memory": int(sum(self.rng.uniform(*PILOT_MEMORY) for _ in st.pilots)),
        }
        report = StatusReport(**{k: v for k, v in values.items() if k in _REPORT_FIELDS})
        points = self.recorder.status(report, now)
        if self.profile.legacy:
            points += legacy_status(report, now, self.profile.name)
        self._pending.append(Request(now, _encode(points), status=True))

    # --- pilots and events -------------------------------------------------------------------------
    def _new_pilot(self, pool: str, at: float, *, quiet: bool = False) -> None:
        st = self.state
        st.serial += 1
        lifetime = min(C.DEFAULT_TTL, math.exp(self.rng.uniform(*map(math.log, LIFETIME_RANGE))))
        if quiet:  # already running when the simulation begins: somewhere in its life
            at -= self.rng.uniform(0, lifetime)
        name = f"planctond-{pool}-{st.serial:06d}"
        pilot = _Pilot(name, pool, at, at + lifetime)
        st.pilots.append(pilot)
        if not quiet:
            self._event(self._pilot_event(EventKind.PILOT_STARTED, pilot, at))

    def _end(
        self, pilot: _Pilot, at: float, ttl: bool | None, lifetime: float, stopped: bool = False
    ) -> None:
        self.state.pilots.remove(pilot)
        extra = {"lifetime_seconds": f"{lifetime:.3f}"}
        if stopped or ttl:
            reason = Reason.OWNER_CPU if stopped else Reason.TTL
            extra["cpu_seconds"] = f"{lifetime * self.rng.uniform(0.6, 1.0):.3f}"
            message = f"stopped ({reason.value}: ...), exit code 143 after {lifetime:.1f}s"
            kind, code, why = EventKind.PILOT_STOPPED, 143, reason.value
        else:
            code = 0 if self.rng.random() < 0.95 else 1
            message = f"exited with code {code} after {lifetime:.1f}s"
            kind, why = EventKind.PILOT_EXITED, "exited"
        self._event(self._pilot_event(kind, pilot, at, message, code, why, extra))

    def _pilot_event(
        self,
        kind: EventKind,
        pilot: _Pilot,
        at: float,
        message: str = "",
        exit_code: int | None = None,
        reason: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Event:
        if kind is EventKind.PILOT_STARTED:
            message, reason = "started: spare CPU", "spawned"
        elif kind is EventKind.PILOT_FROZEN:
            message, reason = "frozen: owner needs the CPU", Reason.OWNER_CPU.value
        elif kind is EventKind.PILOT_THAWED:
            message, reason = "thawed: owner gone", Reason.OWNER_GONE.value
        return Event(
            kind,
            message,
            pilot=pilot.name,
            pool=pilot.pool,
            reason=reason,
            exit_code=exit_code,
            extra=extra or {},
            time=at,
        )

    def _event(self, event: Event) -> None:
        points = self.recorder.on_event(event)
        if event.time < self.emit_from:
            return  # warm-up: the counters move, nothing is sent
        if self.profile.legacy:
            points += legacy_event(event, self.profile.name)
        if points:
            self._pending.append(Request(event.time, _encode(points), status=False))

    def _config_message(self) -> str:
        n = len(self.profile.pools)
        return f"config loaded from {CONFIG_PATH}: {n} pool" + ("s" if n > 1 else "")


def _encode(points: list[Point]) -> list[bytes]:
    return [encode_point(p) for p in points]


def stream(host: SimHost, until: float, step: float = 3600.0) -> Iterator[Request]:
    """The host's requests up to `until`, in time order, computed `step` seconds at a time."""
    while host.now + TICK <= until:
        requests = host.advance(min(until, host.now + step))
        yield from sorted(requests, key=lambda r: r.time)
