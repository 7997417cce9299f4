"""The idle parent and the pilots' CPU reading on this host's real cgroups and a real dockerd.

Uses a test-only parent name (never the daemon's own /planctond) and removes it afterwards.
On this machine cgroups are v1 with Docker's cgroupfs driver; cgroup v2 with both drivers runs
for real in a booted guest (tests/guest/), and what no guest boots against file trees
(tests/unit/test_cgroup_layout.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from typing import Any

import pytest

from planctond.cli import setup_cgroup
from planctond.engine.cgroup_parent import (
    CgroupSetupError,
    ensure_idle_parent,
    remove_idle_parent,
)
from planctond.sensors.cgroups import CgroupLayout, PilotCgroups
from planctond.sensors.host import HostSensor
from tests.support.scope import ContainerScope

SPIN = ["sh", "-c", "while :; do :; done"]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="writes cgroups: needs root")


def _test_parent() -> str:
    return f"/planctond-test-{uuid.uuid4().hex[:10]}"


def _wait(cond: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_real_layout_lists_only_mounted_hierarchies() -> None:
    layout = CgroupLayout.detect()
    if layout.version == 2:
        assert os.path.ismount(layout.root)
        return
    assert {"cpu", "cpuacct", "memory", "freezer"} <= set(layout.controllers)
    for path in layout.controllers.values():
        assert os.path.ismount(path), path


@needs_root
def test_setup_cgroup_on_the_real_host(capsys: pytest.CaptureFixture[str]) -> None:
    layout = CgroupLayout.detect()
    parent = _test_parent()
    try:
        assert setup_cgroup.main(["--driver", "cgroupfs", "--parent", parent]) == 0
        out = capsys.readouterr().out
        cpu_dir = os.path.join(layout.mount("cpu") or layout.root, parent.lstrip("/"))
        if (
            os.path.exists(os.path.join(os.path.dirname(cpu_dir), "cpu.idle"))
            or layout.version == 2
        ):
            with open(os.path.join(cpu_dir, "cpu.idle")) as f:
                assert f.read().strip() == "1"
            assert "cpu.idle=1, set now" in out
        # idempotent, and the second run writes nothing
        assert setup_cgroup.main(["--driver", "cgroupfs", "--parent", parent]) == 0
        assert "already set" in capsys.readouterr().out
    finally:
        remove_idle_parent(layout, parent)
    assert not os.path.exists(cpu_dir)


@needs_root
@pytest.mark.docker
def test_setup_cgroup_asks_docker_for_the_driver(
    docker_engine: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    driver = docker_engine.client.info()["CgroupDriver"]
    if driver != "cgroupfs":
        pytest.skip(f"engine uses the {driver} cgroup driver; this test creates a cgroupfs parent")
    # A guess would say systemd: the cgroupfs in the output can only have come from Docker.
    monkeypatch.setattr(setup_cgroup, "guess_driver", lambda layout: "systemd")
    layout = CgroupLayout.detect()
    parent = _test_parent()
    try:
        assert setup_cgroup.main(["--docker-url", docker_engine.url, "--parent", parent]) == 0
        assert "cgroupfs driver" in capsys.readouterr().out
    finally:
        remove_idle_parent(layout, parent)


@needs_root
@pytest.mark.docker
def test_pilot_under_idle_parent_is_counted(
    docker_client: Any, busybox_image: str, container_scope: ContainerScope
) -> None:
    driver = docker_client.info().get("CgroupDriver")
    if driver != "cgroupfs":
        pytest.skip(f"engine uses the {driver} cgroup driver; this test creates a cgroupfs parent")
    layout = CgroupLayout.detect()
    parent = _test_parent()
    try:
        setup = ensure_idle_parent(layout, parent, "cgroupfs")
    except Exception:
        with contextlib.suppress(Exception):  # what a half-done setup created
            remove_idle_parent(layout, parent)
        raise
    container = None
    try:
        cpu_dir = setup.path
        if os.path.exists(os.path.join(os.path.dirname(cpu_dir), "cpu.idle")):
            assert setup.mode == "cpu.idle"
        pcg = PilotCgroups(layout, parent, "cgroupfs")
        assert pcg.total_cpu_seconds() == 0.0  # exists, nothing ran in it yet

        container = container_scope.run(
            busybox_image, SPIN, name=container_scope.name("spin"), cgroup_parent=parent
        )
        container.reload()
        pid = container.attrs["State"]["Pid"]
        assert pid > 0
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
        cpu_line = next(ln for ln in lines if ln.split(":")[1] in ("cpu", "cpu,cpuacct", ""))
        assert cpu_line.split(":", 2)[2] == f"{parent}/{container.id}"  # really under our parent
        _wait(lambda: pcg.container_cpu_seconds(container.id), 10, "the pilot's cgroup")

        sensor = HostSensor(pcg, "/var/lib/docker")
        # One spinning shell is one CPU-second per second, unless the host's other load (the
        # owner, to the idle parent) takes it: take the best of a few 2 s windows.
        rates = []
        for _ in range(4):
            a = pcg.total_cpu_seconds()
            time.sleep(2.0)
            b = pcg.total_cpu_seconds()
            assert a is not None and b is not None
            rates.append((b - a) / 2.0)
            snap = sensor.sample()
            assert 0.0 <= snap.pilots_cpu <= snap.host_cpu
            if max(rates) > 0.8:
                break
        print(f"pilot CPU rates (CPU-s per s): {[round(r, 3) for r in rates]}")
        assert max(rates) <= 1.1, rates
        starved = max(rates) < 0.5  # an idle-priority pilot on a host busy with other work
        assert starved or snap.pilots_cpu > 0.3, snap
        # One pilot: the parent's counter is that pilot's, plus nothing else.
        total = pcg.total_cpu_seconds()
        mine = pcg.container_cpu_seconds(container.id)
        assert total is not None and mine is not None
        assert mine <= total + 1e-6 and total - mine < 0.5
        assert pcg.container_cpu_seconds(container.id[:12]) is not None
        assert (pcg.memory_bytes() or 0) > 0
        # Docker's own writes to the pilot's cgroup did not undo the parent's setting.
        with open(
            os.path.join(cpu_dir, "cpu.idle" if setup.mode == "cpu.idle" else "cpu.shares")
        ) as f:
            assert f.read().strip() == ("1" if setup.mode == "cpu.idle" else "2")
        if starved:
            pytest.skip(f"the pilot hardly ran ({rates}): other load had the host")
    finally:
        if container is not None:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            child = os.path.join(setup.path, container.id)
            _wait(lambda: not os.path.exists(child), 15, "Docker to remove the pilot's cgroup")
        # The parent outlives its pilots (runc removes only the container's own cgroups) ...
        assert os.path.isdir(setup.path)
        remove_idle_parent(layout, parent)
    # ... and the cleanup removed it under every controller (and runc's hybrid v2 mirror).
    for mount in [*layout.controllers.values(), *([layout.unified] if layout.unified else [])]:
        assert not os.path.exists(os.path.join(mount, parent.lstrip("/")))


HYBRID_V2 = "/sys/fs/cgroup/unified"


@needs_root
@pytest.mark.skipif(
    not os.path.isfile(os.path.join(HYBRID_V2, "cgroup.controllers")),
    reason="no hybrid cgroup v2 mount on this host",
)
def test_v2_readings_on_the_real_kernel() -> None:
    """This host's cgroup v2 tree (the hybrid mount) has no controllers, but the kernel's own
    v2 files are there: cpu.stat's usage_usec, cgroup.freeze. Read them for real, with a
    spinning process moved into a pilot-shaped cgroup; and see the setup refuse, naming the
    fix, when v2 has no cpu controller to make idle."""
    layout = CgroupLayout.detect(HYBRID_V2)
    assert layout.version == 2
    parent = _test_parent()
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    pcg = PilotCgroups(layout, parent, "cgroupfs")
    pilot_dir = pcg.container_paths(cid)["unified"]
    proc = None
    try:
        with pytest.raises(CgroupSetupError, match=r"cpu controller is not enabled.*subtree_co"):
            ensure_idle_parent(layout, parent, "cgroupfs")
        os.mkdir(pilot_dir)
        proc = subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"])
        with open(os.path.join(pilot_dir, "cgroup.procs"), "w") as f:
            f.write(str(proc.pid))
        with open(os.path.join(pilot_dir, "cgroup.freeze")) as f:
            assert f.read().strip() == "0"
        a = pcg.total_cpu_seconds()
        time.sleep(1.5)
        b = pcg.total_cpu_seconds()
        mine = pcg.container_cpu_seconds(cid)
        assert a is not None and b is not None and mine is not None
        rate = (b - a) / 1.5  # one spinning process under an idle parent, on a shared host
        assert rate <= 1.1
        assert mine <= b + 1e-3
        assert pcg.container_cpu_seconds(cid[:12]) == pytest.approx(mine, abs=0.1)
        assert pcg.memory_bytes() is None  # no memory controller on this v2 tree
        if rate < 0.2:
            pytest.skip(f"the process hardly ran ({rate:.3f} CPU): other load had the host")
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            os.rmdir(pilot_dir)
        remove_idle_parent(layout, parent)
    assert not os.path.exists(os.path.join(HYBRID_V2, parent.lstrip("/")))
