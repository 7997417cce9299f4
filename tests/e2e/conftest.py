"""Fixtures for the end-to-end tests: the packages built from this checkout and booted Debian 12
hosts (systemd as PID 1) that share the suite's Docker engine."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from planctond import __version__
from tests.e2e import systemd_host
from tests.e2e.helpers import (
    DIST_IN_HOST,
    SEEN_INSTANCES,
    BuiltDebs,
    build_deb,
    instance_id,
    remove_pilots_of,
)
from tests.e2e.systemd_host import SystemdHost

HostFactory = Callable[[], SystemdHost]


@pytest.fixture(scope="session")
def built_debs(tmp_path_factory: pytest.TempPathFactory) -> BuiltDebs:
    """`make deb` twice: this version, and the same tree as a higher version for upgrades."""
    if os.geteuid() != 0:
        pytest.skip("building and installing packages on a booted systemd host needs root")
    upgrade = f"{__version__}+e2e1"
    prebuilt = os.environ.get("PLANCTOND_E2E_DEBS")
    if prebuilt:  # packages someone already built from this tree (both versions)
        return BuiltDebs(Path(prebuilt), __version__, upgrade)
    dist = tmp_path_factory.mktemp("dist")
    build_deb(dist, __version__)
    build_deb(dist, upgrade)
    return BuiltDebs(dist, __version__, upgrade)


@pytest.fixture(scope="module")
def boot_host(
    docker_engine: Any, busybox_image: str, built_debs: BuiltDebs
) -> Iterator[HostFactory]:
    """Boot hosts on demand; each is removed at the end of the module with its daemon's pilots."""
    if shutil.which("debootstrap") is None:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    hosts: list[SystemdHost] = []

    def boot() -> SystemdHost:
        host = systemd_host.boot(
            docker_engine.client,
            docker_engine.socket_path,
            binds={str(built_debs.directory): DIST_IN_HOST},
        )
        hosts.append(host)
        return host

    yield boot
    for host in hosts:
        with contextlib.suppress(Exception):
            instance_id(host)
            print(host.journal("-u", "planctond", "-n", "100", "-o", "short-monotonic")[-10000:])
        host.remove()
    for inst in sorted(SEEN_INSTANCES):
        remove_pilots_of(docker_engine.client, inst)
