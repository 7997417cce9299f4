"""Drain, resume, stop and start through the Controller API (what D-Bus and planctonctl call),
in-process against the real engine, and the state surviving a restart of the supervisor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from planctond.cli.application import Application
from planctond.config.loader import load_config_text
from planctond.policy.model import RunState
from planctond.supervisor.supervisor import Supervisor
from tests.integration.test_daemon_pilots import pool_config
from tests.support.docker_engine import DockerEngine

pytestmark = [pytest.mark.docker]


async def until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def make(state: Path, url: str, command: str = '["sleep", "3"]') -> Supervisor:
    text = pool_config(command=command, max_pilots="2") + f"state_dir: {state}\n"
    cfg = load_config_text(text, "test.yaml")
    app = Application(
        cfg,
        config_path=None,
        docker_url=url,
        state_dir_override=None,
        leave_pilots=False,
        dbus=False,
    )
    return app.supervisor


def live(sup: Supervisor) -> int:
    return sum(1 for p in sup.registry if not p.ended)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 120))  # type: ignore[arg-type]


def test_drain_resume_stop_start_and_restart(
    docker_engine: DockerEngine, busybox_image: str, tmp_path: Path, container_scope: Any
) -> None:
    state = tmp_path / "state"

    async def first() -> None:
        sup = make(state, docker_engine.url)
        container_scope.track_instances([sup.instance])
        task = asyncio.create_task(sup.run())
        await until(lambda: live(sup) == 2, 30, "2 pilots")
        await sup.drain()
        assert sup.status().state is RunState.DRAINING
        # pilots run `sleep 3`: they finish and are not replaced
        await until(lambda: live(sup) == 0, 20, "drained")
        await asyncio.sleep(2)
        assert live(sup) == 0
        assert sup.status().summary().startswith("draining")
        await sup.resume()
        await until(lambda: live(sup) == 2, 20, "resumed")
        await sup.stop()
        await until(lambda: live(sup) == 0, 20, "stopped")
        await asyncio.sleep(2)
        assert live(sup) == 0
        sup.request_shutdown()
        await task

    async def second() -> None:
        sup = make(state, docker_engine.url)
        assert sup.run_state is RunState.STOPPED  # survived the restart
        task = asyncio.create_task(sup.run())
        await asyncio.sleep(3)
        assert live(sup) == 0
        await sup.start()
        await until(lambda: live(sup) == 2, 20, "started")
        sup.request_shutdown()
        await task

    async def third() -> None:
        sup = make(state, docker_engine.url)
        assert sup.run_state is RunState.ACTIVE
        await sup.drain()
        sup2 = make(state, docker_engine.url)
        assert sup2.run_state is RunState.DRAINING

    run(first)
    run(second)
    run(third)
