"""Smoke tests of the test stack itself: if these fail, no other Docker test means anything."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.support.daemon import DaemonProcess
from tests.support.docker_engine import DockerEngine
from tests.support.images import IMAGES_SH, REPO
from tests.support.scope import LABEL_CASE, ContainerScope
from tests.support.waiting import WaitTimeout, wait_for

docker_mark = pytest.mark.docker


@docker_mark
def test_engine_is_private_and_answers(docker_engine: DockerEngine) -> None:
    info = docker_engine.client.info()
    assert docker_engine.client.ping() is True
    assert docker_engine.url.startswith("unix://")
    if docker_engine.owned:
        # Our own dockerd: not the host's socket, started without the bridge network.
        assert docker_engine.socket_path not in ("/run/docker.sock", "/var/run/docker.sock")
        assert docker_engine.client.networks.list(names=["bridge"]) == []
        assert info["DockerRootDir"] == str(docker_engine.data_root)
    assert info["CgroupVersion"] in ("1", "2")


@docker_mark
def test_busybox_image_runs_a_shell(busybox_image: str, container_scope: ContainerScope) -> None:
    c = container_scope.run(
        busybox_image, ["sh", "-c", "id -u; sleep 0.1; grep -c nobody /etc/passwd; ls -d /tmp"]
    )
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert c.logs().decode().split() == ["0", "1", "/tmp"]
    image = container_scope.client.images.get(busybox_image)
    assert image.attrs["Config"]["Cmd"] == ["sh"]


@docker_mark
def test_images_script_is_idempotent(docker_engine: DockerEngine, busybox_image: str) -> None:
    before = docker_engine.client.images.get(busybox_image).id
    proc = subprocess.run(
        ["bash", str(IMAGES_SH), "busybox", busybox_image],
        env={**os.environ, "DOCKER_HOST": docker_engine.url},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "present" in proc.stderr
    assert docker_engine.client.images.get(busybox_image).id == before


@docker_mark
def test_wq_worker_image_has_its_libraries(wq_image: str, container_scope: ContainerScope) -> None:
    c = container_scope.run(wq_image, ["work_queue_worker", "--version"])
    assert c.wait(timeout=60)["StatusCode"] == 0
    assert "work_queue_worker version" in c.logs().decode()


@docker_mark
def test_scope_cleanup_removes_only_its_own(
    docker_client: Any, busybox_image: str, container_scope: ContainerScope
) -> None:
    own = container_scope.run(busybox_image, ["sleep", "300"], name=container_scope.name("own"))
    named_only = docker_client.containers.create(
        busybox_image, ["sleep", "300"], name=container_scope.name("byname")
    )
    # Foreign: a nameless container without our labels, and one whose name merely contains
    # our prefix (Docker's name filter matches substrings).
    foreign = docker_client.containers.create(busybox_image, ["sleep", "300"])
    lookalike = docker_client.containers.create(
        busybox_image, ["sleep", "300"], name=f"x{container_scope.prefix}-other"
    )
    try:
        assert own.labels[LABEL_CASE] == container_scope.case_id
        found = set(container_scope.containers())
        assert found == {own.id, named_only.id}
        removed = set(container_scope.cleanup())
        assert removed == {own.id, named_only.id}
        for c in (own, named_only):
            with pytest.raises(docker.errors.NotFound):
                docker_client.containers.get(c.id)
        for c in (foreign, lookalike):
            assert docker_client.containers.get(c.id).status == "created"
    finally:
        foreign.remove(force=True)
        lookalike.remove(force=True)


@docker_mark
def test_dockerd_script_starts_reuses_and_stops_a_private_engine() -> None:
    """contrib/devstack/dockerd.sh, what `make setup` and users run, on a socket of its own."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start dockerd")
    script = REPO / "contrib" / "devstack" / "dockerd.sh"
    # Short: unix socket paths are limited to 108 bytes, containerd's sits deeper.
    base = Path(tempfile.mkdtemp(prefix="pds-", dir="/tmp"))
    sock = ["--socket", str(base / "docker.sock"), "--root", str(base / "d")]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(script), *args, *sock],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    try:
        started = run("start")
        assert started.returncode == 0, started.stderr
        assert "starting dockerd" in started.stderr
        client = docker.DockerClient(base_url=f"unix://{base / 'docker.sock'}", version="auto")
        try:
            assert client.info()["DockerRootDir"] == str(base / "d" / "data")
        finally:
            client.close()
        again = run("start")
        assert again.returncode == 0 and "reusing it" in again.stderr, again.stderr
        assert run("status").returncode == 0
        stopped = run("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stderr, stopped.stderr
        assert run("status").returncode == 3
        # Nothing stays mounted under its root: the directory can be removed.
        with open("/proc/mounts") as f:
            assert not [line for line in f if str(base) in line]
    finally:
        run("stop")
        shutil.rmtree(base, ignore_errors=True)


def test_wait_for_returns_the_value_and_times_out_with_the_reason() -> None:
    calls = iter([None, 0, "ready"])
    assert wait_for(lambda: next(calls), timeout=5, interval=0.01) == "ready"
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match="the moon"):
        wait_for(lambda: None, timeout=0.3, interval=0.05, message=lambda: "the moon")
    assert 0.3 <= time.monotonic() - t0 < 5


class _ScriptDaemon(DaemonProcess):
    """DaemonProcess with a stand-in program: tests the helper, not planctond."""

    def __init__(self, script: Path, state_dir: Path) -> None:
        super().__init__(script, state_dir, "unix:///nonexistent.sock")
        self.script = script

    @property
    def argv(self) -> list[str]:
        return [sys.executable, str(self.script)]


def test_daemon_process_captures_lines_and_stops_with_a_signal(tmp_path: Path) -> None:
    script = tmp_path / "fake.py"
    script.write_text(
        textwrap.dedent(
            """
            import signal, sys, time
            def bye(signum, frame):
                print(f"got signal {signum}", file=sys.stderr, flush=True)
                sys.exit(7)
            signal.signal(signal.SIGTERM, bye)
            print("starting", file=sys.stderr, flush=True)
            time.sleep(0.3)
            print("ready tick=1", flush=True)
            while True:
                time.sleep(0.05)
            """
        )
    )
    d = _ScriptDaemon(script, tmp_path / "state").start()
    m = d.wait_for_line(r"ready tick=(\d+)", timeout=30)
    assert m.group(1) == "1"
    mark = d.mark()
    with pytest.raises(WaitTimeout, match="did not say"):
        d.wait_for_line("starting", timeout=0.3, since=mark)
    assert d.stop(signal=signal.SIGTERM, timeout=30) == 7
    assert d.find_lines(f"got signal {int(signal.SIGTERM)}")
    assert [line.text for line in d.lines][:2] == ["starting", "ready tick=1"]
    assert d.lines[0].at <= d.lines[1].at


def test_daemon_process_reports_an_early_exit(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("import sys\nprint('config error: bad', file=sys.stderr)\nsys.exit(1)\n")
    d = _ScriptDaemon(script, tmp_path / "state").start()
    with pytest.raises(WaitTimeout, match="exited"):
        d.wait_for_line("never said", timeout=30)
    assert d.stop() == 1
    assert "config error: bad" in d.output()


def test_daemon_process_waits_for_the_instance_id(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = tmp_path / "slow.py"
    script.write_text(
        "import pathlib, sys, time\n"
        "time.sleep(0.5)\n"
        f"pathlib.Path({str(state)!r}, 'instance-id').write_text('abc123\\n')\n"
        "time.sleep(60)\n"
    )
    d = _ScriptDaemon(script, state).start()
    try:
        assert d.instance_id == "abc123"
        assert d.instance_ids == {"abc123"}
    finally:
        d.kill()
    assert d.returncode == -signal.SIGKILL
    # An exited daemon that never wrote one: None at once, no waiting.
    quitter = tmp_path / "quit.py"
    quitter.write_text("pass\n")
    q = _ScriptDaemon(quitter, tmp_path / "state2").start()
    wait_for(lambda: not q.running(), timeout=30)
    assert q.stop() == 0
    t0 = time.monotonic()
    assert q.instance_id is None
    assert time.monotonic() - t0 < 1
