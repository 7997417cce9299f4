"""`owner.give_way: pressure` on the real kernel: the rule reads the owner's stalls from the
owner's own cgroups' `cpu.pressure` and `io.pressure`, never the pilots', so an owner that merely
uses every vCPU beside idle pilots leaves them running (the `usage` rule froze them in the ladder
checks before), and an owner stalled on I/O makes them give way.

The phase switches the daemon to the pressure rule by a reload and back at the end, as an admin
would. Standard library only, like guest_checks.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.guest import guest_lib as g
from tests.guest.guest_checks import CONFIG, PILOTS, Run
from tests.guest.guest_ladder import agreed_frozen, owner_at_least

CONFIG_FILE = Path("/etc/plancton/config.yaml")
# The ladder's phases pin `usage` (their owner is CPU use); this one switches to the shipped
# rule with the shipped lines (10 % CPU full, 25 % io some): only the rule changes.
USAGE = "give_way: usage}"
PRESSURE_CONFIG = CONFIG.replace(USAGE, "give_way: pressure}")
# How long a CPU owner must leave the pilots alone: five times grace_kill, a few avg10 updates.
CPU_OWNER_SECONDS = 15
# The I/O owner: direct writes to a disk the owner's unit may write at 256 KiB/s only (io.max,
# set by systemd), so the writer waits on every write whatever the emulation's speed: an owner
# on a slow or busy disk. Unthrottled writes stalled too little under emulation.
IO_OWNER = (
    "while :; do dd if=/dev/zero of=/var/tmp/owner-io bs=64k count=16 oflag=direct"
    " status=none; done"
)
IO_LIMIT = "IOWriteBandwidthMax=/dev/vda 256K"
_SOURCE = re.compile(r"the owner's stalls \(PSI\) are read from its cgroups (.*)")
IDLE_NOTE = "owner cpu_pressure: not applied here"
_MORE = re.compile(r"\(\+(\d+) more\)")


def _reload_to(text: str) -> str:
    """Reload on `text`; the journal cursor from before it."""
    mark = g.cursor()
    CONFIG_FILE.write_text(text)
    g.sh(["systemctl", "reload", g.UNIT])
    g.wait_for("config-loaded event", lambda: g.events("config-loaded", mark), 60)
    return mark


def _pilots_parent_name(r: Run) -> str:
    return r.parent.removeprefix(g.CGROUP_ROOT + "/").split("/")[0]


def check_pressure_rule_reads_the_owners_cgroups(r: Run) -> str:
    """The daemon says which cgroups it reads the owner's stalls from: the owner's side of the
    tree, every top-level cgroup but the pilots' parent."""
    if CONFIG_FILE.read_text() != CONFIG:
        raise g.CheckFailed("the config is not the one the checks wrote")
    mark = _reload_to(PRESSURE_CONFIG)
    # The pilots are idle to the scheduler (cpu.idle=1, read from the kernel): the CPU line is
    # not applied, and the daemon says so once.
    idle_note = g.wait_for(
        "the note that the CPU line is not applied",
        lambda: next((ln for ln in g.unit_log(mark).splitlines() if IDLE_NOTE in ln), None),
        30,
    )
    log = g.sh(["journalctl", "--no-pager", "-o", "cat", "-u", g.UNIT])
    found = _SOURCE.findall(log)
    if not found:
        raise g.CheckFailed("the daemon never said it reads the owner's cgroups' PSI")
    source = found[-1]
    more = _MORE.search(source)
    named = [p.strip() for p in _MORE.sub("", source).split(",")]
    pilots = _pilots_parent_name(r)
    # The owner's side: every top-level cgroup but the pilots' parent (the log names a few).
    root = Path(g.CGROUP_ROOT)
    owner = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != pilots)
    count = len(named) + (int(more.group(1)) if more else 0)
    if pilots in named or not set(named) <= set(owner) or count != len(owner):
        raise g.CheckFailed(f"read from {source}; expected {owner} (pilots under {pilots})")
    user = g.read(f"{g.CGROUP_ROOT}/user.slice/io.pressure").splitlines()[0]
    return (
        f"read from cgroups {source}: {count}, all but {pilots}; user.slice io.pressure {user};"
        f" {idle_note[:90]}"
    )


def check_pressure_rule_keeps_pilots_beside_a_cpu_owner(r: Run) -> str:
    """Every vCPU busy in user.slice, plus a task waiting: the owner stalls itself, not for the
    pilots, which are idle to the scheduler and preempted at once; they keep running."""
    r.pilots = g.wait_pilots(PILOTS)
    r.owner = g.OwnerLoad("user.slice", r.ncpus + 1)
    r.mark = g.cursor()
    r.owner.start()
    try:
        seen = g.wait_for("the owner in Status", lambda: owner_at_least(r.ncpus / 2), 60)
        time.sleep(CPU_OWNER_SECONDS)
        full = g.some_avg10(f"{g.CGROUP_ROOT}/user.slice/cpu.pressure", "full")
        some = g.some_avg10(f"{g.CGROUP_ROOT}/user.slice/cpu.pressure")
        frozen = g.events("pilot-frozen", r.mark)
        stopped = g.events("pilot-stopped", r.mark)
        running = g.pilot_ids()
    finally:
        r.owner.stop()
    if frozen or stopped or running != sorted(p.id for p in r.pilots):
        raise g.CheckFailed(
            f"gave way to a CPU owner (user.slice cpu full avg10 {full}, some {some}): "
            f"{[e.get('MESSAGE') for e in (*frozen, *stopped)]}"
        )
    return (
        f"owner {seen['owner_cpu']:.2f} CPU for {CPU_OWNER_SECONDS} s, user.slice cpu.pressure "
        f"full avg10 {full} (some {some}): {PILOTS} pilots kept running"
    )


def check_pressure_rule_freezes_pilots_for_an_io_owner(r: Run) -> str:
    """An owner stalled on I/O in user.slice (io some over the 25 % line): pilots give way
    for `owner-io`, the daemon and the kernel's cgroup.freeze agreeing. (The pilots do not
    cause these stalls; the daemon cannot tell, and the check is about the reading.)"""
    r.mark = g.cursor()
    owner = "owner-io"
    g.sh(
        [
            "systemd-run",
            f"--unit={owner}",
            "--slice=user.slice",
            "-p",
            IO_LIMIT,
            "--quiet",
            "/bin/sh",
            "-c",
            IO_OWNER,
        ]
    )
    io_file = f"{g.CGROUP_ROOT}/user.slice/io.pressure"
    try:
        try:
            frozen = g.wait_for(
                "pilots frozen for the owner's I/O", lambda: agreed_frozen(r) or None, 120
            )
        except g.CheckFailed as exc:
            raise g.CheckFailed(f"{exc}; user.slice io.pressure: {g.read(io_file)}") from None
        io = g.some_avg10(io_file)
        events = g.events("pilot-frozen", r.mark)
    finally:
        g.sh(["systemctl", "stop", f"{owner}.service"], check=False)
        Path("/var/tmp/owner-io").unlink(missing_ok=True)
    reasons = {e.get("PLANCTON_REASON") for e in events}
    if reasons != {"owner-io"}:
        raise g.CheckFailed(f"frozen for {reasons}: {[e.get('MESSAGE') for e in events]}")
    return f"{len(frozen)} frozen, user.slice io some avg10 {io}: " + "; ".join(
        str(e.get("MESSAGE", ""))[:120] for e in events
    )


def check_usage_rule_restored(r: Run) -> str:
    """Back to the usage rule by a reload: the pilots frozen for I/O come back (only the
    pressure rule keeps pilots frozen for stalls they caused), and the next phase starts as
    this one did."""
    _reload_to(CONFIG)
    back = r.pilots = g.wait_pilots(PILOTS)
    g.wait_for("every pilot running, thawed", lambda: agreed_frozen(r) == [], 90)
    return f"{len(back)} pilots running under the usage rule"
