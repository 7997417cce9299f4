"""The owner-first ladder on the real kernel: an owner loading every vCPU makes pilots freeze
(through the v2 freezer, `cgroup.freeze`), thaw when it leaves, and stop when it stays.

Which pilots give way is the daemon's choice (the youngest, until the rest fits beside the
owner), and in an emulated guest the owner's measured load varies, so the checks do not count on
both pilots being chosen: at least one must be, and for every pilot the daemon's phase
(ListPilots) and the kernel's state must agree. Standard library only, like guest_checks.py.
"""

from __future__ import annotations

import time
from typing import Any

from tests.guest import guest_lib as g
from tests.guest.guest_checks import PILOTS, Run

FROZEN = ("1", "1")  # cgroup.freeze as written, `frozen` in cgroup.events
THAWED = ("0", "0")


def _phases() -> dict[str, str]:
    """pilot id -> phase, as the daemon reports it (ListPilots)."""
    return {row[1]: row[3] for row in g.call("ListPilots", json_out=True) if row[2] == g.SPIN_POOL}


def agreed_frozen(r: Run) -> list[str] | None:
    """The ids of the frozen pilots once the daemon and the kernel agree on every pilot; None
    while they do not (a pause or unpause under way)."""
    phases, frozen = _phases(), []
    for p in r.pilots:
        kernel, phase = p.freeze_state(), phases.get(p.id)
        if (phase, kernel) == ("frozen", FROZEN):
            frozen.append(p.id)
        elif (phase, kernel) != ("running", THAWED):
            return None
    return frozen


def owner_at_least(cpus: float) -> dict[str, Any] | None:
    report = g.status()
    return report if report["owner_cpu"] >= cpus else None


def _owner_arrives(r: Run, slice_name: str) -> tuple[float, list[str]]:
    """Start an owner in `slice_name` on the pilots running now; (the owner CPU the daemon saw,
    the pilots frozen once it gave way)."""
    r.pilots = g.wait_pilots(PILOTS)
    r.owner = g.OwnerLoad(slice_name, r.ncpus + 1)
    r.mark = g.cursor()
    r.owner.start()
    seen = g.wait_for("the owner in Status", lambda: owner_at_least(r.ncpus / 2), 60)
    frozen = g.wait_for(
        "pilots frozen, the daemon and the kernel agreeing", lambda: agreed_frozen(r), 90
    )
    events = g.events("pilot-frozen", r.mark)
    if len(events) < len(frozen):
        raise g.CheckFailed(f"{len(frozen)} frozen, {len(events)} pilot-frozen events")
    return float(seen["owner_cpu"]), list(frozen)


def check_user_slice_owner_freezes_pilots_by_cgroup_freeze(r: Run) -> str:
    r.idle_pressure = g.pool(g.status(), g.PROBE_POOL)["allowed"]
    owner, frozen = _owner_arrives(r, "user.slice")
    r.victims = frozen
    where = [p.cgroup for p in r.pilots if p.id in frozen]
    return f"owner {owner:.2f} CPU seen; cgroup.freeze=1 and frozen 1 in {where}"


def _pressure_pair() -> tuple[int, float] | None:
    """(the policy's cpu_pressure, the kernel's) when they agree, a tick apart at most."""
    policy = int(g.pool(g.status(), g.PROBE_POOL)["allowed"])
    kernel = g.some_avg10("/proc/pressure/cpu")
    return (policy, kernel) if abs(policy - min(100.0, kernel)) <= 10 else None


def check_pressure_read_by_the_policy(r: Run) -> str:
    """Expressions read host-wide PSI, /proc/pressure/cpu (`cpu_pressure`); the probe pool's
    max_pilots is round(cpu_pressure), so Status shows the daemon's reading. It must follow the
    kernel's file while the owner keeps a task waiting for CPU (a reader stuck at 0 cannot). The
    give-way rule's own reading, per owner cgroup, is `guest_pressure.py`'s."""
    policy, kernel = g.wait_for("the policy's cpu_pressure = the kernel's", _pressure_pair, 60)
    dirs = (r.parent, g.CGROUP_ROOT + "/user.slice")
    per_cgroup = {d: g.some_avg10(f"{d}/cpu.pressure") for d in dirs}
    detail = (
        f"policy cpu_pressure {policy}, /proc/pressure/cpu some avg10 {kernel:.1f} (idle: policy"
        f" {r.idle_pressure}); per-cgroup cpu.pressure some: "
        f"{per_cgroup}"
    )
    if kernel < 20:
        raise g.CheckFailed(f"too little pressure to tell a reading from none: {detail}")
    return detail


def check_pilots_thaw_when_owner_leaves(r: Run) -> str:
    r.owner.stop()
    g.wait_for("every pilot running, thawed", lambda: agreed_frozen(r) == [], 90)
    if g.pilot_ids() != sorted(p.id for p in r.pilots):
        raise g.CheckFailed("the pilots running are not the ones that were frozen")
    return f"thawed: {len(g.events('pilot-thawed', r.mark))} pilot-thawed events"


def check_system_slice_owner_freezes_then_stops_pilots(r: Run) -> str:
    _, frozen = _owner_arrives(r, "system.slice")
    r.victims = frozen
    # `freeze` (40 s) later the frozen ones are stopped; the others, if any, keep running.
    g.wait_for("the frozen pilots stopped", lambda: not set(frozen) & set(g.pilot_ids()), 150)
    g.wait_for(
        "pilot-stopped events", lambda: len(g.events("pilot-stopped", r.mark)) >= len(frozen), 30
    )
    running = set(g.pilot_ids())
    time.sleep(8)  # the owner stays: nothing new starts
    stopped = g.events("pilot-stopped", r.mark)
    killed = g.events("pilot-killed", r.mark)  # not graceful: SIGTERM went unanswered
    if (
        killed
        or set(g.pilot_ids()) - running
        or any(e.get("PLANCTON_REASON") != "owner-cpu" for e in stopped)
    ):
        raise g.CheckFailed(
            f"stopped: {[e.get('MESSAGE') for e in stopped]}; killed: {len(killed)}; "
            f"running {sorted(running)} then {g.pilot_ids()}"
        )
    return f"{len(frozen)} frozen then stopped: " + "; ".join(
        str(e.get("MESSAGE", ""))[:120] for e in stopped
    )


def check_pilots_return_after_owner_leaves(r: Run) -> str:
    r.owner.stop()
    back = g.wait_pilots(PILOTS)
    if {p.id for p in back} & set(r.victims):
        raise g.CheckFailed("a stopped pilot came back instead of a new one")
    return f"{PILOTS} pilots again, {len(r.victims)} of them new"
