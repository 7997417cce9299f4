"""The owner comes first, shown with real load on the real host against real pilots.

The burner runs on the host, outside any pilot, on every core: an owner that uses one core shows
nothing on cgroup v1 (see test-stack.md), and a real owner compiling or rendering loads them all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.integration.test_daemon_pilots import pilots, pool_config
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker]


class Burner:
    """One spinning process per core, like an owner's build."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for _ in range(os.cpu_count() or 2):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs.clear()


@pytest.fixture
def burner() -> Iterator[Burner]:
    b = Burner()
    yield b
    b.stop()


def _at(d: Any, pattern: str, since: int = 0) -> float:
    return d.find_lines(pattern, since)[0].at  # type: ignore[no-any-return]


@pytest.mark.parametrize("work", ["idle", "busy"])
def test_owner_load_freezes_then_stops_pilots_and_they_come_back(
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    burner: Burner,
    work: str,
) -> None:
    # Busy pilots are starved by the idle cgroup so completely that the freezer may not catch
    # them: they count as frozen all the same and the ladder still ends in a graceful stop.
    command = '["sleep", "600"]' if work == "idle" else '["sh", "-c", "while :; do :; done"]'
    d = daemon_factory(pool_config(command=command, max_pilots="2", cpus=0.25, reserve=0.5))
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 2, 30, message=d.tail)
    first = {c.id for c in pilots(docker_client, d.instance_id)}
    mark = d.mark()
    burner.start()
    t_burn = time.monotonic()
    d.wait_for_line(r"pilot-frozen", 30, since=mark)
    t_frozen = _at(d, r"pilot-frozen", mark)
    assert t_frozen - t_burn >= 2.5, "froze before grace_kill (3 s)"
    if work == "idle":
        wait_for(
            lambda: all(c.status == "paused" for c in pilots(docker_client, d.instance_id)),
            10,
            message=d.tail,
        )
    d.wait_for_line(r"pilot-(stopped|killed) .*owner-cpu", 30, since=mark)
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
    daemon_factory: DaemonFactory, docker_client: Any, busybox_image: str, burner: Burner
) -> None:
    cfg = pool_config(max_pilots="1", cpus=0.5, reserve=0.5).replace("freeze: 3s", "freeze: 60s")
    d = daemon_factory(cfg)
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 1, 30, message=d.tail)
    pid = pilots(docker_client, d.instance_id)[0].id
    mark = d.mark()
    burner.start()
    d.wait_for_line(r"pilot-frozen", 30, since=mark)
    burner.stop()
    d.wait_for_line(r"pilot-thawed", 30, since=mark)
    c = pilots(docker_client, d.instance_id)[0]
    assert c.id == pid and c.status == "running"
    assert not d.find_lines(r"pilot-(stopped|killed)", mark)


@pytest.mark.slow
def test_single_pilot_burning_its_cpu_is_not_flapped(
    daemon_factory: DaemonFactory, docker_client: Any, busybox_image: str
) -> None:
    # Plancton 0.6 counted the pilot's own load as the owner's and killed it, over and over.
    cfg = pool_config(
        command='["sh", "-c", "while :; do :; done"]', max_pilots="1", cpus=1.0, reserve=0.5
    )
    d = daemon_factory(cfg)
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 1, 30, message=d.tail)
    pid = pilots(docker_client, d.instance_id)[0].id
    deadline = time.monotonic() + float(os.environ.get("PLANCTOND_FLAP_SECONDS", "150"))
    while time.monotonic() < deadline:
        time.sleep(5)
        now = pilots(docker_client, d.instance_id)
        assert [c.id for c in now] == [pid], d.tail()
        assert now[0].status == "running"
    assert not d.find_lines(re.compile(r"pilot-(frozen|stopped|killed)"))
