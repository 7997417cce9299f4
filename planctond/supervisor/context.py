"""The state the supervisor's parts share, in one visible place.

The supervisor is split by job (Docker link, pilot operations, image gate, config watch, ticks);
they all read the config in force, the pilots, the policy's memory and whether Docker answers.
Keeping that state in one object, instead of in attributes scattered over the parts, makes it
plain what each part may change: each part's docstring says what it writes here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from planctond.config.model import Config
from planctond.engine.port import EngineInfo
from planctond.policy.decide import PoolVerdict
from planctond.policy.model import HostSnapshot, RunState
from planctond.policy.state import PolicyState
from planctond.supervisor.events import Event, EventBus, EventKind
from planctond.supervisor.ports import Clock
from planctond.supervisor.registry import Pilot, Registry

log = logging.getLogger("planctond.supervisor")

_NUMBERS = re.compile(r"\d+(\.\d+)?")


@dataclass
class Starts:
    """Starts in flight: created but not yet answered by the engine."""

    per_pool: dict[str, int] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    # Pilots whose exit event arrived before their create_and_start returned.
    early_exits: dict[str, int | None] = field(default_factory=dict)


class Context:
    def __init__(self, config: Config, config_path: str | None, clock: Clock) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.events = EventBus()
        self.registry = Registry(clock)
        self.run_state = RunState.ACTIVE
        self.policy = PolicyState()
        self.verdicts: dict[str, PoolVerdict] = {}
        self.starts = Starts()
        self.host: HostSnapshot | None = None
        self.engine_info: EngineInfo | None = None
        self.docker_ok = False
        self.docker_error = "not connected yet"
        self.stop_pilots_on_exit = config.docker.stop_pilots_on_exit
        self.last_error = ""
        self.last_tick = 0.0  # epoch seconds
        self.ticks = 0
        self.kicked = asyncio.Event()  # something changed: decide now, do not wait for the tick
        self.full_wanted = False  # (re)connected: reconcile with a list call at once
        self.shutdown = asyncio.Event()
        self._ops: set[asyncio.Task[Any]] = set()
        self._notes: dict[str, str] = {}

    def kick(self) -> None:
        self.kicked.set()

    def emit(self, kind: EventKind, message: str, pilot: Pilot | None = None, **kw: Any) -> None:
        if pilot is not None:
            kw.setdefault("pilot", pilot.name)
            kw.setdefault("pilot_id", pilot.id)
            kw.setdefault("pool", pilot.pool)
        self.events.emit(Event(kind=kind, message=message, time=self.clock.wall(), **kw))

    def note(self, key: str, text: str) -> None:
        """Log a condition once when it appears or changes kind, not every tick: the figures in
        it ("0.01 CPUs left") move every tick and do not make it news."""
        shape = _NUMBERS.sub("#", text)
        if self._notes.get(key) != shape:
            self._notes[key] = shape
            if text:
                log.info("%s", text)

    # --- pilot operations in the background -------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a pilot operation beside the loop; the supervisor waits for them at exit."""
        task = asyncio.create_task(coro)
        self._ops.add(task)
        task.add_done_callback(self._op_done)

    def _op_done(self, task: asyncio.Task[Any]) -> None:
        self._ops.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pilot operation failed", exc_info=task.exception())

    async def ops_done(self) -> None:
        while self._ops:
            await asyncio.gather(*list(self._ops), return_exceptions=True)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.shutdown.wait(), seconds)
