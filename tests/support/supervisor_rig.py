"""A real `Supervisor` on a fake engine, a scripted host and virtual time: the supervisor's
behaviour in milliseconds, with no dockerd, no threads and no dependence on the machine's load.

    @virtual
    async def test_something(tmp_path):
        rig = await Rig.start(tmp_path, CONFIG)
        await rig.until(lambda: len(rig.running()) == 3, within=5, what="3 pilots")
        ...
        await rig.shutdown()
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ParamSpec

from planctond import constants as C
from planctond.config.loader import load_config
from planctond.supervisor.config_watch import Loader
from planctond.supervisor.events import Event, EventKind
from planctond.supervisor.state_store import StateStore
from planctond.supervisor.supervisor import Supervisor
from tests.support.fake_engine import FakeContainer, FakeEngine, FakeHost, FakeRunner
from tests.support.virtual_time import VirtualClock, run_virtual

P = ParamSpec("P")
INSTANCE = "fa4e0000fa4e0000"

# A small host and quick owner rules, so the ladder plays out in a few virtual minutes. The
# `usage` rule: the fake host's owner is a CPU figure the tests set (no stalls, no idle cgroup).
CONFIG = """
tick: 10s
config_check: 5s
owner:
  reserve: 0.5
  margin: 0.25
  reserve_memory: 0
  grace_kill: 30s
  grace_spawn: 20s
  freeze: 15s
  give_way: usage
pools:
  default:
    image: busybox:latest
    pull: never
    command: ["sleep", "600"]
    cpus: 1
    memory: 64M
    max_pilots: "3"
    per_tick: 10
    stop_grace: 5s
"""


def virtual(fn: Callable[P, Awaitable[None]]) -> Callable[P, None]:
    """Run an async test on a virtual-time loop."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        run_virtual(asyncio.wait_for(fn(*args, **kwargs), 24 * 3600))  # type: ignore[arg-type]

    return wrapper


class Rig:
    def __init__(self, tmp_path: Path, config: str) -> None:
        self.dir = tmp_path
        self.config_path = tmp_path / "planctond.yaml"
        self.config_path.write_text(config)
        self.engine = FakeEngine(INSTANCE)
        self.host = FakeHost()
        self.store = StateStore(str(tmp_path / "state"))
        # What reloads call, as the daemon's does; a test may put a broken one in its place.
        self.loader: Loader = lambda path: load_config(path, missing_ok=True)
        self.events: list[Event] = []
        self.sup: Supervisor | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, tmp_path: Path, config: str = CONFIG, *, run: bool = True) -> Rig:
        rig = cls(tmp_path, config)
        rig.new_supervisor()
        if run:
            rig.run()
        return rig

    def new_supervisor(self) -> Supervisor:
        """A fresh supervisor on the same engine, store and config (a daemon restart)."""
        cfg = load_config(str(self.config_path))
        self.sup = Supervisor(
            cfg,
            config_path=str(self.config_path),
            loader=lambda path: self.loader(path),
            engine=self.engine,
            store=self.store,
            instance=INSTANCE,
            host=self.host,
            runner=FakeRunner(self.engine),
            clock=VirtualClock(),
        )
        self.sup.events.subscribe(self.events.append)
        return self.sup

    def run(self) -> None:
        assert self.sup is not None
        self._task = asyncio.create_task(self.sup.run(), name="supervisor")

    @property
    def s(self) -> Supervisor:
        assert self.sup is not None
        return self.sup

    # --- looking ------------------------------------------------------------------------------------
    def pilots(self, *states: str) -> list[FakeContainer]:
        """The engine's containers of our instance, in `states` (default: running or paused)."""
        wanted = states or ("running", "paused")
        return [
            c
            for c in self.engine.containers.values()
            if c.state in wanted and c.labels.get(C.LABEL_INSTANCE) == INSTANCE
        ]

    def running(self) -> list[FakeContainer]:
        return self.pilots("running")

    def alive(self) -> bool:
        """Is the supervisor's run() still going? Raises what ended it, if anything did."""
        assert self._task is not None
        if self._task.done():
            self._task.result()
            return False
        return True

    def kinds(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind is kind]

    def say(self) -> str:
        """What happened, for failure messages."""
        lines = [
            f"{e.time - self.events[0].time if self.events else 0:8.2f} {e.kind.value}: {e.message}"
            for e in self.events[-30:]
        ]
        states = {c.name: c.state for c in self.engine.containers.values()}
        return "\n".join([*lines, f"engine: {states}"])

    async def until(self, pred: Callable[[], Any], within: float, what: str) -> float:
        """Wait (virtual time) until `pred()` holds; returns how long it took."""
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while not pred():
            if loop.time() - t0 > within:
                raise AssertionError(f"not within {within}s: {what}\n{self.say()}")
            if self._task is not None and not self.alive():
                raise AssertionError(f"the supervisor stopped while waiting for {what}")
            await asyncio.sleep(0.05)
        return loop.time() - t0

    async def filled(self, n: int = 3) -> None:
        """Wait for the pool to fill (3 pilots under CONFIG on the fake 4-CPU host)."""
        await self.until(lambda: len(self.running()) == n, 2, f"{n} pilots")

    async def idle(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def shutdown(self, stop_pilots: bool | None = None) -> None:
        assert self.sup is not None and self._task is not None
        self.sup.request_shutdown(stop_pilots)
        await self._task
        self._task = None
