"""The link to Docker: connect, follow its event stream, notice when it is lost and when it is
back. Only this part decides that Docker is lost or back; the others report a suspicion
(`suspect`), which cuts the event stream and so hands the question to the connection loop: it
re-checks with `info` and reconnects, so a passing timeout cannot leave the daemon believing
forever that Docker is gone.

Writes to the context: `docker_ok`, `docker_error`, `last_error` on loss, `engine_info`,
`full_wanted` (a reconnect reconciles with one list call at once).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from planctond import constants as C
from planctond.engine.errors import EngineError, EngineUnavailable
from planctond.engine.port import ContainerEvent, Engine, EngineInfo, EventStream
from planctond.supervisor.context import Context
from planctond.supervisor.events import EventKind
from planctond.supervisor.ports import Runner

log = logging.getLogger(__name__)


class DockerLink:
    def __init__(
        self,
        ctx: Context,
        engine: Engine,
        runner: Runner,
        on_connected: Callable[[EngineInfo], None],
        on_event: Callable[[ContainerEvent], None],
    ) -> None:
        self._ctx = ctx
        self._engine = engine
        self._runner = runner
        self._on_connected = on_connected
        self._on_event = on_event
        self._stream: EventStream | None = None

    def suspect(self, exc: Exception) -> None:
        """A call found Docker unreachable or too slow: let the connection loop judge."""
        log.warning("Docker call failed: %s; reconnecting", exc)
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def _lost(self, exc: Exception) -> None:
        ctx = self._ctx
        if ctx.docker_ok:
            ctx.docker_ok = False
            ctx.docker_error = ctx.last_error = str(exc)
            ctx.emit(
                EventKind.DOCKER_LOST,
                f"lost Docker: {exc}; waiting for it to come back",
                reason=str(exc),
            )

    async def run(self) -> None:
        """Root task: until shutdown, be connected and follow events, or wait for Docker."""
        ctx = self._ctx
        delay = C.DOCKER_RETRY_MIN
        told = False  # the admin knows Docker is away
        while not ctx.shutdown.is_set():
            try:
                info = await self._runner.call(self._engine.info)
                self._connected(info)
                stream = await self._runner.call(self._engine.events, ctx.clock.wall())
                self._stream = stream
            except EngineError as exc:
                ctx.docker_error = str(exc)
                if ctx.docker_ok:
                    self._lost(exc)
                elif not told:
                    ctx.emit(EventKind.DOCKER_LOST, f"waiting for Docker: {exc}", reason=str(exc))
                told = True
                await ctx.sleep(delay)
                delay = min(C.DOCKER_RETRY_MAX, delay * 2)
                continue
            if told or not ctx.docker_ok:
                if told:
                    ctx.emit(EventKind.DOCKER_BACK, f"Docker is back ({info.server_version})")
                ctx.docker_ok, told, delay = True, False, C.DOCKER_RETRY_MIN
                ctx.kick()
            try:
                await self._follow(stream)
            finally:
                self._stream = None
                with contextlib.suppress(Exception):
                    stream.close()
            if not ctx.shutdown.is_set():
                self._lost(EngineUnavailable("the Docker event stream ended"))
                told = True
                await ctx.sleep(min(delay, C.DOCKER_RETRY_MIN))

    def _connected(self, info: EngineInfo) -> None:
        ctx = self._ctx
        if ctx.engine_info is None or ctx.engine_info.cgroup_driver != info.cgroup_driver:
            ctx.engine_info = info
            self._on_connected(info)
        ctx.engine_info = info

    async def _follow(self, stream: EventStream) -> None:
        ctx = self._ctx
        # Events may have raced the connect: a full tick reconciles with one list call.
        ctx.full_wanted = True
        ctx.kick()
        async for ev in self._runner.follow(stream):
            try:
                self._on_event(ev)
            except Exception:
                log.exception("cannot handle Docker event %r", ev)
