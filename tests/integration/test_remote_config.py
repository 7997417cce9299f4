"""Remote config end to end (issue 11): a real daemon, real pilots on the suite's dockerd, a real
HTTPS server on loopback with a CA made for the test, and `planctonctl` on a private system bus.

One daemon follows the site's config through `planctonctl bootstrap --as remote`: its own key
wins, a change is applied within the interval, a 304 costs no load, and each failure of the
server (down, slow, untrusted or expired or misnamed certificate, HTTP errors, a document the
loader refuses, a huge or binary answer) keeps the config and its pilots, is logged once and
shows in `planctonctl status`. Another daemon restarts with the server down and runs the cached
document. Intervals are 1 s (the floor): each failure mode takes a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from planctond import constants as C
from planctond.sensors.cgroups import CgroupLayout
from tests.conftest import DaemonFactory
from tests.integration.test_daemon_pilots import pool_config
from tests.support.daemon import DaemonProcess
from tests.support.dbus_daemon import (
    ROOT,
    PrivateBus,
    code_root_for_others,
    private_system_bus,
    unavailable_reason,
)
from tests.support.docker_engine import DockerEngine
from tests.support.https_config import PKI, ConfigServer, make_pki, serving
from tests.support.scope import ContainerScope
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

# A cgroup of the test's own, empty, as `owner.cgroup`: the daemon then sees an owner who never
# needs the CPU, however busy the shared host is, and the pilot counts below are the config's.
QUIET = f"/planctond-test-quiet-{uuid.uuid4().hex[:8]}"
SITE = pool_config(max_pilots="3", owner_cgroup=QUIET)  # tick 1s, busybox `sleep 600`, 0.1 CPU
WITH_B = (
    SITE
    + """\
  b:
    image: busybox:latest
    pull: never
    command: ["sleep", "600"]
    cpus: 0.1
    memory: 64M
    max_pilots: "1"
    stop_grace: 5s
"""
)
# The host's own file: a quick config check, and a lower max_pilots for the site's pool.
LOCAL = """\
config_check: 1s
pools:
  default:
    max_pilots: "1"
"""


@pytest.fixture(autouse=True)
def quiet_owner() -> Iterator[None]:
    layout = CgroupLayout.detect()
    if layout.version == 2:
        mounts = [layout.root]
    else:
        mounts = sorted({m for c, m in layout.controllers.items() if c in ("cpu", "cpuacct")})
    made = [Path(m) / QUIET.lstrip("/") for m in mounts]
    for d in made:
        d.mkdir(parents=True, exist_ok=True)
    yield
    for d in made:
        with contextlib.suppress(OSError):
            d.rmdir()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: PKI) -> Iterator[ConfigServer]:
    with serving(pki, SITE) as s:
        yield s


def remote_section(server: ConfigServer, **extra: str) -> str:
    lines = [
        "remote:",
        f"  url: {server.url}",
        f"  ca_file: {server.pki.ca}",
        "  interval: 1s",
        "  timeout: 3s",
    ]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def pilots(engine: DockerEngine, instance: str | None, pool: str | None = None) -> int:
    if not instance:
        return 0
    labels = [f"{C.LABEL_INSTANCE}={instance}"] + ([f"{C.LABEL_POOL}={pool}"] if pool else [])
    # sparse: no inspect of each container, which races with a pilot being removed.
    return len(engine.client.containers.list(sparse=True, filters={"label": labels}))


def said(daemon: DaemonProcess, pattern: str, since: int = 0) -> int:
    return len(daemon.find_lines(pattern, since))


def ctl(bus: PrivateBus, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "planctond.cli.planctonctl", *args]
    env = {**bus.env(), "PYTHONPATH": str(code_root_for_others()), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)


def remote_status(bus: PrivateBus) -> str:
    proc = ctl(bus, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)["status"]["extra"].get("remote", ""))


def connections_after(server: ConfigServer, n: int) -> Callable[[], bool]:
    start = server.stats.connections
    return lambda: server.stats.connections >= start + n


@pytest.mark.dbus
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_a_daemon_follows_the_site_config_and_survives_every_server_failure(
    docker_engine: DockerEngine,
    busybox_image: str,
    container_scope: ContainerScope,
    server: ConfigServer,
    tmp_path: Path,
) -> None:
    config = tmp_path / "etc" / "planctond.yaml"
    config.parent.mkdir()
    config.write_text(SITE)  # before bootstrap: the host's own config, 3 pilots
    with private_system_bus() as bus:
        daemon = DaemonProcess(
            config,
            tmp_path / "state",
            docker_engine.url,
            env=bus.env(),
        )
        daemon.start()
        try:
            _follow(daemon, bus, server, config, docker_engine)
        finally:
            if daemon.running():
                daemon.stop(timeout=60)
            container_scope.track_instances(daemon.instance_ids)
            print(f"----- planctond output -----\n{daemon.output()}")


def _follow(
    d: DaemonProcess,
    bus: PrivateBus,
    server: ConfigServer,
    config: Path,
    engine: DockerEngine,
) -> None:
    instance = d.instance_id
    wait_for(lambda: pilots(engine, instance) == 3, 60, message="the local config's 3 pilots")

    # Bootstrap: the host follows the site from now on (its own file, the same config, wins).
    mark = d.mark()
    proc = ctl(bus, "bootstrap", server.url, "--as", "remote", "--ca-file", str(server.pki.ca),
               "--interval", "1s", "--timeout", "3s", "--yes")  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "planctond reloaded" in proc.stdout and f"+  url: {server.url}" in proc.stdout
    drop = config.parent / C.DROPIN_DIR_NAME / "50-bootstrap-remote.yaml"
    assert server.url in drop.read_text()
    d.wait_for_line(r"config-loaded: config loaded from .*no change to pools", 30, since=mark)
    assert server.stats.full >= 2  # bootstrap's fetch, and the daemon's for the new URL

    # The host's own key wins: the file now only lowers the site's max_pilots.
    mark = d.mark()
    config.write_text(LOCAL)
    d.wait_for_line(r"config-loaded", 30, since=mark)
    wait_for(
        lambda: pilots(engine, instance) == 1, 60, message="the host's max_pilots over the site's"
    )

    # A 304 costs nothing: no load, no event, no log line (the loader calls are counted in
    # tests/unit/test_supervisor_remote.py).
    mark = d.mark()
    wait_for(
        lambda: server.stats.not_modified >= 4, 30, message="conditional requests answered 304"
    )
    assert said(d, r"config-loaded|config-rejected|remote config", mark) == 0

    # A change of the site's document is applied within the interval, like a local reload.
    mark = d.mark()
    t0 = time.monotonic()
    server.document = WITH_B
    d.wait_for_line(r"config-loaded: config loaded from .*pool b added", 30, since=mark)
    assert time.monotonic() - t0 < 10
    wait_for(lambda: pilots(engine, instance, "b") == 1, 60, message="the site's new pool's pilot")
    assert pilots(engine, instance, "default") == 1

    # Every failure: the config stays, said once, shown in status; then it answers again.
    failures: list[tuple[str, Callable[[], None], Callable[[], None], str]] = [
        ("down", server.down, server.up, r"connection refused"),
        ("slow", lambda: setattr(server.behaviour, "delay", 4.0),
         lambda: setattr(server.behaviour, "delay", 0.0), r"no complete answer within 3 s"),
        ("wrong CA", lambda: setattr(server, "cert", server.pki.foreign),
         lambda: setattr(server, "cert", server.pki.good), r"unable to get local issuer certificate"),
        ("expired", lambda: setattr(server, "cert", server.pki.expired),
         lambda: setattr(server, "cert", server.pki.good), r"certificate has expired"),
        ("wrong name", lambda: setattr(server, "cert", server.pki.wrong_name),
         lambda: setattr(server, "cert", server.pki.good), r"mismatch"),
        ("HTTP 500", lambda: setattr(server.behaviour, "status", 500),
         lambda: setattr(server.behaviour, "status", 200), r"HTTP 500"),
        ("HTTP 404", lambda: setattr(server.behaviour, "status", 404),
         lambda: setattr(server.behaviour, "status", 200), r"HTTP 404"),
        ("huge", lambda: setattr(server.behaviour, "body", b"a: " + b"x" * (C.MAX_CONFIG_SIZE + 10)),
         lambda: setattr(server.behaviour, "body", None), r"not a config"),
        ("binary", lambda: setattr(server.behaviour, "body", b"\x7fELF\x02\x01\x01\x00\x00"),
         lambda: setattr(server.behaviour, "body", None), r"NUL bytes"),
        ("invalid", lambda: setattr(server, "document", WITH_B.replace("cpus: 0.1", "cpus: 0", 1)),
         lambda: setattr(server, "document", WITH_B), r"pools\.default\.cpus"),
    ]  # fmt: skip
    for name, fail, fix, pattern in failures:
        mark = d.mark()
        fail()
        if name == "down":
            time.sleep(4)  # nobody counts connections to a closed port
        else:
            wait_for(connections_after(server, 3), 40, message=f"{name}: three checks")
        wait_for(lambda: said(d, pattern, mark) > 0, 30, message=f"{name}: said")  # noqa: B023
        status = remote_status(bus)
        assert "failing since" in status and "keeping the document fetched at" in status, status
        lines = [line.text for line in d.lines[mark:] if re.search(pattern, line.text)]
        expected = 2 if name == "invalid" else 1  # the rejection event and the remote's note
        assert len(lines) == expected, f"{name}: said {len(lines)} times:\n" + "\n".join(lines)
        assert said(d, r"config-loaded|pilot-stopped|pilot-killed", mark) == 0, name
        assert pilots(engine, instance) == 2, name
        mark = d.mark()
        fix()
        d.wait_for_line(r"answering again", 30, since=mark)
        assert remote_status(bus).startswith(f"{server.url}: ok")
    assert pilots(engine, instance) == 2


def test_a_restart_with_the_server_down_runs_from_the_cache(
    daemon_factory: DaemonFactory, docker_engine: DockerEngine, busybox_image: str,
    server: ConfigServer, tmp_path: Path,
) -> None:  # fmt: skip
    config = tmp_path / "planctond.yaml"
    config.write_text(LOCAL.replace('"1"', '"2"') + remote_section(server))
    state = tmp_path / "state"
    first = daemon_factory(config, state_dir=state)
    first.wait_for_line(r"config-loaded: config loaded from", 30)
    wait_for(lambda: pilots(docker_engine, first.instance_id) == 2, 60, message="2 pilots")
    assert (state / C.REMOTE_CACHE_NAME).exists()
    first.stop()
    server.down()
    second = daemon_factory(config, state_dir=state)
    wait_for(
        lambda: pilots(docker_engine, second.instance_id) == 2,
        60,
        message="2 pilots from the cache",
    )
    second.wait_for_line(r"connection refused.*keeping the document fetched at", 30)
    assert said(second, r"no document of it yet") == 0

    # And a wrong CA is refused from the start: the cache stays what runs.
    third_config = tmp_path / "other.yaml"
    third_config.write_text(config.read_text().replace(str(server.pki.ca), str(server.pki.other_ca)))  # fmt: skip
    second.stop()
    server.up()
    third = daemon_factory(third_config, state_dir=state)
    third.wait_for_line(r"unable to get local issuer certificate.*keeping the document", 30)
    wait_for(lambda: pilots(docker_engine, third.instance_id) == 2, 60, message="the cached config's pilots")  # fmt: skip
