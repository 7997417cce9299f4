"""Fixtures shared by the whole suite: the suite's own dockerd, pilot images, per-test container
scopes and planctond as a real process.

Docker tests need root (to start dockerd). Not root: they are skipped, saying so. Root but dockerd
will not start: that is an error of the run, never a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.docker_engine import (
    ENV_REUSE_URL,
    DockerEngine,
    connect_existing,
    start_private_engine,
)
from tests.support.images import ensure_busybox, ensure_wq_worker
from tests.support.scope import ContainerScope


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the engine is a docker test even if its author forgot the marker, so
    `-m "not docker"` really leaves Docker out."""
    for item in items:
        if "docker_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A real Docker engine for this run: our own dockerd on a private socket, or the one
    PLANCTOND_TEST_DOCKER_URL names (then only containers the tests created are removed)."""
    url = os.environ.get(ENV_REUSE_URL)
    if url:
        engine = connect_existing(url)
        yield engine
        engine.client.close()
        return
    if os.geteuid() != 0:
        pytest.skip(
            f"needs root to start a private dockerd (or set {ENV_REUSE_URL}=unix:///path/docker.sock)"
        )
    engine = start_private_engine()
    try:
        # The engine and its data-root are the suite's alone: whatever an interrupted earlier
        # run left behind would only confuse the counts the tests make.
        engine.remove_all_containers()
        yield engine
        engine.remove_all_containers()
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def docker_client(docker_engine: DockerEngine) -> Any:
    return docker_engine.client


@pytest.fixture(scope="session")
def busybox_image(docker_engine: DockerEngine) -> str:
    """`busybox:latest` in the test engine, built from Debian's busybox-static if absent."""
    return ensure_busybox(docker_engine.url)


@pytest.fixture(scope="session")
def wq_image(docker_engine: DockerEngine) -> str:
    """`planctond/wq-worker:latest`: busybox + cctools' work_queue_worker and its libraries."""
    return ensure_wq_worker(docker_engine.url)


@pytest.fixture
def container_scope(docker_engine: DockerEngine) -> Iterator[ContainerScope]:
    """A unique label set and name prefix for this test; its containers are removed after it."""
    scope = ContainerScope.new(docker_engine.client)
    yield scope
    scope.cleanup()


DaemonFactory = Callable[..., DaemonProcess]


@pytest.fixture
def daemon_factory(
    docker_engine: DockerEngine, container_scope: ContainerScope, tmp_path: Path
) -> Iterator[DaemonFactory]:
    """make(config_text_or_path, state_dir=None, extra_args=(), start=True) -> DaemonProcess.

    Every daemon made here is stopped after the test, its pilots removed with the test's
    containers, and its log printed (pytest shows it when the test fails)."""
    made: list[DaemonProcess] = []

    def make(
        config: str | Path,
        state_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        start: bool = True,
    ) -> DaemonProcess:
        n = len(made) + 1
        if isinstance(config, Path):
            config_path = config
        else:
            config_path = tmp_path / f"planctond-{n}.yaml"
            config_path.write_text(config)
        daemon = DaemonProcess(
            config_path,
            state_dir if state_dir is not None else tmp_path / f"state-{n}",
            docker_engine.url,
            extra_args,
        )
        made.append(daemon)
        return daemon.start() if start else daemon

    yield make

    for i, daemon in enumerate(made, 1):
        if daemon.running():
            try:
                daemon.stop(timeout=60)
            except AssertionError as exc:
                print(exc)
        container_scope.track_instances(daemon.instance_ids)
        print(f"----- planctond #{i} output -----\n{daemon.output()}")
