"""The real daemon (real Supervisor, real Docker) on a private system bus: what an admin does with
busctl and planctonctl reaches the supervisor and shows up in Status, properties and signals."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageType
from dbus_next.message import Message

from planctond import constants as C
from tests.support.daemon import DaemonProcess
from tests.support.dbus_daemon import (
    ROOT,
    PrivateBus,
    as_user,
    code_root_for_others,
    private_system_bus,
    unavailable_reason,
)
from tests.support.docker_engine import DockerEngine
from tests.support.scope import ContainerScope
from tests.support.waiting import wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.dbus,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.timeout(240),
]

CONFIG = """
tick: 1s
config_check: 1s
owner:
  reserve: 0
  reserve_memory: 0
pools:
  default:
    image: busybox:latest
    pull: never
    command: ["sleep", "600"]
    cpus: 0.1
    memory: 64M
    max_pilots: "2"
    per_tick: 10
    stop_grace: 5s
"""


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    with private_system_bus() as b:
        yield b


@pytest.fixture
def daemon(
    bus: PrivateBus,
    docker_engine: DockerEngine,
    container_scope: ContainerScope,
    busybox_image: str,
    tmp_path: Path,
) -> Iterator[DaemonProcess]:
    config = tmp_path / "planctond.yaml"
    config.write_text(CONFIG)
    d = DaemonProcess(config, tmp_path / "state", docker_engine.url, env=bus.env())
    d.start()
    try:
        yield d
    finally:
        if d.running():
            d.stop(timeout=60)
        container_scope.track_instances(d.instance_ids)
        print(f"----- planctond output -----\n{d.output()}")


def ctl(bus: PrivateBus, *args: str, user: tuple[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    argv = [sys.executable, "-m", "planctond.cli.planctonctl", *args]
    env = {**bus.env(), "PYTHONPATH": str(code_root_for_others()), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        as_user(*user, argv) if user else argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def status(bus: PrivateBus) -> dict[str, Any] | None:
    proc = ctl(bus, "status", "--json")
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def labelled(engine: DockerEngine, instance: str | None) -> set[str]:
    if not instance:
        return set()
    found = engine.client.containers.list(filters={"label": f"{C.LABEL_INSTANCE}={instance}"})
    return {c.name for c in found}


async def watch_state_changes(address: str, seen: list[str], ready: asyncio.Event) -> None:
    bus = await MessageBus(bus_address=address).connect()
    rule = f"type='signal',interface='{C.INTERFACE}',member='StateChanged'"
    await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[rule],
        )
    )

    def on_message(msg: Message) -> bool:
        if msg.message_type is MessageType.SIGNAL and msg.member == "StateChanged":
            seen.append(msg.body[0])
        return False

    bus.add_message_handler(on_message)
    ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        bus.disconnect()


def test_drain_resume_status_against_the_real_supervisor(
    bus: PrivateBus, daemon: DaemonProcess, docker_engine: DockerEngine
) -> None:
    first = wait_for(lambda: status(bus), 60, message=daemon.tail)
    assert first["status"]["state"] in ("active", "draining", "stopped")
    if first["status"]["state"] != "active":
        assert ctl(bus, "resume").returncode == 0

    # What D-Bus reports is what Docker runs. How many pilots fit depends on what else loads this
    # shared machine, so the test asks for agreement, not for a count.
    def agrees() -> dict[str, Any] | None:
        s = status(bus)
        if s is None or not s["status"]["last_tick_usec"]:
            return None
        names = {p["name"] for p in s["pilots"]}
        if names != labelled(docker_engine, daemon.instance_id) or s["status"]["pilots"] != len(
            names
        ):
            return None
        return s

    report = wait_for(agrees, 90, message=daemon.tail)
    assert report["status"]["docker_ok"] is True
    assert report["status"]["config_path"].endswith("planctond.yaml")
    assert [p["name"] for p in report["status"]["pools"]] == ["default"]

    async def drive() -> list[str]:
        seen: list[str] = []
        ready = asyncio.Event()
        watcher = asyncio.create_task(watch_state_changes(bus.address, seen, ready))
        await ready.wait()
        for args in (["drain"], ["resume"]):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "planctond.cli.planctonctl", *args,
                cwd=ROOT, env={**bus.env(), "PYTHONPATH": str(code_root_for_others())},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await proc.communicate()
            assert proc.returncode == 0, err.decode()
            expected = "draining" if args == ["drain"] else "active"
            assert out.decode() == f"{args[0]}: done, planctond is {expected}\n"
            for _ in range(200):
                if expected in seen:
                    break
                await asyncio.sleep(0.05)
        watcher.cancel()
        return seen

    seen = asyncio.run(asyncio.wait_for(drive(), 120))
    assert seen == ["draining", "active"]

    # Drain again: the running pilots stay (they finish on their own), no new ones start.
    assert ctl(bus, "drain").returncode == 0
    drained = wait_for(lambda: status(bus), 30)
    assert drained["status"]["state"] == "draining"
    assert drained["status"]["summary"].startswith("draining:")
    prop = subprocess.run(
        ["busctl", f"--address={bus.address}", "get-property", C.BUS_NAME, C.OBJECT_PATH, C.INTERFACE, "State"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert prop.stdout.strip() == 's "draining"', prop.stderr
    # A second uid may read but not resume.
    denied = ctl(bus, "resume", user=("nobody", "nogroup"))
    assert denied.returncode == 4, denied.stderr
    assert wait_for(lambda: status(bus), 30)["status"]["state"] == "draining"
    assert ctl(bus, "resume").returncode == 0
    assert daemon.running()
