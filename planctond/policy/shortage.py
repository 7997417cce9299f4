"""What the owner is short of this instant: the one place the two give-way rules differ.

`give_way: usage` (Plancton's rule, the default for now): the owner's CPU use leaves less than the
running pilots are entitled to, by more than `margin`; or MemAvailable is under
`reserve_memory`.

`give_way: pressure`: pilots sit in an idle cgroup, so the owner's CPU *use* costs the owner
nothing (the kernel hands the CPU back at once); what does cost is *stalling*. The owner is short
when its PSI (`HostSnapshot.owner_pressure`, percent of the last 10 s) is over a line: CPU
(every owner task waiting: the CPU went to someone else), memory, io. MemAvailable under
`reserve_memory` stays a shortage, and an urgent one: swapping or the OOM killer do not wait for
`grace_kill`, and a frozen pilot still holds its memory, so it is answered by a stop at once.

The CPU line applies only where the pilots are not idle to the scheduler (no `cpu.idle`: the
lowest weight on kernels before 5.15, or no parent cgroup at all). Under `cpu.idle=1` a waking
owner task preempts a pilot at once, so the owner's CPU stalls are its own tasks waiting for each
other (seen in the cgroup v2 guest: an owner on every vCPU stalled itself over 10 % "full" with
idle pilots beside it); freezing pilots would cure none of that and only lose their work. There,
and where the host cannot measure the owner's CPU stalls (no per-cgroup PSI, or a kernel without
the cgroup "full" line), the CPU is left to the idle cgroup when the pilots are in one, and
judged by use as with `usage` when they are not: an unprotected owner is never left unwatched.
Where the CPU is left to the idle cgroup, pilots also start and thaw on CPUs the owner is using
(`accounting.owner_cpu_counts`): a start waiting for the owner to go would give up the harvest
of every instant it does not use them, and cost it nothing in exchange.

`owner.active_within` works with both rules: the owner at the keyboard (logind's `owner_idle`
below it) is a shortage by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from planctond.config.model import Config, GiveWayMode
from planctond.policy.accounting import EPS, owner_cpu_counts
from planctond.policy.model import HostSnapshot, OwnerPressure, Reason


@dataclass(frozen=True)
class Shortage:
    """What the owner is short of (several can hold at once), and how this decision judged the
    CPU, which the ladder needs even when nothing is short (what a thaw may trust)."""

    cpu: bool = False
    memory: bool = False
    io: bool = False
    active: bool = False  # the owner is at the keyboard
    urgent: bool = False  # give_way: pressure and MemAvailable under the floor: stop at once
    cpu_by_use: bool = True  # the CPU is judged by use: victims sized by the CPUs they free
    cpu_by_pressure: bool = False  # ... by the owner's CPU stalls, which the pilots feed
    details: tuple[tuple[Reason, str], ...] = ()  # why, per reason, in the order of `reason`

    @property
    def any(self) -> bool:
        return self.cpu or self.memory or self.io or self.active

    @property
    def reason(self) -> Reason:
        """Memory first: a host short of memory swaps or kills, one short of I/O or CPU only
        slows; an owner merely at the keyboard comes last, as the least pressing."""
        if self.memory:
            return Reason.OWNER_MEMORY
        if self.io:
            return Reason.OWNER_IO
        if self.cpu:
            return Reason.OWNER_CPU
        return Reason.OWNER_ACTIVE

    @property
    def detail(self) -> str:
        return dict(self.details).get(self.reason, "")


def owner_shortage(config: Config, host: HostSnapshot, need: float, spare: float) -> Shortage:
    """The shortage under the configured rule. `need`: the running pilots' entitled CPUs;
    `spare`: what the owner leaves them (see `accounting.spare_cpus`)."""
    if config.owner.give_way is GiveWayMode.PRESSURE:
        return _by_pressure(config, host, need, spare)
    return _by_use(config, host, need, spare)


def _cpu_by_use(config: Config, host: HostSnapshot, need: float, spare: float) -> str:
    """Giving way needs ``need > spare + margin`` while a start needs ``spare >= need + cpus``:
    after any start the host is at least `margin` away from the give-way line, so a steady load
    never flaps."""
    if need > spare + config.owner.margin + EPS:
        return f"owner uses {host.owner_cpu:.2f} CPUs, {spare:.2f} spare for {need:.2f} entitled"
    return ""


def _floor(config: Config, host: HostSnapshot) -> str:
    if host.mem_available < config.owner.reserve_memory:
        return f"owner needs memory ({host.mem_available} bytes available)"
    return ""


def _active(config: Config, host: HostSnapshot) -> str:
    """logind's `owner_idle` under `active_within`; never while logind gives no reading."""
    within = config.owner.active_within
    idle = host.variables.get("owner_idle")
    if within <= 0 or isinstance(idle, bool) or idle is None or idle >= within:
        return ""
    return f"owner active {idle:.0f}s ago (active_within {within:g}s)"


def _by_use(config: Config, host: HostSnapshot, need: float, spare: float) -> Shortage:
    found = (
        (Reason.OWNER_MEMORY, _floor(config, host)),
        (Reason.OWNER_CPU, _cpu_by_use(config, host, need, spare)),
        (Reason.OWNER_ACTIVE, _active(config, host)),
    )
    details = tuple((r, d) for r, d in found if d)
    return Shortage(
        cpu=bool(found[1][1]),
        memory=bool(found[0][1]),
        active=bool(found[2][1]),
        details=details,
    )


def _over(name: str, value: float | None, line: float | None, source: str) -> str:
    if value is None or line is None or value <= line:
        return ""
    return f"owner {name} pressure {value:.1f}% over the {line:g}% line ({source})"


def _by_pressure(config: Config, host: HostSnapshot, need: float, spare: float) -> Shortage:
    owner = config.owner
    psi = host.owner_pressure or OwnerPressure(None, None, None, False, "no PSI")
    floor = _floor(config, host)
    memory = floor or _over("memory", psi.memory, owner.memory_pressure, psi.source)
    io = _over("io", psi.io, owner.io_pressure, psi.source)
    wanted = owner_cpu_counts(config, host)
    by_pressure = wanted and psi.cpu is not None
    by_use = wanted and psi.cpu is None
    if by_pressure:
        cpu = _over("cpu", psi.cpu, owner.cpu_pressure, psi.source)
    else:
        cpu = _cpu_by_use(config, host, need, spare) if by_use else ""
    active = _active(config, host)
    found = (
        (Reason.OWNER_MEMORY, memory),
        (Reason.OWNER_IO, io),
        (Reason.OWNER_CPU, cpu),
        (Reason.OWNER_ACTIVE, active),
    )
    return Shortage(
        cpu=bool(cpu),
        memory=bool(memory),
        io=bool(io),
        active=bool(active),
        urgent=bool(floor),
        cpu_by_use=by_use,
        cpu_by_pressure=by_pressure,
        details=tuple((r, d) for r, d in found if d),
    )


def _cpu_fallback(host: HostSnapshot) -> str:
    if host.pilots_idle:
        return "the owner's CPU is left to the pilots' idle cgroup"
    return (
        "the owner's CPU is judged by use, as with give_way: usage (pilots not in an idle cgroup)"
    )


def shortage_notes(config: Config, host: HostSnapshot) -> tuple[str, ...]:
    """What the configured rule cannot read on this host, said once per change by the
    supervisor: a fleet config loads everywhere, and each host says what it degrades to."""
    owner = config.owner
    notes: list[str] = []
    idle = host.variables.get("owner_idle")
    if owner.active_within > 0 and (idle is None or isinstance(idle, bool)):
        notes.append(
            "owner active_within: no owner_idle reading from logind here: "
            "the owner at the keyboard never makes pilots give way"
        )
    if owner.give_way is not GiveWayMode.PRESSURE:
        return tuple(notes)
    psi = host.owner_pressure
    cpu_wanted = owner.cpu_pressure is not None
    if psi is None or (psi.memory is None and psi.io is None and psi.cpu is None):
        text = "owner pressure: no PSI on this host (a kernel without it, or psi=0): pilots give way for MemAvailable under reserve_memory"
        notes.append(text + (f"; {_cpu_fallback(host)}" if cpu_wanted else ""))
    elif not psi.per_cgroup:
        text = (
            f"owner pressure: read host-wide ({psi.source}), memory and io by their 'full' "
            "lines: no PSI of the owner's own cgroups here"
        )
        notes.append(text + (f"; {_cpu_fallback(host)}" if cpu_wanted else ""))
    elif psi.cpu is None and cpu_wanted:
        notes.append(
            f"owner pressure: no CPU 'full' line for the owner's cgroups ({psi.source}; "
            f"kernels before 5.13): {_cpu_fallback(host)}"
        )
    elif host.pilots_idle and cpu_wanted:
        notes.append(
            "owner cpu_pressure: not applied here: the pilots are idle to the scheduler "
            "(cpu.idle=1), so the owner's CPU stalls are its own tasks waiting for each other, "
            "which freezing pilots would not cure; the owner's CPU is left to the idle cgroup"
        )
    return tuple(notes)
