"""The pilots' parent cgroup, set up so the kernel treats everything in it as idle.

Why the kernel and not only the policy: a policy acts every tick (seconds), the scheduler every
few milliseconds. With `cpu.idle=1` on the parent, the CFS scheduler runs pilots only when no
owner task wants the CPU, so the owner gets its cores back at once and the policy's freeze/stop is
a second line of defence. Where the kernel has no `cpu.idle` (before 5.15), the lowest weight
(v2 `cpu.weight=1`) or shares (v1 `cpu.shares=2`) is the closest approximation.

Docker's cgroupfs driver creates missing cgroup directories itself, but then with default
settings, so planctond creates the parent first and configures it. With the systemd driver the
parent is a slice that systemd owns: the shipped `planctond.slice` unit sets `CPUWeight=idle`
(systemd >= 252 turns that into `cpu.idle=1` on cgroup v2); on v1, or without that unit, the file
is written directly once the slice exists.

Writing cgroup files needs root, while the daemon runs unprivileged: `planctond --setup-cgroup`
(`planctond.cli.setup_cgroup`), which the systemd unit runs as root (`ExecStartPre=+...`), calls
`ensure_idle_parent`. The daemon calls it too; when the setup is already in place it only reads,
so it succeeds without privileges.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Literal

from planctond import constants as C
from planctond.sensors.cgroups import (
    DRIVERS,
    CgroupError,
    CgroupLayout,
    parent_relpath,
)

Mode = Literal["cpu.idle", "weight", "shares"]

# v2 controllers pilots' limits need (cpus, memory, pids limit, blkio): enabled for the parent's
# children where the host offers them.
V2_CONTROLLERS: tuple[str, ...] = ("cpu", "io", "memory", "pids")
V1_LOWEST_SHARES = 2
V2_LOWEST_WEIGHT = 1
# Readable by all, as Docker and systemd make cgroups: the daemon runs as its own user.
CGROUP_DIR_MODE = 0o755
# Where an installed planctond.slice unit may be found (systemd's unit search path, system part).
SYSTEMD_UNIT_DIRS: tuple[str, ...] = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)

FIX_HINT = (
    "planctond needs root once to set up the pilots' idle cgroup: run `planctond --setup-cgroup` "
    "as root (the shipped planctond.service does this with "
    "`ExecStartPre=+/usr/bin/planctond --setup-cgroup`)"
)


class CgroupSetupError(CgroupError):
    """The idle parent could not be set up; the message names the path and the fix."""


@dataclass(frozen=True)
class IdleSetup:
    """What ensure_idle_parent found or did, for one log line."""

    mode: Mode
    path: str  # the parent's directory in the cpu controller (v1) or the unified tree (v2)
    driver: str
    version: int
    changed: bool  # False: everything was already in place (nothing written)
    created: tuple[str, ...] = ()
    note: str = ""

    def describe(self) -> str:
        setting = {
            "cpu.idle": "cpu.idle=1",
            "weight": f"cpu.weight={V2_LOWEST_WEIGHT}",
            "shares": f"cpu.shares={V1_LOWEST_SHARES}",
        }[self.mode]
        how = "set now" if self.changed else "already set"
        text = f"pilots' cgroup parent {self.path} (cgroup v{self.version}, {self.driver} driver): {setting}, {how}"
        if self.created:
            text += f"; created {len(self.created)} cgroup dirs"
        if self.note:
            text += f"; {self.note}"
        return text


def _make_cgroup(path: str) -> None:
    """mkdir in a cgroup filesystem (the kernel fills the new directory with its files). A
    module-level hook so tests can stand in for the kernel on a plain tmp tree.

    The mode is set after the mkdir because the root prestart runs under the unit's
    `UMask=0077`: a 0700 parent would hide the pilots' `cpu.stat` from the daemon's own user,
    which would then take the pilots' CPU for the owner's."""
    os.mkdir(path)
    os.chmod(path, CGROUP_DIR_MODE)


def _remove_cgroup(path: str) -> None:
    """rmdir in a cgroup filesystem (the kernel drops the interface files with it)."""
    os.rmdir(path)


def _fail(action: str, path: str, err: OSError) -> CgroupSetupError:
    why = err.strerror or str(err)
    if err.errno == errno.EROFS:
        hint = (
            "the cgroup filesystem is mounted read-only (inside a container? it needs "
            f"/sys/fs/cgroup mounted read-write); then {FIX_HINT}"
        )
    elif err.errno in (errno.EACCES, errno.EPERM):
        hint = FIX_HINT
    else:
        hint = "check the cgroup hierarchy (see `mount -t cgroup,cgroup2`)"
    return CgroupSetupError(f"cannot {action} {path}: {why}. {hint}")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return None


def _write(path: str, value: str) -> None:
    """Write without O_CREAT: cgroup files are made by the kernel, never by us, so a missing
    file is an error here just as it is on a real cgroupfs. O_TRUNC as a shell's `>` does
    (the kernel ignores it; a plain file in a test tree needs it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as err:
        raise _fail("open for writing", path, err) from err
    try:
        os.write(fd, value.encode("ascii"))
    except OSError as err:
        raise _fail(f"write {value!r} to", path, err) from err
    finally:
        os.close(fd)


def _mkdirs(base: str, rel: str, created: list[str], cpuset: bool = False) -> str:
    """Create base/rel one level at a time. cpuset: a new v1 cpuset cgroup starts with empty
    cpus/mems, and no task can join it (Docker fails to start containers) until they are copied
    from its parent."""
    path = base
    for part in rel.split("/"):
        parent, path = path, os.path.join(path, part)
        if not os.path.isdir(path):
            try:
                _make_cgroup(path)
                created.append(path)
            except FileExistsError:
                pass  # created concurrently (another setup or Docker itself): fine
            except OSError as err:
                raise _fail("create cgroup", path, err) from err
        if cpuset:  # also repairs a level someone else created without copying
            for name in ("cpuset.cpus", "cpuset.mems"):
                own = _read(os.path.join(path, name))
                if not own:
                    _write(os.path.join(path, name), _read(os.path.join(parent, name)) or "")
    return path


def _make_idle(cpu_dir: str) -> tuple[Mode, bool]:
    """cpu.idle=1 where the kernel has it, else the lowest weight/shares. Reads first: an
    already idle parent needs no privilege."""
    idle = os.path.join(cpu_dir, "cpu.idle")
    if os.path.exists(idle):
        if _read(idle) == "1":
            return "cpu.idle", False
        _write(idle, "1")
        return "cpu.idle", True
    weight = os.path.join(cpu_dir, "cpu.weight")
    if os.path.exists(weight):
        if _read(weight) == str(V2_LOWEST_WEIGHT):
            return "weight", False
        _write(weight, str(V2_LOWEST_WEIGHT))
        return "weight", True
    shares = os.path.join(cpu_dir, "cpu.shares")
    if os.path.exists(shares):
        if _read(shares) == str(V1_LOWEST_SHARES):
            return "shares", False
        _write(shares, str(V1_LOWEST_SHARES))
        return "shares", True
    raise CgroupSetupError(
        f"no cpu.idle, cpu.weight or cpu.shares in {cpu_dir}: the cpu controller is not "
        f"enabled there (cgroup v2: add +cpu to {os.path.dirname(cpu_dir)}/cgroup.subtree_control)"
    )


def _enable_v2(cgroup_dir: str) -> None:
    """Let `cgroup_dir`'s children use the controllers pilots need (those the dir has)."""
    available = set((_read(os.path.join(cgroup_dir, "cgroup.controllers")) or "").split())
    control = os.path.join(cgroup_dir, "cgroup.subtree_control")
    enabled = {c.lstrip("+") for c in (_read(control) or "").split()}
    missing = [c for c in V2_CONTROLLERS if c in available and c not in enabled]
    if missing:
        _write(control, " ".join("+" + c for c in missing))


def _setup_cgroupfs(layout: CgroupLayout, rel: str) -> tuple[str, list[str]]:
    created: list[str] = []
    if layout.version == 2:
        path = layout.root
        for part in rel.split("/"):
            _enable_v2(path)
            path = _mkdirs(path, part, created)
        _enable_v2(path)
        return path, created
    seen: set[str] = set()
    for ctrl, mount in sorted(layout.controllers.items()):
        real = os.path.realpath(mount)  # "cpu" and "cpuacct" may be one "cpu,cpuacct" mount
        if real in seen:
            continue
        seen.add(real)
        _mkdirs(mount, rel, created, cpuset=(ctrl == "cpuset" or "cpuset" in real.split(",")))
    cpu = layout.mount("cpu")
    if cpu is None:
        raise CgroupSetupError(f"no cpu controller mounted under {layout.root}")
    return os.path.join(cpu, rel), created


def _slice_unit_sets_idle(slice_name: str) -> str | None:
    """The installed unit file of this slice, if it sets CPUWeight=idle."""
    for d in SYSTEMD_UNIT_DIRS:
        unit = os.path.join(d, slice_name)
        text = _read(unit)
        if text and any(line.replace(" ", "") == "CPUWeight=idle" for line in text.splitlines()):
            return unit
    return None


def ensure_idle_parent(layout: CgroupLayout, parent: str, driver: str) -> IdleSetup:
    """Make (or check) the parent cgroup every pilot runs under, idle to the kernel."""
    if driver not in DRIVERS:
        raise CgroupSetupError(
            f"unknown Docker cgroup driver {driver!r}: expected one of {', '.join(DRIVERS)}"
        )
    rel = parent_relpath(parent, driver)
    if driver == "cgroupfs":
        cpu_dir, created = _setup_cgroupfs(layout, rel)
        mode, changed = _make_idle(cpu_dir)
        return IdleSetup(
            mode, cpu_dir, driver, layout.version, changed or bool(created), tuple(created)
        )
    # systemd owns the slice: never create its directories behind its back.
    base = layout.mount("cpu")
    if base is None:
        raise CgroupSetupError(f"no cpu controller mounted under {layout.root}")
    cpu_dir = os.path.join(base, rel)
    if os.path.isdir(cpu_dir):
        mode, changed = _make_idle(cpu_dir)
        return IdleSetup(mode, cpu_dir, driver, layout.version, changed)
    unit = _slice_unit_sets_idle(parent)
    if unit is not None and layout.version == 2:
        return IdleSetup(
            "cpu.idle",
            cpu_dir,
            driver,
            layout.version,
            False,
            note=f"not active yet; systemd applies CPUWeight=idle from {unit} when it starts",
        )
    raise CgroupSetupError(
        f"the pilots' slice {parent} is not active ({cpu_dir} does not exist): start it with "
        f"`systemctl start {parent}` (planctond.service pulls it in with Wants=/After={parent}), "
        f"then run `planctond --setup-cgroup` as root"
        + ("" if unit else f"; install the {parent} unit, which sets CPUWeight=idle")
    )


def remove_idle_parent(layout: CgroupLayout, parent: str, driver: str = "cgroupfs") -> None:
    """Remove a cgroupfs-driver parent (tests and benchmarks clean up with this). Only empty
    cgroups can be removed; a still-running pilot makes this fail with EBUSY."""
    if driver != "cgroupfs":
        raise CgroupSetupError("only the cgroupfs parent is ours to remove; systemd owns slices")
    rel = parent_relpath(parent, driver)
    if layout.version == 2:
        mounts = [layout.root]
    else:
        mounts = sorted(set(layout.controllers.values()))
        if layout.unified is not None:
            mounts.append(layout.unified)  # runc mirrored the path there (hybrid hosts)
    seen: set[str] = set()
    for mount in mounts:
        real = os.path.realpath(mount)
        if real in seen:
            continue
        seen.add(real)
        path = os.path.join(mount, rel)
        if os.path.isdir(path):
            try:
                _remove_cgroup(path)
            except OSError as err:
                raise _fail("remove cgroup", path, err) from err


def guess_driver(layout: CgroupLayout) -> str:
    """Docker's own default, for when Docker cannot be asked: systemd on a v2 host booted with
    systemd, else cgroupfs."""
    if layout.version == 2 and os.path.isdir("/run/systemd/system"):
        return "systemd"
    return "cgroupfs"


def parent_for(driver: str, configured: str | None) -> str:
    """The pilots' cgroup parent. The one place the default is chosen: the setup command and
    the daemon must agree on it, or the pilots would run outside the idle parent."""
    if configured:
        return configured
    return C.CGROUP_PARENT_SYSTEMD if driver == "systemd" else C.CGROUP_PARENT_CGROUPFS
