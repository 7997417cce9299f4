"""The owner comes first, shown with real load on the real host against real pilots.

The burner runs on the host, outside any pilot, on every core: an owner that uses one core shows
nothing on cgroup v1 (see test-stack.md), and a real owner compiling or rendering loads them all.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from planctond.engine.cgroup_parent import remove_idle_parent
from planctond.sensors.cgroups import CgroupLayout, cpu_seconds
from tests.conftest import DaemonFactory
from tests.integration.test_daemon_pilots import pilots, pool_config
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker]


class Burner:
    """One spinning process per core, like an owner's build."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, scope: ScopeCgroup | None = None) -> None:
        """One per core; inside `scope`'s owner cgroup when given, else wherever the test runs."""
        for _ in range(os.cpu_count() or 2):
            proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            self.procs.append(proc)
            if scope is not None:
                scope.enter(proc.pid)

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs.clear()


@dataclass
class ScopeCgroup:
    """A cgroup of the test's own, given to the daemon as `owner.cgroup`, with the pilots' parent
    inside it (`pilots`) and a place for an owner the test makes (`owner`). The daemon then
    senses only what this test makes, however busy the shared host is, and still has to take
    its pilots' own load out of what it reads."""

    layout: CgroupLayout
    name: str  # "/planctond-test-owner-..."
    owner_dirs: list[Path]

    @property
    def pilots(self) -> str:
        return f"{self.name}/pilots"

    def enter(self, pid: int) -> None:
        for d in self.owner_dirs:
            (d / "cgroup.procs").write_text(f"{pid}\n")

    def config(self, **kw: Any) -> str:
        return pool_config(
            owner_cgroup=self.name,
            extra_top=f"docker:\n  cgroup_parent: {self.pilots}\n",
            **kw,
        )

    def pilots_cpu_seconds(self) -> float:
        return cpu_seconds(self.layout, self.pilots.lstrip("/")) or 0.0


@pytest.fixture
def scope_cgroup() -> Iterator[ScopeCgroup]:
    """Asked for before the daemon, so it is removed after the daemon and its pilots are gone."""
    layout = CgroupLayout.detect()
    name = f"/planctond-test-owner-{uuid.uuid4().hex[:8]}"
    if layout.version == 2:
        mounts = [layout.root]
    else:  # the daemon reads cpuacct; the cpu controller places the owner like a real one
        mounts = sorted({m for c, m in layout.controllers.items() if c in ("cpu", "cpuacct")})
    owner_dirs = [Path(m) / name.lstrip("/") / "owner" for m in mounts]
    for d in owner_dirs:
        d.mkdir(parents=True)
    # A heavy weight for the whole scope, so the test's owner gets the CPU it asks for however
    # busy the shared host is: the test decides the owner's load, not whatever else runs here.
    # (Inside the scope the pilots' parent is still idle: the owner comes first there.)
    for weight_file, weight in (("cpu.shares", "10240"), ("cpu.weight", "10000")):
        for m in mounts:
            path = Path(m) / name.lstrip("/") / weight_file
            if path.exists():
                path.write_text(weight)
    yield ScopeCgroup(layout, name, owner_dirs)
    for d in owner_dirs:  # the burners were killed with the burner fixture
        with contextlib.suppress(OSError):
            d.rmdir()
    for path in (f"{name}/pilots", name):
        with contextlib.suppress(Exception):
            remove_idle_parent(layout, path)


@pytest.fixture
def burner() -> Iterator[Burner]:
    b = Burner()
    yield b
    b.stop()


def _at(d: Any, pattern: str, since: int = 0) -> float:
    return d.find_lines(pattern, since)[0].at  # type: ignore[no-any-return]


@pytest.mark.parametrize("work", ["idle", "busy"])
def test_owner_load_freezes_then_stops_pilots_and_they_come_back(
    scope_cgroup: ScopeCgroup,
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    burner: Burner,
    work: str,
) -> None:
    # Busy pilots are starved by the idle cgroup so completely that the freezer may not catch
    # them: they count as frozen all the same and the ladder still ends in a graceful stop.
    # The owner is the test's own cgroup: other work on a shared host is not the owner here.
    command = '["sleep", "600"]' if work == "idle" else '["sh", "-c", "while :; do :; done"]'
    d = daemon_factory(scope_cgroup.config(command=command, max_pilots="2", cpus=0.25, reserve=1.0))
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 2, 30, message=d.tail)
    first = {c.id for c in pilots(docker_client, d.instance_id)}
    mark = d.mark()
    burner.start(scope_cgroup)
    t_burn = time.monotonic()
    d.wait_for_line(r"pilot-frozen", 30, since=mark)
    # When the freeze was decided (its `freeze` clock starts there): a pause the freezer cannot
    # complete under load takes runc a second or two before the pilot counts as frozen.
    t_frozen = _at(d, r"pilots frozen for the owner|pilot-frozen", mark)
    assert t_frozen - t_burn >= 2.5, "froze before grace_kill (3 s)"
    # The yield as monitoring reports it: from the start of the reading that first showed the
    # owner (at most a tick before the burner) to the pilots frozen; the CPU their cgroup used
    # meanwhile is bounded by their quota (2 x 0.25 CPU), and read from the kernel, not made up.
    d.wait_for_line(r"owner-yield", 30, since=mark)
    yielded = d.find_lines(r"owner-yield", mark)[0]
    found = re.search(r"in ([\d.]+)s: 2 pilot\(s\) .* used ([\d.]+) CPU-seconds", yielded.text)
    assert found is not None, yielded.text
    latency, pilot_cpu = float(found[1]), float(found[2])
    assert 3.0 <= latency <= yielded.at - t_burn + 2.5, (latency, yielded.at - t_burn)
    assert 0.0 <= pilot_cpu <= 0.5 * latency + 0.1, (pilot_cpu, latency)
    if work == "idle":
        wait_for(
            lambda: all(c.status == "paused" for c in pilots(docker_client, d.instance_id)),
            10,
            message=d.tail,
        )
    d.wait_for_line(r"pilot-(stopped|killed) .*owner-cpu", 30, since=mark)
    assert len(d.find_lines(r"owner-yield", mark)) == 1, "stopping frozen pilots is no new yield"
    # when the stop was decided (grace_spawn counts from there), not when the pilot had gone
    t_stopped = _at(d, r"stopping pilot .*\(owner-cpu\)", mark)
    assert t_stopped - t_frozen >= 2.5, "stopped before `freeze` (3 s) ran out"
    wait_for(
        lambda: not (first & {c.id for c in pilots(docker_client, d.instance_id, all=True)}), 30
    )
    burner.stop()
    t_quiet = time.monotonic()
    d.wait_for_line(r"pilot-started", 40, since=d.mark())
    back = _at(d, r"pilot-started", mark)
    assert back - t_stopped >= 3.5, "started again before grace_spawn (4 s)"
    assert back - t_quiet < 30
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 2, 30, message=d.tail)


def test_owner_leaving_within_freeze_thaws_pilots(
    scope_cgroup: ScopeCgroup,
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    burner: Burner,
) -> None:
    cfg = scope_cgroup.config(max_pilots="1", cpus=0.5, reserve=1.0)
    cfg = cfg.replace("freeze: 3s", "freeze: 60s")
    d = daemon_factory(cfg)
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 1, 30, message=d.tail)
    pid = pilots(docker_client, d.instance_id)[0].id
    mark = d.mark()
    burner.start(scope_cgroup)
    d.wait_for_line(r"pilot-frozen", 30, since=mark)
    burner.stop()
    d.wait_for_line(r"pilot-thawed", 30, since=mark)
    c = pilots(docker_client, d.instance_id)[0]
    assert c.id == pid and c.status == "running"
    assert not d.find_lines(r"pilot-(stopped|killed)", mark)


@pytest.mark.slow
def test_single_pilot_burning_its_cpu_is_not_flapped(
    scope_cgroup: ScopeCgroup,
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    burner: Burner,
) -> None:
    """Plancton 0.6 counted the pilot's own load as the owner's and killed it, over and over.

    The daemon reads the owner from the test's own cgroup, which holds the pilot: the pilot's
    load is in what it reads and must be taken out, while whatever else loads this shared host
    (other tests, other sessions, and this test's own burner outside the scope) is not."""
    cfg = scope_cgroup.config(
        command='["sh", "-c", "while :; do :; done"]', max_pilots="1", cpus=1.0, reserve=0.5
    )
    d = daemon_factory(cfg)
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 1, 30, message=d.tail)
    (pilot,) = pilots(docker_client, d.instance_id)
    assert pilot.attrs["HostConfig"]["CgroupParent"] == scope_cgroup.pilots
    burned = scope_cgroup.pilots_cpu_seconds()
    seconds = float(os.environ.get("PLANCTOND_FLAP_SECONDS", "150"))
    deadline = time.monotonic() + seconds
    burner.start()  # the host is busy for a while: not the owner's business here
    while time.monotonic() < deadline:
        time.sleep(5)
        if time.monotonic() > deadline - seconds / 2:
            burner.stop()
        now = pilots(docker_client, d.instance_id)
        assert [c.id for c in now] == [pilot.id], d.tail()
        assert now[0].status == "running"
    assert not d.find_lines(re.compile(r"pilot-(frozen|stopped|killed)"))
    burned = scope_cgroup.pilots_cpu_seconds() - burned
    if burned < 1.0:  # an idle-priority pilot on a host busy with other work
        pytest.skip(f"the pilot hardly ran ({burned:.2f} CPU s): its own load was not tested")


def test_an_owner_inside_owner_cgroup_still_comes_first(
    scope_cgroup: ScopeCgroup,
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    burner: Burner,
) -> None:
    """The other half: load inside `owner.cgroup` is the owner's, and pilots give way to it."""
    cfg = scope_cgroup.config(max_pilots="1", cpus=0.5, reserve=0.5)
    d = daemon_factory(cfg)
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 1, 30, message=d.tail)
    mark = d.mark()
    burner.start(scope_cgroup)
    d.wait_for_line(r"pilot-frozen", 30, since=mark)
    burner.stop()
    d.wait_for_line(r"pilot-thawed", 30, since=mark)


def _beside_a_busy_owner(
    scope: ScopeCgroup, factory: DaemonFactory, burner: Burner, give_way: str
) -> Any:
    """A daemon started while the owner already uses every core, 1-CPU pilots, max_pilots 2.
    The owner's memory and I/O stalls are left out of `pressure`: on a shared host they are
    other people's, and they are not what is tested."""
    burner.start(scope)
    cfg = scope.config(max_pilots="2", cpus=1.0, reserve=0.0, give_way=give_way)
    if give_way == "pressure":
        lines = "  memory_pressure: null\n  io_pressure: null\n"
        cfg = cfg.replace("  give_way: pressure\n", "  give_way: pressure\n" + lines)
    return factory(cfg)


def test_idle_pilots_start_beside_an_owner_on_every_core(
    scope_cgroup: ScopeCgroup,
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    burner: Burner,
) -> None:
    """`give_way: pressure` with the pilots' parent idle to the scheduler: an owner already
    using every core neither holds the starts back nor makes the pilots give way, and the
    daemon says it started them beside that owner."""
    d = _beside_a_busy_owner(scope_cgroup, daemon_factory, burner, "pressure")
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 2, 30, message=d.tail)
    started = d.find_lines(r"pilot-started")
    owner = [float(m[1]) for line in started if (m := re.search(r"owner ([\d.]+)\)", line.text))]
    # decided on a reading of the burner (no start on the sensor's first, empty one)
    assert len(owner) == 2 and min(owner) >= 1.0, [line.text for line in started]
    mark = d.mark()
    time.sleep(8)  # grace_kill (3 s) twice over
    assert not d.find_lines(r"pilot-(frozen|stopped|killed)", mark), d.tail()
    assert all(c.status == "running" for c in pilots(docker_client, d.instance_id))


def test_usage_rule_starts_nothing_beside_an_owner_on_every_core(
    scope_cgroup: ScopeCgroup,
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    burner: Burner,
) -> None:
    """The control, and the daemon's first moments: under `usage` the same owner leaves no
    spare CPU, and the first decision, whose reading covers no time yet, starts nothing."""
    d = _beside_a_busy_owner(scope_cgroup, daemon_factory, burner, "usage")
    d.wait_for_line(r"pool default: no spare CPU", 30)
    time.sleep(5)  # five more ticks
    assert not d.find_lines(r"pilot-started"), d.tail()
    assert not pilots(docker_client, d.instance_id)
