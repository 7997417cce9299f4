"""The owner's stalls (PSI) read from this host's real cgroup v2 files, with load the test makes.

On a v1 "hybrid" host the kernel gives every cgroup of the v2 tree beside the controllers
(/sys/fs/cgroup/unified) its own cpu/memory/io.pressure, controllers or not; on a v2 host the tree
is the root. The test makes a cgroup of its own there, with an owner's side (`owner`, `quiet`) and
a pilots' parent (`pilots`) inside it, given to the sensor as `owner.cgroup`: then what the sensor
reads is only what this test puts there, however busy the shared host is. It is removed afterwards,
the test's processes killed first, whatever the outcome.

The real-load test asserts only what the host's other load cannot change: an empty cgroup never
stalls (so the owner's side reads exactly 0 beside pilots stalling on every CPU), and a task that
shares the CPUs with more runnable threads than there are CPUs waits (the host's other load can
only make it wait more). The fake trees are in tests/unit/test_owner_pressure.py.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from planctond.policy.model import OwnerPressure
from planctond.sensors.cgroups import CgroupError, CgroupLayout
from planctond.sensors.owner_pressure import (
    OwnerPressureSensor,
    owner_parts,
    pid1_in_root,
    read_psi,
)
from tests.support.waiting import wait_for

SPIN = ["/bin/sh", "-c", "while :; do :; done"]
NCPUS = os.cpu_count() or 1

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="writes cgroups: needs root")


def v2_tree() -> str | None:
    try:
        layout = CgroupLayout.detect()
    except CgroupError:
        return None
    return layout.root if layout.version == 2 else layout.unified


@dataclass
class Scratch:
    """The test's own cgroup under the v2 tree: `owner` and `quiet` on the owner's side, `pilots`
    as the pilots' parent; `spin` puts a spinning process in one of them."""

    tree: str
    rel: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def path(self, child: str = "") -> str:
        return (
            os.path.join(self.tree, self.rel, child) if child else os.path.join(self.tree, self.rel)
        )

    def spin(self, child: str, n: int = 1) -> None:
        for _ in range(n):
            proc = subprocess.Popen(SPIN)
            self.procs.append(proc)
            with open(os.path.join(self.path(child), "cgroup.procs"), "w") as f:
                f.write(str(proc.pid))

    def psi(self, child: str, resource: str) -> dict[str, float]:
        found = read_psi(os.path.join(self.path(child), f"{resource}.pressure"))
        assert found is not None, (child, resource)
        return found

    def sensor(self) -> OwnerPressureSensor:
        return OwnerPressureSensor(self.tree, self.rel, f"{self.rel}/pilots")

    def remove(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs.clear()
        # A killed task leaves its cgroup when it is reaped (done); rmdir may still see it busy
        # for a moment.
        for child in ("owner", "quiet", "pilots", ""):
            path = self.path(child)
            deadline = time.monotonic() + 10.0
            while os.path.isdir(path):
                try:
                    os.rmdir(path)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


@pytest.fixture
def scratch() -> Iterator[Scratch]:
    tree = v2_tree()
    if tree is None or not os.path.isfile(os.path.join(tree, "cgroup.procs")):
        pytest.skip("no cgroup v2 tree on this host (pure v1)")
    s = Scratch(tree, f"planctond-test-ownerpsi-{uuid.uuid4().hex[:10]}")
    try:
        os.mkdir(s.path())
        for child in ("owner", "quiet", "pilots"):
            os.mkdir(s.path(child))
        if read_psi(os.path.join(s.path("owner"), "cpu.pressure")) is None:
            pytest.skip(f"no per-cgroup PSI in {tree} (a kernel before 4.20, or psi=0)")
        yield s
    finally:
        s.remove()
        assert not os.path.exists(s.path()), s.path()


def test_the_sensor_reads_the_owners_real_cgroups_never_the_pilots(scratch: Scratch) -> None:
    """`owner.cgroup` with the pilots' parent inside it: the owner's side is read per cgroup,
    with the numbers the kernel gives, and the pilots' cgroup is not among them."""
    reading = scratch.sensor().read()
    assert reading.per_cgroup, reading
    assert reading.source == f"cgroups {scratch.rel}/owner, {scratch.rel}/quiet"
    assert "pilots" not in reading.source
    for value in (reading.cpu, reading.memory, reading.io):
        # This kernel has the cgroup CPU "full" line (5.13+): every value is measured.
        assert isinstance(value, float) and 0.0 <= value <= 100.0, reading


def test_the_whole_host_on_the_real_tree(scratch: Scratch, tmp_path: Path) -> None:
    """A whole-host scope: every top-level cgroup but the one holding the pilots, and that one's
    children but the pilots'. Read per cgroup where PID 1 is not in the root (a systemd host,
    shown with a /proc that says so), host-wide where it is."""
    pilots = f"{scratch.rel}/pilots"
    parts = owner_parts(scratch.tree, "", pilots)
    top = sorted(e.name for e in os.scandir(scratch.tree) if e.is_dir(follow_symlinks=False))
    assert [p for p in parts if "/" not in p] == [t for t in top if t != scratch.rel]
    assert [p for p in parts if "/" in p] == [f"{scratch.rel}/owner", f"{scratch.rel}/quiet"]
    assert pilots not in parts and scratch.rel not in parts

    fake_proc = tmp_path / "proc"
    (fake_proc / "1").mkdir(parents=True)
    (fake_proc / "1" / "cgroup").write_text("0::/init.scope\n")
    systemd = OwnerPressureSensor(scratch.tree, "", pilots, str(fake_proc)).read()
    assert systemd.per_cgroup and "pilots" not in systemd.source, systemd
    assert all(isinstance(v, float) for v in (systemd.cpu, systemd.memory, systemd.io)), systemd

    here = OwnerPressureSensor(scratch.tree, "", pilots).read()
    if pid1_in_root("/proc"):  # this host: no systemd, the owner's processes in the root itself
        assert (here.per_cgroup, here.cpu, here.source) == (False, None, "/proc/pressure"), here
        assert isinstance(here.memory, float) and isinstance(here.io, float), here
    else:
        assert here.per_cgroup and "pilots" not in here.source, here


def test_the_pilots_real_stalls_are_not_the_owners(scratch: Scratch) -> None:
    """More runnable threads than CPUs in the pilots' cgroup stall there (the kernel's own
    figure, read as a control); the owner's side, empty, reads exactly 0. Then one owner task
    sharing the CPUs with them waits, and the sensor sees it in the owner's CPU "full" line."""
    sensor = scratch.sensor()
    scratch.spin("pilots", NCPUS + 1)
    stalled = wait_for(
        lambda: scratch.psi("pilots", "cpu")["some"] >= 5.0 or None,
        timeout=30.0,
        interval=0.5,
        message=lambda: f"the pilots' own stalls: {scratch.psi('pilots', 'cpu')}",
    )
    assert stalled
    reading = sensor.read()
    assert (reading.cpu, reading.memory, reading.io, reading.per_cgroup) == (0.0, 0.0, 0.0, True)
    assert "pilots" not in reading.source
    pilots_now = scratch.psi("pilots", "cpu")
    assert pilots_now["some"] > 0.0, pilots_now

    scratch.spin("owner")

    def owner_waits() -> OwnerPressure | None:
        reading = sensor.read()
        return reading if reading.cpu is not None and reading.cpu >= 1.0 else None

    waited = wait_for(
        owner_waits,
        timeout=30.0,
        interval=0.5,
        message=lambda: (
            f"the owner's wait: {sensor.read()}, its cgroup {scratch.psi('owner', 'cpu')}"
        ),
    )
    print(f"pilots' cpu.pressure {scratch.psi('pilots', 'cpu')}; the owner's reading {waited}")
    assert waited.per_cgroup and "pilots" not in waited.source
    assert scratch.psi("quiet", "cpu") == {"some": 0.0, "full": 0.0}  # still empty, still calm
    # One task: its cgroup's "full" is its own wait, the figure the sensor took (the kernel
    # updates avg10 every 2 s: read again around the sensor if one fell in between).
    for _ in range(5):
        before = scratch.psi("owner", "cpu")["full"]
        cpu = sensor.read().cpu
        if before == scratch.psi("owner", "cpu")["full"]:
            assert cpu == before
            break
    else:
        pytest.fail("the owner's cpu.pressure changed around every read")
