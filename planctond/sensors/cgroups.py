"""Where the pilots' cgroups live, and what they have used.

Every pilot runs under one parent cgroup (Docker's `cgroup_parent`), so the pilots' total CPU is a
single counter read: the parent's. The owner's CPU use is then the host's busy time minus that
counter, which is what keeps a lone pilot's own load from being mistaken for the owner's (the
Plancton 0.6 spawn-then-kill loop). Reading the kernel's counters directly costs microseconds;
`docker stats` costs a round trip per container.

Paths, as Docker (runc) lays them out:

| driver   | cgroup v1 (per controller mount `<ctrl>`)   | cgroup v2 (unified `<root>`)           |
|----------|---------------------------------------------|----------------------------------------|
| cgroupfs | `<ctrl>/<parent>/<id>`                      | `<root>/<parent>/<id>`                 |
| systemd  | `<ctrl>/<slice path>/docker-<id>.scope`     | `<root>/<slice path>/docker-<id>.scope`|

where a slice path expands systemd's dashes: `a-b.slice` lives in `a.slice/a-b.slice`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

Driver = Literal["cgroupfs", "systemd"]
DRIVERS: tuple[str, ...] = ("cgroupfs", "systemd")
V1_CONTROLLERS = frozenset(
    {
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "hugetlb",
        "memory",
        "misc",
        "net_cls",
        "net_prio",
        "perf_event",
        "pids",
        "rdma",
    }
)

# Mount directories under a v1 root that are not controllers.
_NOT_CONTROLLERS = frozenset({"unified"})
MOUNTS_FILE = "/proc/self/mounts"


def _unescape(field: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _mounted_hierarchies(root: str, mounts_file: str) -> tuple[dict[str, str], str | None] | None:
    """v1 controller -> mount point, and a v2 mount, for cgroup filesystems mounted directly
    under `root`; None when nothing is mounted there (a test tree, or no /proc)."""
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    real_root = os.path.realpath(root)
    controllers: dict[str, str] = {}
    unified: str | None = None
    found = False
    for line in lines:
        fields = line.split()
        if len(fields) < 4 or fields[2] not in ("cgroup", "cgroup2"):
            continue
        point = _unescape(fields[1])
        if os.path.dirname(point) != real_root:
            continue
        found = True
        if fields[2] == "cgroup2":
            unified = point
            continue
        for opt in fields[3].split(","):
            if opt.startswith("name="):
                controllers[opt[len("name=") :]] = point
            elif opt in V1_CONTROLLERS:
                controllers[opt] = point
    return (controllers, unified) if found else None


class CgroupError(Exception):
    """The cgroup hierarchy is not what planctond can work with; the message says what is wrong."""


@dataclass(frozen=True)
class CgroupLayout:
    """The host's cgroup hierarchy: v2 (one unified tree) or v1 (one mount per controller)."""

    version: int
    root: str
    controllers: dict[str, str] = field(default_factory=dict)  # v1: controller -> mount dir
    # v1 "hybrid" hosts also mount an empty v2 tree (e.g. /sys/fs/cgroup/unified) where runc
    # mirrors each container's path: nothing to read there, but cleanup must know it.
    unified: str | None = None

    @classmethod
    def detect(cls, root: str = "/sys/fs/cgroup", mounts_file: str = MOUNTS_FILE) -> CgroupLayout:
        """Tell v1 from v2 by the files the kernel puts there, so a test can point `root` at a
        tree of plain files. A v2 tree mounted beside v1 controllers (the "hybrid" layout, e.g.
        /sys/fs/cgroup/unified) holds no controllers: that host is v1.

        v1 controllers are taken from the mount table when cgroups are mounted under `root`:
        a plain directory there (systemd in a container sharing the host's /sys/fs/cgroup
        leaves some, e.g. `hugetlb` when it is not mounted) is not a controller, and creating
        the pilots' parent in it would only litter a tmpfs."""
        if os.path.isfile(os.path.join(root, "cgroup.controllers")):
            return cls(version=2, root=root)
        mounted = _mounted_hierarchies(root, mounts_file)
        if mounted is not None and mounted[0]:
            table, unified = mounted
            # Keep the caller's spelling of root (mount points are real paths).
            base = os.path.realpath(root)
            rebased = {k: os.path.join(root, os.path.relpath(v, base)) for k, v in table.items()}
            uni = None if unified is None else os.path.join(root, os.path.relpath(unified, base))
            return cls(version=1, root=root, controllers=dict(sorted(rebased.items())), unified=uni)
        controllers: dict[str, str] = {}
        try:
            entries = sorted(os.listdir(root))
        except OSError as err:
            raise CgroupError(f"cannot read the cgroup root {root}: {err}") from err
        for entry in entries:
            path = os.path.join(root, entry)
            if entry in _NOT_CONTROLLERS or not os.path.isdir(path):
                continue
            for name in entry.split(","):
                # An exact mount name ("cpu" -> "cpu,cpuacct" symlink) wins over a joint one.
                if name not in controllers or entry == name:
                    controllers[name] = path
        if not controllers:
            raise CgroupError(
                f"no cgroup hierarchy under {root}: neither cgroup.controllers (v2) "
                "nor controller mounts (v1) found"
            )
        hybrid = os.path.join(root, "unified")
        unified = hybrid if os.path.isfile(os.path.join(hybrid, "cgroup.controllers")) else None
        return cls(version=1, root=root, controllers=controllers, unified=unified)

    def mount(self, controller: str) -> str | None:
        """The directory a controller's tree starts at: its v1 mount, or the v2 root."""
        if self.version == 2:
            return self.root
        return self.controllers.get(controller)

    @property
    def cpu(self) -> str | None:
        return self.mount("cpu")

    @property
    def cpuacct(self) -> str | None:
        return self.mount("cpuacct")

    @property
    def memory(self) -> str | None:
        return self.mount("memory")

    @property
    def freezer(self) -> str | None:
        return self.mount("freezer")


def slice_path(slice_name: str) -> str:
    """systemd nests a slice under every prefix its dashes mark: `a-b-c.slice` is
    `a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root."""
    if not slice_name.endswith(".slice"):
        raise CgroupError(
            f"with the systemd cgroup driver the cgroup parent must be a slice name "
            f"ending in .slice, not {slice_name!r}"
        )
    stem = slice_name[: -len(".slice")]
    if stem in ("", "-"):
        return ""
    parts = stem.split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))


def parent_relpath(parent: str, driver: str) -> str:
    """The parent's path relative to a controller's root, as Docker will use it."""
    if driver == "systemd":
        return slice_path(parent)
    if driver == "cgroupfs":
        rel = os.path.normpath("/" + parent).lstrip("/")
        if not rel or rel == ".":
            raise CgroupError("the pilots' cgroup parent must not be the root cgroup")
        return rel
    raise CgroupError(f"unknown cgroup driver {driver!r}: expected one of {', '.join(DRIVERS)}")


def scope_relpath(scope: str) -> str:
    """`owner.cgroup` relative to a controller's root: a slice name is laid out as systemd does,
    a path is taken as it is."""
    if scope.endswith(".slice") and "/" not in scope:
        return slice_path(scope)
    rel = os.path.normpath("/" + scope).lstrip("/")
    if not rel or rel == ".":
        raise CgroupError("the owner's cgroup must not be the root cgroup (leave it unset)")
    return rel


def contains(outer: str, inner: str) -> bool:
    """Whether the cgroup at relative path `inner` is `outer` or below it."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def cpu_seconds(layout: CgroupLayout, relpath: str) -> float | None:
    """Cumulative CPU seconds of the cgroup at `relpath` and everything below it; None when it
    does not exist (yet) or has no CPU accounting."""
    mount = layout.mount("cpuacct")
    return None if mount is None else _cpu_seconds_at(layout, os.path.join(mount, relpath))


def _cpu_seconds_at(layout: CgroupLayout, cgroup_dir: str | None) -> float | None:
    if cgroup_dir is None:
        return None
    if layout.version == 2:
        usec = _stat_field(os.path.join(cgroup_dir, "cpu.stat"), "usage_usec")
        return None if usec is None else usec / 1e6
    nsec = _read_int(os.path.join(cgroup_dir, "cpuacct.usage"))
    return None if nsec is None else nsec / 1e9


def container_dirname(container_id: str, driver: str) -> str:
    return f"docker-{container_id}.scope" if driver == "systemd" else container_id


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _stat_field(path: str, key: str) -> int | None:
    """One `key value` line of a flat-keyed cgroup file (cpu.stat, memory.stat)."""
    text = _read_text(path)
    if text is None:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value)
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class OwnerScope:
    """`owner.cgroup`: the part of the host whose CPU use is the owner's (e.g. `user.slice`: the
    people logged in, not the system's services). Pilots inside it are taken out, as from the
    whole host's use."""

    name: str  # as the config gives it, for messages
    layout: CgroupLayout
    relpath: str
    holds_pilots: bool

    @classmethod
    def of(cls, name: str, pilots: PilotCgroups) -> OwnerScope:
        rel = scope_relpath(name)
        return cls(name, pilots.layout, rel, contains(rel, pilots.relpath))

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.layout, self.relpath)


class PilotCgroups:
    """Reads the pilots' usage from their common parent cgroup (and, for display, each pilot's)."""

    def __init__(self, layout: CgroupLayout, parent: str, driver: str) -> None:
        self.layout = layout
        self.parent = parent
        self.driver = driver
        self.relpath = parent_relpath(parent, driver)

    # --- paths ---------------------------------------------------------------------------------
    def parent_path(self, controller: str) -> str | None:
        mount = self.layout.mount(controller)
        return None if mount is None else os.path.join(mount, self.relpath)

    def container_paths(self, container_id: str) -> dict[str, str]:
        """controller -> the pilot's cgroup directory (v2: one entry, "unified"). For debugging:
        paths are computed, not checked."""
        name = container_dirname(container_id, self.driver)
        if self.layout.version == 2:
            return {"unified": os.path.join(self.layout.root, self.relpath, name)}
        return {
            ctrl: os.path.join(mount, self.relpath, name)
            for ctrl, mount in sorted(self.layout.controllers.items())
        }

    def _container_dir(self, controller: str, container_id: str) -> str | None:
        base = self.parent_path(controller)
        if base is None:
            return None
        path = os.path.join(base, container_dirname(container_id, self.driver))
        if os.path.isdir(path) or len(container_id) >= 64:
            return path
        # A short id: find the one pilot whose full id starts with it.
        prefix = container_dirname(container_id, self.driver).removesuffix(".scope")
        try:
            matches = [e for e in os.listdir(base) if e.startswith(prefix)]
        except OSError:
            return None
        return os.path.join(base, matches[0]) if len(matches) == 1 else None

    # --- readings ------------------------------------------------------------------------------
    def total_cpu_seconds(self) -> float | None:
        """Cumulative CPU seconds of all pilots (the parent's counter, which includes its
        children's); None until the parent exists."""
        return cpu_seconds(self.layout, self.relpath)

    def container_cpu_seconds(self, container_id: str) -> float | None:
        return _cpu_seconds_at(self.layout, self._container_dir("cpuacct", container_id))

    def memory_bytes(self) -> int | None:
        """The pilots' working set: usage minus inactive page cache, the figure `docker stats`
        shows. Inactive file pages are reclaimed first under pressure, so counting them would
        make pilots look like they hold memory the owner can in fact have."""
        base = self.parent_path("memory")
        if base is None:
            return None
        if self.layout.version == 2:
            usage = _read_int(os.path.join(base, "memory.current"))
            inactive = _stat_field(os.path.join(base, "memory.stat"), "inactive_file")
        else:
            usage = _read_int(os.path.join(base, "memory.usage_in_bytes"))
            inactive = _stat_field(os.path.join(base, "memory.stat"), "total_inactive_file")
        if usage is None:
            return None
        return max(0, usage - (inactive or 0))
