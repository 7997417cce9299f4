"""The checks a booted cgroup v2 guest runs (tests/guest/): what a host owner does with the .deb,
then what the daemon must do on the kernel's real interface, one named check each.

Each check takes the phase's `Run` (what earlier checks found) and returns what it saw, or
raises; `guest_main.py` runs them in order, once per Docker driver where the layout matters.
Standard library only, as the guest's python3 has it: the checks look at the daemon from outside
(systemd, the bus, the journal, Docker's API, the cgroup files), as an admin would.
"""

from __future__ import annotations

import glob
import json
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

from tests.guest import guest_lib as g

# Short clocks so the whole ladder plays out in about a minute: give way after 3 s of owner need,
# stop after 40 s frozen (room to see a freeze and a thaw under emulation), 20 s for a pilot to
# answer SIGTERM (an emulated `docker` takes seconds), 2 spinning pilots of half a CPU each. The
# probe pool never starts a pilot (run_when false): its `allowed` in Status is the daemon's own
# reading of CPU pressure, which the policy evaluates every tick.
CONFIG = """\
tick: 1s
config_check: 5s
owner: {reserve: 0, grace_kill: 3s, freeze: 40s, grace_spawn: 5s, give_way: usage}
pools:
  spin:
    image: busybox:latest
    pull: never
    command: ["sh", "-c", "while :; do :; done"]
    network_mode: none
    cpus: 0.5
    memory: 64M
    max_pilots: 2
    stop_grace: 20s
  pressure-probe:
    image: busybox:latest
    pull: never
    command: ["sleep", "1"]
    network_mode: none
    cpus: 0.01
    memory: 8M
    max_pilots: "min(100, round(cpu_pressure))"
    run_when: "false"
"""
# The watchdog is shortened before the first start: the check freezes the daemon and waits for it.
WATCHDOG_DROPIN = "[Service]\nWatchdogSec=10s\nRestartSec=1s\n"
PILOTS = 2
EXPOSURE_LIMIT = 1.5


class Run:
    """What the checks share: the inputs, the driver under test and what earlier checks found."""

    def __init__(self, inputs: Path, driver: str) -> None:
        self.inputs = inputs
        self.driver = driver
        self.ncpus = os.cpu_count() or 1
        self.pilots: list[g.Pilot] = []
        self.parent = ""  # the pilots' parent cgroup directory
        self.samples: list[dict[str, Any]] = []
        self.kernel_pilots_cpu = 0.0
        self.owner = g.OwnerLoad("user.slice", self.ncpus + 1)
        self.mark = ""  # journal cursor at the start of an owner phase
        self.idle_pressure = 0  # the policy's cpu_pressure before the owner came
        self.victims: list[str] = []  # the pilots the daemon froze for the last owner

    def expected_cgroup(self, container_id: str) -> str:
        if self.driver == "systemd":
            return f"{g.CGROUP_ROOT}/planctond.slice/docker-{container_id}.scope"
        return f"{g.CGROUP_ROOT}/planctond/{container_id}"


def check_cgroup_v2_with_docker_driver(r: Run) -> str:
    mounts = g.read("/proc/self/mounts").splitlines()
    if not any(m.split()[1:3] == [g.CGROUP_ROOT, "cgroup2"] for m in mounts):
        raise g.CheckFailed(f"{g.CGROUP_ROOT} is not cgroup2: {mounts}")
    switch = r.driver != _docker_driver()
    if switch:  # as an owner moving Docker to another driver does: configure, restart both
        Path("/etc/docker").mkdir(exist_ok=True)
        Path("/etc/docker/daemon.json").write_text(
            json.dumps({"exec-opts": [f"native.cgroupdriver={r.driver}"]}) + "\n"
        )
        g.sh(["systemctl", "restart", "docker.service"])
        g.wait_for("Docker answering", _docker_driver, 120)
        g.sh(["systemctl", "restart", g.UNIT], timeout=600)
    info = _docker_driver()
    if info != r.driver:
        raise g.CheckFailed(f"Docker's cgroup driver is {info!r}, expected {r.driver!r}")
    control = g.read(f"{g.CGROUP_ROOT}/cgroup.subtree_control")
    how = "switched to it, Docker and planctond restarted" if switch else "Docker's default"
    return f"{info} driver ({how}); delegated at the root: {control}; {os.uname().release}"


def _docker_driver() -> str:
    info = g.docker("GET", "/info")
    if info["CgroupVersion"] != "2":
        raise g.CheckFailed(f"Docker sees cgroup v{info['CgroupVersion']}")
    return str(info["CgroupDriver"])


def check_pilot_image_built_locally(r: Run) -> str:
    g.sh(["bash", str(r.inputs / "images.sh"), "busybox"])
    return g.sh(["docker", "image", "inspect", "-f", "{{.Id}}", "busybox:latest"]).strip()


def check_apt_install_from_local_package_cache(r: Run) -> str:
    """As a host owner installs it, with the guest's only apt source a local repository made on
    the host from Debian's packages (there is no network in the guest)."""
    os.makedirs("/etc/plancton", exist_ok=True)
    Path("/etc/plancton/config.yaml").write_text(CONFIG)
    dropin = Path("/etc/systemd/system/planctond.service.d/50-guest.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(WATCHDOG_DROPIN)
    sources = Path("/etc/apt/sources.list.d")
    for f in sources.glob("*.sources"):
        f.rename(f.with_suffix(".offline"))
    (sources / "local-cache.list").write_text(f"deb [trusted=yes] file:{r.inputs}/repo ./\n")
    g.sh(["apt-get", "update", "-q"])
    deb = sorted(glob.glob(str(r.inputs / "planctond_*_all.deb")))[-1]
    out = g.sh(
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "-o",
            "Dpkg::Options::=--force-confold",
            f"./{os.path.basename(deb)}",
        ],
        timeout=900,
        cwd=str(r.inputs),
        live=True,
    )
    if "Setting up planctond" not in out:
        raise g.CheckFailed(out[-3000:])
    came = re.findall(r"^Setting up (\S+)", out, re.M)
    return f"{os.path.basename(deb)} and {len(came) - 1} dependencies: {' '.join(came)}"


def check_unit_active_unprivileged(r: Run) -> str:
    g.wait_for("active unit", lambda: g.unit_prop("ActiveState") == "active", 180)
    pid = g.unit_prop("MainPID")
    user = g.sh(["ps", "-o", "user=", "-p", pid]).strip()
    enabled = g.sh(["systemctl", "is-enabled", g.UNIT]).strip()
    if user != "plancton" or enabled != "enabled":
        raise g.CheckFailed(f"main process {pid} runs as {user!r}; unit {enabled!r}")
    return f"active, enabled, pid {pid} as {user}"


def check_pilots_in_idle_parent(r: Run) -> str:
    r.pilots = g.wait_pilots(PILOTS)
    for p in r.pilots:
        if p.cgroup != r.expected_cgroup(p.id):
            raise g.CheckFailed(f"pilot in {p.cgroup}, expected {r.expected_cgroup(p.id)}")
    r.parent = os.path.dirname(r.pilots[0].cgroup)
    idle = g.read(f"{r.parent}/cpu.idle")
    if idle != "1":
        raise g.CheckFailed(f"{r.parent}/cpu.idle is {idle!r}")
    detail = f"{[p.cgroup for p in r.pilots]}; {r.parent}/cpu.idle=1"
    if r.driver == "systemd":
        weight = g.unit_prop("CPUWeight", "planctond.slice")
        if weight != "idle":
            raise g.CheckFailed(f"planctond.slice CPUWeight={weight!r}")
        detail += "; planctond.slice CPUWeight=idle"
    return detail


def check_pilots_cpu_from_v2_cpu_stat(r: Run) -> str:
    """The daemon's pilots figure (host less owner, per tick) against the kernel's own counter
    of the parent over the same ~16 s, while both pilots spin at their 0.5-CPU quota."""
    t0, u0 = time.monotonic(), g.usage_seconds(r.parent)
    r.samples = []
    for _ in range(8):
        time.sleep(2)
        r.samples.append(g.status())
    r.kernel_pilots_cpu = (g.usage_seconds(r.parent) - u0) / (time.monotonic() - t0)
    kernel = r.kernel_pilots_cpu
    daemon = statistics.median(s["host_cpu"] - s["owner_cpu"] for s in r.samples)
    # By design the pilots' figure is capped at the host's busy time from /proc/stat, and an
    # emulated guest on a busy machine under-counts those ticks (not the scheduler's cpu.stat).
    expected = statistics.median(min(s["host_cpu"], kernel) for s in r.samples)
    listed = [row[-1] for row in g.call("ListPilots", json_out=True) if row[2] == g.SPIN_POOL]
    detail = (
        f"daemon {daemon:.2f} CPU (host {expected:.2f} at most), kernel cpu.stat {kernel:.2f}, "
        f"per pilot {listed}; {_mode(r.parent)}"
    )
    if kernel < 0.5 or daemon < 0.3 or abs(daemon - expected) > 0.3 * expected:
        raise g.CheckFailed(detail)
    if len(listed) != PILOTS or min(listed) < 0.1:  # each pilot's own cpu.stat, by its scope name
        raise g.CheckFailed(detail)
    return detail


# The daemon's own cgroup reader, run from the installed package as the daemon's user: the
# pilots' memory (memory.current less inactive_file) and each pilot's path are not in Status.
SENSOR = """
import json, sys
from planctond.engine.cgroup_parent import parent_for
from planctond.sensors.cgroups import CgroupLayout, PilotCgroups
driver, ids = sys.argv[1], sys.argv[2:]
pc = PilotCgroups(CgroupLayout.detect(), parent_for(driver, None), driver)
print(json.dumps({"cpu": pc.total_cpu_seconds(), "memory": pc.memory_bytes(),
    "paths": [pc.container_paths(i)["unified"] for i in ids],
    "own": [pc.container_cpu_seconds(i[:12]) for i in ids]}))
"""


def _kernel_memory(parent: str) -> int:
    stat = g.flat_keyed(f"{parent}/memory.stat")
    return int(g.read(f"{parent}/memory.current")) - int(stat["inactive_file"])


def check_pilot_readings_by_the_installed_sensor(r: Run) -> str:
    ids = [p.id for p in r.pilots]
    cpu0, mem0 = g.usage_seconds(r.parent), _kernel_memory(r.parent)
    argv = ["runuser", "-u", "plancton", "--", "python3", "-c", SENSOR, r.driver, *ids]
    got = json.loads(g.sh(argv).strip().splitlines()[-1])
    cpu1, mem1 = g.usage_seconds(r.parent), _kernel_memory(r.parent)
    detail = (
        f"sensor {got}; kernel cpu {cpu0:.1f}..{cpu1:.1f} s, memory {mem0}..{mem1} bytes; "
        f"{_mode(r.parent)}"
    )
    if None in (got["cpu"], got["memory"], *got["own"]):
        raise g.CheckFailed(f"the daemon's user cannot read the pilots' cgroups: {detail}")
    slack = 256 << 10  # the pilots' shells may touch a page or two meanwhile
    if not (
        cpu0 <= got["cpu"] <= cpu1
        and min(mem0, mem1) - slack <= got["memory"] <= max(mem0, mem1) + slack
    ):
        raise g.CheckFailed(detail)
    if got["paths"] != [p.cgroup for p in r.pilots] or not all(
        0 < o <= got["cpu"] for o in got["own"]
    ):
        raise g.CheckFailed(detail)
    return detail


def _mode(path: str) -> str:
    """Who may read the pilots' parent: the daemon runs as `plancton`, not root."""
    st = os.stat(path)
    return f"{path} mode {st.st_mode & 0o777:o}, owner uid {st.st_uid}"


def check_owner_cpu_not_the_pilots(r: Run) -> str:
    """While the pilots spin and nobody else works, the owner's CPU is near zero: the pilots'
    load, read from their cgroup, is never taken for the owner's."""
    owner = statistics.median(s["owner_cpu"] for s in r.samples)
    host = statistics.median(s["host_cpu"] for s in r.samples)
    detail = f"owner {owner:.2f} CPU of host {host:.2f} with pilots at {r.kernel_pilots_cpu:.2f}"
    if owner > 0.5 or r.kernel_pilots_cpu < 0.5:
        raise g.CheckFailed(detail)
    return detail


def check_reload_with_broken_file_keeps_old_config(r: Run) -> str:
    good = Path("/etc/plancton/config.yaml").read_text()
    pid, before, mark = g.unit_prop("MainPID"), g.pilot_ids(), g.cursor()
    Path("/etc/plancton/config.yaml").write_text(
        good.replace("max_pilots: 2", 'max_pilots: "ncpus +* 2"')
    )
    try:
        g.sh(["systemctl", "reload", g.UNIT])
        rejected = g.wait_for(
            "config-rejected event", lambda: g.events("config-rejected", mark), 60
        )
        time.sleep(5)  # a few ticks on the old config
        state = (g.unit_prop("ActiveState"), g.unit_prop("MainPID"), g.pilot_ids(), g.prop("State"))
        if state != ("active", pid, before, "active"):
            raise g.CheckFailed(f"after the refused reload: {state}, before: {pid} {before}")
    finally:
        Path("/etc/plancton/config.yaml").write_text(good)
        g.sh(["systemctl", "reload", g.UNIT])
    return str(rejected[0]["MESSAGE"])[:300]


def check_drain_and_resume_over_busctl(r: Run) -> str:
    g.call("Drain")
    g.wait_for("state draining", lambda: g.prop("State") == "draining", 30)
    g.docker("POST", f"/containers/{g.pilot_ids()[0]}/stop?t=1")
    time.sleep(10)  # several ticks: a draining daemon starts no replacement
    left = g.pilot_ids()
    if len(left) != PILOTS - 1:
        raise g.CheckFailed(f"draining, yet {len(left)} pilots run")
    g.call("Resume")
    g.wait_for("state active", lambda: g.prop("State") == "active", 30)
    r.pilots = g.wait_pilots(PILOTS)
    return f"drained to {len(left)} pilot, resumed to {PILOTS}"


def check_watchdog_restarts_frozen_daemon_which_adopts_pilots(r: Run) -> str:
    before, restarts, pid, mark = (
        g.pilot_ids(),
        int(g.unit_prop("NRestarts")),
        g.unit_prop("MainPID"),
        g.cursor(),
    )
    g.sh(["kill", "-STOP", pid])
    g.wait_for(
        "restart",
        lambda: int(g.unit_prop("NRestarts")) > restarts and g.unit_prop("ActiveState") == "active",
        180,
    )
    g.wait_for(f"{PILOTS} adopted pilots", lambda: g.prop("RunningPilots") == str(PILOTS), 90)
    log, after = g.unit_log(mark), g.pilot_ids()
    lost = g.events("pilot-stopped", mark) + g.events("pilot-killed", mark)
    if "Watchdog timeout" not in log or after != before or lost:
        raise g.CheckFailed(
            f"pilots {before} -> {after}, stopped/killed {len(lost)}:\n{log[-3000:]}"
        )
    return f"pid {pid} -> {g.unit_prop('MainPID')}, same {PILOTS} pilots"


def check_security_exposure(r: Run) -> str:
    out = g.sh(["systemd-analyze", "security", "--no-pager", g.UNIT], check=False)
    level = re.search(r"Overall exposure level for planctond.service: ([\d.]+) (\S+)", out)
    if not level or float(level.group(1)) > EXPOSURE_LIMIT:
        raise g.CheckFailed(out[-4000:])
    return f"exposure {level.group(1)} {level.group(2)}"
