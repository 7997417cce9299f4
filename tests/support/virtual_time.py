"""An asyncio event loop on virtual time, for the supervisor's fast tests (kopf's `looptime` idea).

The loop's clock only moves when nothing is ready to run: instead of blocking in `select()` until
the next timer, it jumps to it. A test that waits out a 120 s grace period takes microseconds,
and the order of everything that happens is fixed by the code, not by the machine's load.

The supervisor under test gets `VirtualClock`, whose monotonic time is the loop's, and an inline
runner (`fake_engine.FakeRunner`): no threads, so no real time can leak in.
"""

from __future__ import annotations

import asyncio
import math
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

EPOCH = 1_800_000_000.0  # the wall clock's reading at virtual time 0 (a fixed date in 2027)
# With no timer pending and no I/O ready the loop would sleep for ever: a deadlock in the test.
IDLE_LIMIT = 5.0
# Rounds of the loop without the clock moving: beyond this, something spins (a busy loop that
# would hang the test); fail with what each task was doing instead.
SPIN_LIMIT = 200_000


class VirtualTimeError(RuntimeError):
    pass


class _Selector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        assert loop is not None
        ready = super().select(0)
        if ready or loop.has_ready_callbacks():
            loop.spun()
            return ready
        if timeout is None:
            # Nothing scheduled: only another thread could wake us (the loop's self-pipe).
            ready = super().select(IDLE_LIMIT)
            if not ready:
                raise VirtualTimeError("the loop has nothing to do and no timer pending")
            return ready
        loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self._now = 0.0
        # A real loop fires timers up to its clock's resolution early and lets real time catch
        # up; virtual time only moves when we move it, so a timer must fire at or after its
        # time, never before (code that re-checks `monotonic() >= deadline` would spin).
        self._clock_resolution = 0.0

        self._spins = 0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Jump just past `seconds` from now: the due timer is then strictly in the past, as
        asyncio requires to run it (a jump of exactly `seconds` can round to just short)."""
        self._now = math.nextafter(self._now + max(0.0, seconds), math.inf)
        self._spins = 0

    def has_ready_callbacks(self) -> bool:
        return bool(self._ready)  # type: ignore[attr-defined]

    def spun(self) -> None:
        self._spins += 1
        if self._spins > SPIN_LIMIT:
            stacks = "\n".join(
                f"{t.get_name()}: {t.get_stack(limit=3)}" for t in asyncio.all_tasks(self)
            )
            raise VirtualTimeError(f"busy loop at virtual time {self._now!r}:\n{stacks}")


class VirtualClock:
    """The supervisor's clock on a virtual loop: both clocks move with the loop's time."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return EPOCH + asyncio.get_running_loop().time()


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
