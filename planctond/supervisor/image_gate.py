"""May pilots of this pool start now? Image presence and freshness, checked and pulled in the
background so a slow registry never holds up the loop, and a failing pull of an image already
present never holds up pilots (`planctond.engine.images.ImageKeeper` keeps the facts).

Writes to the context: `last_error` when an image can never be had (absent with `pull: never`).
"""

from __future__ import annotations

import logging

from planctond.config.model import PoolConfig, PullPolicy
from planctond.engine.errors import EngineError
from planctond.engine.images import ImageKeeper
from planctond.supervisor.context import Context
from planctond.supervisor.events import EventKind
from planctond.supervisor.ports import Runner

log = logging.getLogger(__name__)


class ImageGate:
    def __init__(self, ctx: Context, keeper: ImageKeeper, runner: Runner) -> None:
        self._ctx = ctx
        self._keeper = keeper
        self._runner = runner
        self._busy: set[str] = set()  # refs with a check or pull under way

    def forget(self, ref: str) -> None:
        """The engine said the image is gone: check again before the next start."""
        self._keeper.forget(ref)

    def ready(self, pool: PoolConfig) -> bool:
        ctx, ref = self._ctx, pool.image
        now = ctx.clock.monotonic()
        if self._keeper.pull_due(ref, pool.pull, pool.pull_refresh, now) and ref not in self._busy:
            self._busy.add(ref)
            ctx.spawn(self._pull(ref))
        usable = self._keeper.usable(ref)
        if usable is None and ref not in self._busy:
            self._busy.add(ref)
            ctx.spawn(self._check(ref, pool))
            return False
        if not usable:
            ctx.note(f"image:{ref}", f"pool {pool.name}: image {ref} is not available yet")
        return bool(usable)

    async def _check(self, ref: str, pool: PoolConfig) -> None:
        ctx = self._ctx
        try:
            present = await self._runner.call(self._keeper.check_present, ref)
            if not present and pool.pull is PullPolicy.NEVER:
                ctx.last_error = f"image {ref} is not present and pool {pool.name} has pull: never"
                ctx.emit(EventKind.IMAGE, ctx.last_error, pool=pool.name)
            elif not present:
                await self._pull(ref, keep_busy=True)
        except EngineError as exc:
            log.warning("%s", exc)
        finally:
            self._busy.discard(ref)
        ctx.kick()

    async def _pull(self, ref: str, keep_busy: bool = False) -> None:
        ctx = self._ctx
        try:
            msg = await self._runner.call(self._keeper.pull, ref, ctx.clock.monotonic())
            if msg:
                ctx.emit(EventKind.IMAGE, msg)
        except EngineError as exc:
            log.warning("%s", exc)
        finally:
            if not keep_busy:
                self._busy.discard(ref)
        ctx.kick()
