"""What the supervisor is given rather than builds: a clock, a way to run blocking calls, and the
host's readings. The composition root (`planctond.cli.application`) passes the real ones; the
tests pass a virtual clock, an inline runner and a scripted host, so the supervisor's behaviour
runs in milliseconds without Docker, deterministically.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol, TypeVar

from planctond.engine.port import ContainerEvent, EngineInfo, EventStream
from planctond.policy.model import HostSnapshot

T = TypeVar("T")


class Clock(Protocol):
    """Two clocks, because they answer different questions: `monotonic` measures intervals (it
    must agree with the event loop's own time, which times our sleeps); `wall` stamps what people
    read and what Docker reports (a pilot's start)."""

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class Runner(Protocol):
    """Runs the engine's blocking calls without stalling the event loop."""

    async def call(self, fn: Callable[..., T], *args: Any) -> T: ...

    def follow(self, stream: EventStream) -> AsyncIterator[ContainerEvent]:
        """The stream's events, delivered on the loop; ends when the stream does."""
        ...

    def close(self) -> None: ...


class HostProbe(Protocol):
    """The host's readings. What it can read depends on the engine's cgroup layout, which is
    known only once Docker answers: `attach` is called on every (re)connection."""

    def attach(self, info: EngineInfo, parent: str, owner_cgroup: str | None = None) -> str:
        """Learn the engine's layout, and where the owner's CPU use is read (`owner.cgroup`;
        None = the whole host). Returns "" or a problem worth showing as the last error (e.g. the
        idle parent cgroup could not be set up). Called again when `owner.cgroup` changes."""
        ...

    def sample(self, extra: Mapping[str, float | bool]) -> HostSnapshot | None:
        """One reading per tick; None before `attach`."""
        ...

    def pilot_cpu_seconds(self, cid: str) -> float | None:
        """One pilot's CPU-seconds so far; None when its cgroup cannot be read (or is gone)."""
        ...

    def pilots_cpu_seconds(self) -> float | None:
        """All pilots' CPU-seconds so far (their parent's counter); None while unreadable."""
        ...
