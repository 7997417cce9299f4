"""CgroupLayout, PilotCgroups and the idle parent against fake cgroup v1 and v2 trees.

The trees hold the files the kernel shows, in the kernel's formats; `FakeKernel.mkdir` stands in
for the kernel when a cgroup directory is created (it fills the new directory with the interface
files the enabled controllers provide), so the code under test runs unchanged.

cgroup v2 as hosts run it (cpu.idle, both Docker drivers, the pilots' readings, a systemd slice
made by its unit) is proven in a booted guest (tests/guest/), so the v2 trees here cover only what
no guest here boots: kernels without `cpu.idle`, controllers not delegated, refused writes, a
missing slice unit. The v1 trees cover v1 with the systemd driver, which CI's own hosts do not run.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from planctond import constants as C
from planctond.cli import setup_cgroup
from planctond.engine import cgroup_parent
from planctond.engine.cgroup_parent import (
    CgroupSetupError,
    ensure_idle_parent,
    guess_driver,
    parent_for,
    remove_idle_parent,
)
from planctond.sensors.cgroups import (
    CgroupError,
    CgroupLayout,
    PilotCgroups,
    parent_relpath,
    slice_path,
)

CID = "3f1c0ffee" + "a" * 55  # a full 64-character container id
V1_CONTROLLERS = ("blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids")
V2_ALL = "cpuset cpu io memory hugetlb pids rdma misc"


def _w(path: Path, text: str) -> None:
    path.write_text(text)


# --- cgroup v1 ----------------------------------------------------------------------------------
def _v1_files(ctrl: str, root: bool, cpu_idle: bool) -> dict[str, str]:
    files = {
        "cgroup.procs": "",
        "tasks": "",
        "notify_on_release": "0",
        "cgroup.clone_children": "0",
    }
    if root:
        files |= {"release_agent": "", "cgroup.sane_behavior": "0\n"}
    if ctrl == "cpu":
        files |= {
            "cpu.shares": "1024\n",
            "cpu.cfs_quota_us": "-1\n",
            "cpu.cfs_period_us": "100000\n",
            "cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
        }
        if cpu_idle:
            files["cpu.idle"] = "0\n"
    elif ctrl == "cpuacct":
        files |= {"cpuacct.usage": "0\n", "cpuacct.stat": "user 0\nsystem 0\n"}
    elif ctrl == "cpuset":
        files |= {
            "cpuset.cpus": "0-3\n" if root else "\n",
            "cpuset.mems": "0\n" if root else "\n",
            "cpuset.cpu_exclusive": "1\n" if root else "0\n",
        }
    elif ctrl == "memory":
        files |= {
            "memory.usage_in_bytes": "0\n",
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.stat": "cache 0\nrss 0\ntotal_cache 0\ntotal_rss 0\ntotal_inactive_file 0\n",
        }
    elif ctrl == "freezer" and not root:
        files["freezer.state"] = "THAWED\n"
    elif ctrl == "pids" and not root:
        files |= {"pids.current": "0\n", "pids.max": "max\n"}
    return files


def _v2_files(enabled: set[str], root: bool, cpu_idle: bool) -> dict[str, str]:
    files = {
        "cgroup.procs": "",
        "cgroup.threads": "",
        "cgroup.subtree_control": "\n",
        "cgroup.max.depth": "max\n",
        "cgroup.stat": "nr_descendants 0\nnr_dying_descendants 0\n",
        "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    }
    files["cgroup.controllers"] = (V2_ALL if root else " ".join(sorted(enabled))) + "\n"
    if not root:
        files |= {
            "cgroup.freeze": "0\n",
            "cgroup.events": "populated 0\nfrozen 0\n",
            "cgroup.type": "domain\n",
        }
        if "cpu" in enabled:
            files["cpu.stat"] += (
                "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n"
            )
            files |= {"cpu.weight": "100\n", "cpu.weight.nice": "0\n", "cpu.max": "max 100000\n"}
            if cpu_idle:
                files["cpu.idle"] = "0\n"
        if "memory" in enabled:
            files |= {
                "memory.current": "0\n",
                "memory.max": "max\n",
                "memory.stat": "anon 0\nfile 0\nactive_file 0\ninactive_file 0\n",
            }
        if "pids" in enabled:
            files |= {"pids.current": "0\n", "pids.max": "max\n"}
    return files


class FakeKernel:
    """A tmp cgroup tree plus the kernel's side of mkdir."""

    def __init__(self, root: Path, version: int, cpu_idle: bool = True, joint: bool = False):
        self.root = root
        self.version = version
        self.cpu_idle = cpu_idle
        root.mkdir(parents=True)
        if version == 2:
            self._fill(root, _v2_files(set(), root=True, cpu_idle=cpu_idle))
        else:
            for ctrl in V1_CONTROLLERS:
                if joint and ctrl in ("cpu", "cpuacct"):
                    continue
                d = root / ctrl
                d.mkdir()
                self._fill(d, _v1_files(ctrl, root=True, cpu_idle=cpu_idle))
            if joint:  # Debian 10 style: one "cpu,cpuacct" mount and two symlinks to it
                d = root / "cpu,cpuacct"
                d.mkdir()
                self._fill(d, _v1_files("cpu", True, cpu_idle) | _v1_files("cpuacct", True, False))
                (root / "cpu").symlink_to("cpu,cpuacct")
                (root / "cpuacct").symlink_to("cpu,cpuacct")
            (root / "unified").mkdir()  # the hybrid layout's v2 mount: no controllers
            _w(root / "unified" / "cgroup.controllers", "\n")

    @staticmethod
    def _fill(d: Path, files: dict[str, str]) -> None:
        for name, text in files.items():
            _w(d / name, text)

    def mkdir(self, path: str) -> None:
        p = Path(path)
        os.mkdir(p)
        if self.version == 2:
            ctl = (p.parent / "cgroup.subtree_control").read_text().split()
            enabled = {c.lstrip("+") for c in ctl}
            self._fill(p, _v2_files(enabled, root=False, cpu_idle=self.cpu_idle))
        else:
            rel = p.relative_to(self.root)
            mount = rel.parts[0]
            files: dict[str, str] = {}
            for ctrl in mount.split(","):
                files |= _v1_files(ctrl, root=False, cpu_idle=self.cpu_idle)
            self._fill(p, files)

    def rmdir(self, path: str) -> None:
        p = Path(path)
        if any(c.is_dir() for c in p.iterdir()):
            raise OSError(errno.EBUSY, "Device or resource busy", path)
        for f in p.iterdir():
            f.unlink()
        p.rmdir()

    def make(self, rel: str) -> Path:
        """mkdir -p as the kernel would (for trees Docker or systemd would have made)."""
        p = self.root
        for part in rel.strip("/").split("/"):
            p = p / part
            if not p.exists():
                if self.version == 2:
                    parent_ctl = p.parent / "cgroup.subtree_control"
                    parent_ctl.write_text("cpu io memory pids\n")
                self.mkdir(str(p))
        return p


@pytest.fixture
def kernel_v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    k = FakeKernel(tmp_path / "cg", 1)
    monkeypatch.setattr(cgroup_parent, "_make_cgroup", k.mkdir)
    monkeypatch.setattr(cgroup_parent, "_remove_cgroup", k.rmdir)
    return k


@pytest.fixture
def kernel_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    k = FakeKernel(tmp_path / "cg", 2)
    monkeypatch.setattr(cgroup_parent, "_make_cgroup", k.mkdir)
    monkeypatch.setattr(cgroup_parent, "_remove_cgroup", k.rmdir)
    return k


# --- layout -------------------------------------------------------------------------------------
def test_detect_v1_hybrid_ignores_unified(kernel_v1: FakeKernel) -> None:
    layout = CgroupLayout.detect(str(kernel_v1.root))
    assert layout.version == 1
    assert layout.cpu == str(kernel_v1.root / "cpu")
    assert layout.cpuacct == str(kernel_v1.root / "cpuacct")
    assert layout.freezer == str(kernel_v1.root / "freezer")
    assert "unified" not in layout.controllers
    assert layout.unified == str(kernel_v1.root / "unified")


def test_detect_v1_joint_mount_prefers_exact_names(tmp_path: Path) -> None:
    k = FakeKernel(tmp_path / "cg", 1, joint=True)
    layout = CgroupLayout.detect(str(k.root))
    assert layout.cpu == str(k.root / "cpu")
    assert layout.cpuacct == str(k.root / "cpuacct")


def test_detect_v1_from_mount_table(kernel_v1: FakeKernel, tmp_path: Path) -> None:
    """Only mounted hierarchies count: a stray plain directory is not a controller."""
    stray = kernel_v1.root / "hugetlb"
    stray.mkdir()
    (kernel_v1.root / "systemd").mkdir()  # the named systemd hierarchy (no controller files)
    root = str(kernel_v1.root)
    mounts = tmp_path / "mounts"
    lines = ["proc /proc proc rw,nosuid 0 0", f"tmpfs {root} tmpfs ro,relatime,mode=755 0 0"]
    lines += [f"cgroup {root}/{c} cgroup rw,relatime,{c} 0 0" for c in V1_CONTROLLERS]
    lines += [
        f"cgroup {root}/systemd cgroup rw,nosuid,xattr,name=systemd 0 0",
        f"cgroup2 {root}/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0",
        f"cgroup {root}/elsewhere/cpu cgroup rw,cpu 0 0",  # not directly under root: ignored
    ]
    mounts.write_text("\n".join(lines) + "\n")
    layout = CgroupLayout.detect(root, mounts_file=str(mounts))
    assert set(layout.controllers) == {*V1_CONTROLLERS, "systemd"}
    assert layout.unified == f"{root}/unified"
    assert "hugetlb" in CgroupLayout.detect(root, mounts_file=str(tmp_path / "none")).controllers
    ensure_idle_parent(layout, "/planctond", "cgroupfs")
    assert not (stray / "planctond").exists()
    assert (kernel_v1.root / "pids" / "planctond").is_dir()


def test_detect_mount_points_with_escapes(tmp_path: Path) -> None:
    root = tmp_path / "cg root"
    (root / "cpu,cpuacct").mkdir(parents=True)
    esc = str(root).replace(" ", "\\040")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup {esc}/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n")
    layout = CgroupLayout.detect(str(root), mounts_file=str(mounts))
    assert layout.cpu == layout.cpuacct == str(root / "cpu,cpuacct")
    assert layout.memory is None and layout.unified is None


def test_detect_nothing(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="no cgroup hierarchy"):
        CgroupLayout.detect(str(tmp_path))
    with pytest.raises(CgroupError, match="cannot read"):
        CgroupLayout.detect(str(tmp_path / "missing"))


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("planctond.slice", "planctond.slice"),
        ("a-b.slice", "a.slice/a-b.slice"),
        ("a-b-c.slice", "a.slice/a-b.slice/a-b-c.slice"),
        ("-.slice", ""),
    ],
)
def test_slice_path(name: str, path: str) -> None:
    assert slice_path(name) == path


def test_parent_relpath_errors() -> None:
    assert parent_relpath("/planctond", "cgroupfs") == "planctond"
    assert parent_relpath("a//b/", "cgroupfs") == "a/b"
    with pytest.raises(CgroupError, match=r"\.slice"):
        parent_relpath("/planctond", "systemd")
    with pytest.raises(CgroupError, match="root cgroup"):
        parent_relpath("/", "cgroupfs")
    with pytest.raises(CgroupError, match="unknown cgroup driver"):
        parent_relpath("/x", "cgmanager")


# --- readings -----------------------------------------------------------------------------------
def test_pilot_cgroups_v1_cgroupfs(kernel_v1: FakeKernel) -> None:
    layout = CgroupLayout.detect(str(kernel_v1.root))
    pc = PilotCgroups(layout, "/planctond", "cgroupfs")
    assert pc.total_cpu_seconds() is None  # no parent yet
    assert pc.memory_bytes() is None
    parent = kernel_v1.make("cpuacct/planctond")
    kernel_v1.make("memory/planctond")
    _w(parent / "cpuacct.usage", "2500000000\n")
    assert pc.total_cpu_seconds() == pytest.approx(2.5)
    ctr = kernel_v1.make(f"cpuacct/planctond/{CID}")
    _w(ctr / "cpuacct.usage", "1250000000\n")
    assert pc.container_cpu_seconds(CID) == pytest.approx(1.25)
    assert pc.container_cpu_seconds(CID[:12]) == pytest.approx(1.25)  # short ids resolve
    assert pc.container_cpu_seconds("0" * 64) is None
    mem = kernel_v1.root / "memory" / "planctond"
    _w(mem / "memory.usage_in_bytes", "1000000\n")
    _w(mem / "memory.stat", "cache 300000\nrss 700000\ntotal_inactive_file 250000\n")
    assert pc.memory_bytes() == 750000
    paths = pc.container_paths(CID)
    assert paths["cpu"] == str(kernel_v1.root / "cpu" / "planctond" / CID)
    assert paths["freezer"] == str(kernel_v1.root / "freezer" / "planctond" / CID)


def test_pilot_cgroups_v1_systemd(kernel_v1: FakeKernel) -> None:
    layout = CgroupLayout.detect(str(kernel_v1.root))
    pc = PilotCgroups(layout, "planctond.slice", "systemd")
    ctr = kernel_v1.make(f"cpuacct/planctond.slice/docker-{CID}.scope")
    _w(ctr / "cpuacct.usage", "3000000000\n")
    _w(ctr.parent / "cpuacct.usage", "7000000000\n")
    assert pc.total_cpu_seconds() == pytest.approx(7.0)
    assert pc.container_cpu_seconds(CID) == pytest.approx(3.0)
    assert pc.container_cpu_seconds(CID[:12]) == pytest.approx(3.0)
    assert pc.container_paths(CID)["memory"].endswith(f"memory/planctond.slice/docker-{CID}.scope")


# --- the idle parent ----------------------------------------------------------------------------
def test_idle_parent_v1_cgroupfs(kernel_v1: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = CgroupLayout.detect(str(kernel_v1.root))
    setup = ensure_idle_parent(layout, "/planctond", "cgroupfs")
    assert setup.mode == "cpu.idle"
    assert setup.changed
    assert setup.path == str(kernel_v1.root / "cpu" / "planctond")
    for ctrl in V1_CONTROLLERS:  # every controller Docker joins
        assert (kernel_v1.root / ctrl / "planctond").is_dir()
    assert len(setup.created) == len(V1_CONTROLLERS)
    assert (kernel_v1.root / "cpu" / "planctond" / "cpu.idle").read_text() == "1"
    # cpuset: without these, no task can join and Docker cannot start containers
    assert (kernel_v1.root / "cpuset" / "planctond" / "cpuset.cpus").read_text() == "0-3"
    assert (kernel_v1.root / "cpuset" / "planctond" / "cpuset.mems").read_text() == "0"
    assert "cpu.idle=1, set now" in setup.describe()

    # Again, unprivileged: already in place, so nothing may be written.
    def no_writes(path: str, value: str) -> None:
        raise AssertionError(f"wrote {value!r} to {path}")

    monkeypatch.setattr(cgroup_parent, "_write", no_writes)
    again = ensure_idle_parent(layout, "/planctond", "cgroupfs")
    assert (again.mode, again.changed, again.created) == ("cpu.idle", False, ())
    assert "already set" in again.describe()


def test_idle_parent_v1_nested_and_repairs_cpuset(kernel_v1: FakeKernel) -> None:
    layout = CgroupLayout.detect(str(kernel_v1.root))
    kernel_v1.make("cpuset/outer")  # made by someone else, cpus/mems left empty
    setup = ensure_idle_parent(layout, "/outer/pilots", "cgroupfs")
    assert setup.path == str(kernel_v1.root / "cpu" / "outer" / "pilots")
    for level in ("outer", "outer/pilots"):
        assert (kernel_v1.root / "cpuset" / level / "cpuset.cpus").read_text() == "0-3"
    assert (kernel_v1.root / "cpu" / "outer" / "cpu.idle").read_text() == "0\n"  # only the leaf
    (kernel_v1.root / "unified" / "outer" / "pilots").mkdir(parents=True)  # runc's mirror
    kernel_v1.make(f"memory/outer/pilots/{CID}")  # a pilot still there: refused, and said so
    with pytest.raises(CgroupSetupError, match=r"cannot remove cgroup .*/outer/pilots.*busy"):
        remove_idle_parent(layout, "/outer/pilots")
    kernel_v1.rmdir(str(kernel_v1.root / "memory" / "outer" / "pilots" / CID))
    remove_idle_parent(layout, "/outer/pilots")
    assert not (kernel_v1.root / "cpu" / "outer" / "pilots").exists()
    assert not (kernel_v1.root / "memory" / "outer" / "pilots").exists()
    assert not (kernel_v1.root / "unified" / "outer" / "pilots").exists()
    with pytest.raises(CgroupSetupError, match="systemd owns slices"):
        remove_idle_parent(layout, "planctond.slice", "systemd")
    assert (kernel_v1.root / "cpu" / "outer").exists()


def test_idle_parent_v1_old_kernel_uses_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = FakeKernel(tmp_path / "cg", 1, cpu_idle=False)
    monkeypatch.setattr(cgroup_parent, "_make_cgroup", k.mkdir)
    setup = ensure_idle_parent(CgroupLayout.detect(str(k.root)), "/planctond", "cgroupfs")
    assert setup.mode == "shares"
    assert (k.root / "cpu" / "planctond" / "cpu.shares").read_text() == "2"


def test_idle_parent_v1_joint_mount_created_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = FakeKernel(tmp_path / "cg", 1, joint=True)
    monkeypatch.setattr(cgroup_parent, "_make_cgroup", k.mkdir)
    layout = CgroupLayout.detect(str(k.root))
    setup = ensure_idle_parent(layout, "/planctond", "cgroupfs")
    assert (k.root / "cpu,cpuacct" / "planctond" / "cpu.idle").read_text() == "1"
    cpu_mounts = ("cpu", "cpuacct", "cpu,cpuacct")
    assert sum(Path(p).parent.name in cpu_mounts for p in setup.created) == 1
    # and the sensor reads the joint mount through the cpuacct symlink
    _w(k.root / "cpu,cpuacct" / "planctond" / "cpuacct.usage", "1000000000\n")
    assert PilotCgroups(layout, "/planctond", "cgroupfs").total_cpu_seconds() == 1.0


def test_idle_parent_v2_only_enables_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = FakeKernel(tmp_path / "cg", 2)
    _w(k.root / "cgroup.controllers", "cpu memory pids\n")  # no io on this host
    _w(k.root / "cgroup.subtree_control", "memory\n")  # systemd enabled some already
    monkeypatch.setattr(cgroup_parent, "_make_cgroup", k.mkdir)
    ensure_idle_parent(CgroupLayout.detect(str(k.root)), "/planctond", "cgroupfs")
    assert (k.root / "cgroup.subtree_control").read_text() == "+cpu +pids"


def test_idle_parent_v2_old_kernel_uses_weight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = FakeKernel(tmp_path / "cg", 2, cpu_idle=False)
    monkeypatch.setattr(cgroup_parent, "_make_cgroup", k.mkdir)
    setup = ensure_idle_parent(CgroupLayout.detect(str(k.root)), "/planctond", "cgroupfs")
    assert setup.mode == "weight"
    assert (k.root / "planctond" / "cpu.weight").read_text() == "1"
    assert "cpu.weight=1" in setup.describe()


def test_idle_parent_v2_without_cpu_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k = FakeKernel(tmp_path / "cg", 2)
    _w(k.root / "cgroup.controllers", "memory pids\n")
    monkeypatch.setattr(cgroup_parent, "_make_cgroup", k.mkdir)
    with pytest.raises(CgroupSetupError, match=r"cpu controller is not enabled.*subtree_control"):
        ensure_idle_parent(CgroupLayout.detect(str(k.root)), "/planctond", "cgroupfs")


@pytest.mark.parametrize(
    ("code", "words"), [(errno.EACCES, "--setup-cgroup"), (errno.EROFS, "read-only")]
)
def test_idle_parent_unprivileged_says_how_to_fix(
    kernel_v1: FakeKernel, monkeypatch: pytest.MonkeyPatch, code: int, words: str
) -> None:
    def refuse(path: str) -> None:
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(cgroup_parent, "_make_cgroup", refuse)
    with pytest.raises(CgroupSetupError) as exc:
        ensure_idle_parent(CgroupLayout.detect(str(kernel_v1.root)), "/planctond", "cgroupfs")
    msg = str(exc.value)
    assert str(kernel_v1.root) in msg and "planctond" in msg
    assert words in msg


def test_idle_parent_write_refused(kernel_v2: FakeKernel) -> None:
    kernel_v2.make("planctond")
    layout = CgroupLayout.detect(str(kernel_v2.root))
    os.remove(kernel_v2.root / "planctond" / "cgroup.subtree_control")  # unwritable stand-in
    with pytest.raises(CgroupSetupError, match=r"cannot open for writing .*cgroup.subtree_control"):
        ensure_idle_parent(layout, "/planctond", "cgroupfs")


def test_idle_parent_systemd_slice_exists_v1(kernel_v1: FakeKernel) -> None:
    k = kernel_v1
    slice_dir = k.make("cpu/planctond.slice")
    setup = ensure_idle_parent(CgroupLayout.detect(str(k.root)), "planctond.slice", "systemd")
    assert (setup.mode, setup.path, setup.changed) == ("cpu.idle", str(slice_dir), True)
    assert (slice_dir / "cpu.idle").read_text() == "1"
    assert setup.created == ()


def test_idle_parent_systemd_never_creates_the_slice(
    kernel_v2: FakeKernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    units = tmp_path / "units"
    units.mkdir()
    monkeypatch.setattr(cgroup_parent, "SYSTEMD_UNIT_DIRS", (str(units),))
    layout = CgroupLayout.detect(str(kernel_v2.root))
    with pytest.raises(CgroupSetupError, match=r"systemctl start planctond.slice.*CPUWeight=idle"):
        ensure_idle_parent(layout, "planctond.slice", "systemd")
    assert not (kernel_v2.root / "planctond.slice").exists()
    _w(units / "planctond.slice", "[Unit]\nDescription=pilots\n\n[Slice]\nCPUWeight=idle\n")
    setup = ensure_idle_parent(layout, "planctond.slice", "systemd")
    assert setup.mode == "cpu.idle" and not setup.changed
    assert str(units / "planctond.slice") in setup.note
    assert not (kernel_v2.root / "planctond.slice").exists()


def test_idle_parent_unknown_driver(kernel_v2: FakeKernel) -> None:
    with pytest.raises(CgroupSetupError, match="unknown Docker cgroup driver"):
        ensure_idle_parent(CgroupLayout.detect(str(kernel_v2.root)), "/p", "cgmanager")


@pytest.mark.parametrize(
    ("driver", "configured", "parent"),
    [
        ("cgroupfs", None, C.CGROUP_PARENT_CGROUPFS),
        ("systemd", None, C.CGROUP_PARENT_SYSTEMD),
        ("systemd", "pilots.slice", "pilots.slice"),
        ("cgroupfs", "/batch/pilots", "/batch/pilots"),
    ],
)
def test_parent_for(driver: str, configured: str | None, parent: str) -> None:
    assert parent_for(driver, configured) == parent


@pytest.mark.parametrize(
    ("version", "booted_systemd", "driver"),
    [(1, True, "cgroupfs"), (2, True, "systemd"), (2, False, "cgroupfs")],
)
def test_guess_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int, booted_systemd: bool, driver: str
) -> None:
    layout = CgroupLayout.detect(str(FakeKernel(tmp_path / "cg", version).root))
    real_isdir = os.path.isdir
    monkeypatch.setattr(
        os.path,
        "isdir",
        lambda p: booted_systemd if p == "/run/systemd/system" else real_isdir(p),
    )
    assert guess_driver(layout) == driver


def test_setup_cgroup(kernel_v1: FakeKernel, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--cgroup-root", str(kernel_v1.root), "--driver", "cgroupfs"]
    assert setup_cgroup.main(argv) == 0
    assert (kernel_v1.root / "cpu" / "planctond" / "cpu.idle").read_text() == "1"  # default name
    assert "cpu.idle=1" in capsys.readouterr().out
    assert setup_cgroup.main([*argv, "--parent", "/other"]) == 0
    assert (kernel_v1.root / "memory" / "other").is_dir()


def test_setup_cgroup_guesses_without_docker(
    kernel_v1: FakeKernel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At boot the setup may run before Docker: the driver is guessed, not waited for."""
    argv = ["--cgroup-root", str(kernel_v1.root), "--docker-url", f"unix://{tmp_path}/no.sock"]
    assert setup_cgroup.main(argv) == 0
    assert "(cgroup v1, cgroupfs driver)" in capsys.readouterr().out
    assert (kernel_v1.root / "cpu" / "planctond" / "cpu.idle").read_text() == "1"


def test_setup_cgroup_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert setup_cgroup.main(["--cgroup-root", str(tmp_path / "none"), "--driver", "cgroupfs"]) == 1
    assert "cannot read the cgroup root" in capsys.readouterr().err
    assert setup_cgroup.main(["--driver", "bogus"]) == 2


def test_cgroup_dirs_readable_by_the_daemon_under_the_units_umask(tmp_path: Path) -> None:
    """The root prestart runs with the unit's UMask=0077; the daemon (its own user) must still
    read the pilots' cgroups below the parent it makes, or it counts their CPU as the owner's."""
    old = os.umask(0o077)
    try:
        cgroup_parent._make_cgroup(str(tmp_path / "planctond"))
    finally:
        os.umask(old)
    assert (tmp_path / "planctond").stat().st_mode & 0o777 == 0o755
