"""The supervisor: keeps the pilots in line with the policy, and answers the control layers.

It is handed everything it talks to (engine, run-state store, host probe, runner, clock, config
loader) by the composition root, `planctond.cli.application`, and builds only its own parts, each
a small module with one job:

    docker_link   connect to Docker, follow its events, notice it lost and back   (root task)
    ticker        read the host, ask the policy, apply its decision               (root task)
    config_watch  reload on request or when the file changes                      (root task)
    remote_watch  fetch the site's remote config, hand new documents to config_watch (root task)
    pilot_ops     start, freeze, thaw, stop, remove pilots; the only place a pilot's phase changes
    image_gate    may a pool's pilots start: image present and fresh enough
    status        Status()/ListPilots answers from memory
    context       the state those parts share

The three root tasks are supervised kopf-style: each handles the failures it expects (Docker
away, a bad config) itself; an unexpected exception in one is logged, the others are cancelled
cleanly and `run()` raises, so systemd restarts a daemon that is really broken instead of one
limping on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from planctond.config.model import Config
from planctond.engine.cgroup_parent import parent_for
from planctond.engine.images import ImageKeeper
from planctond.engine.port import ContainerEvent, Engine, EngineInfo
from planctond.policy import memory
from planctond.policy.model import RunState
from planctond.supervisor.api import PilotCounts, PilotInfo, StatusReport
from planctond.supervisor.config_watch import ConfigWatch, Loader
from planctond.supervisor.context import Context
from planctond.supervisor.docker_link import DockerLink
from planctond.supervisor.events import EventBus, EventKind
from planctond.supervisor.image_gate import ImageGate
from planctond.supervisor.pilot_ops import PilotOps
from planctond.supervisor.ports import Clock, HostProbe, Runner
from planctond.supervisor.registry import Registry
from planctond.supervisor.remote_watch import RemotePort, RemoteWatch
from planctond.supervisor.state_store import PersistedState
from planctond.supervisor.status import pilot_counts, pilot_infos, status_report
from planctond.supervisor.ticker import Ticker
from planctond.supervisor.yield_watch import YieldWatch

log = logging.getLogger(__name__)


class RunStateStore(Protocol):
    """Where the admin's run state outlives the daemon (`state_store.StateStore`)."""

    def load(self) -> PersistedState: ...

    def save(self, run_state: RunState, by: str = "") -> PersistedState: ...


class Supervisor:
    """Implements `planctond.supervisor.api.Controller`."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None,
        loader: Loader,
        engine: Engine,
        store: RunStateStore,
        instance: str,
        host: HostProbe,
        runner: Runner,
        clock: Clock,
        remote: RemotePort | None = None,
    ) -> None:
        self.instance = instance
        self._engine = engine
        self._store = store
        self._host = host
        self._ctx = ctx = Context(config, config_path, clock)
        ctx.run_state = store.load().run_state
        self.started = clock.wall()
        self._link = DockerLink(ctx, engine, runner, self._on_connected, self._on_event)
        images = ImageGate(ctx, ImageKeeper(engine), runner)
        self._ops = PilotOps(
            ctx, engine, runner, images, instance, self._link.suspect, host.pilot_cpu_seconds
        )
        self._ticker = Ticker(ctx, engine, runner, host, self._ops, self._link.suspect, self.status)
        self._yields = YieldWatch(ctx, host.pilots_cpu_seconds)
        self._ticker.decision_hooks.append(self._yields.on_decision)
        ctx.events.subscribe(self._yields.on_event)
        self._config = ConfigWatch(
            ctx, loader, runner, self._ops.update_resources, self._on_owner_scope
        )
        self._engine_info: EngineInfo | None = None
        self._status_extras: list[Callable[[], Mapping[str, str]]] = []
        self._remote: RemoteWatch | None = None
        if remote is not None:  # without it (tests) a `remote:` is never fetched
            self._remote = RemoteWatch(ctx, runner, remote, self._config.reload)
            self._config.remote = self._remote
            self._status_extras.append(self._remote.status_extra)
        for w in config.warnings:
            log.warning("%s", w)

    # --- what tests and the composition root may look at ----------------------------------------
    @property
    def events(self) -> EventBus:
        return self._ctx.events

    @property
    def config(self) -> Config:
        return self._ctx.config

    @property
    def run_state(self) -> RunState:
        return self._ctx.run_state

    @property
    def registry(self) -> Registry:
        return self._ctx.registry

    # --- hooks for the control layer ------------------------------------------------------------
    def on_tick(self, fn: Callable[[StatusReport], None]) -> None:
        """Called after every completed full tick (systemd STATUS=, metrics)."""
        self._ticker.tick_hooks.append(fn)

    def on_heartbeat(self, fn: Callable[[], None]) -> None:
        """Called each time the loop comes round (at least every second): the watchdog's ping."""
        self._ticker.heartbeat_hooks.append(fn)

    def add_status_extra(self, fn: Callable[[], Mapping[str, str]]) -> None:
        """More lines for Status()'s `extra` (the monitoring backends' health)."""
        self._status_extras.append(fn)

    def add_variable_source(self, fn: Callable[[], Mapping[str, float | bool]]) -> None:
        """Extra host variables for expressions (logind's owner_idle)."""
        self._ticker.variable_sources.append(fn)

    def request_shutdown(self, stop_pilots: bool | None = None) -> None:
        """`stop_pilots` None follows `docker.stop_pilots_on_exit` of the config in force."""
        if stop_pilots is not None:
            self._ctx.stop_pilots_on_exit = stop_pilots
        self._ctx.shutdown.set()
        self._ctx.kick()

    # --- Controller -----------------------------------------------------------------------------
    async def start(self) -> None:
        self._ctx.policy = memory.after_admin_start(self._ctx.policy)
        self._set_state(RunState.ACTIVE, "start")

    async def drain(self) -> None:
        self._set_state(RunState.DRAINING, "drain")

    async def resume(self) -> None:
        self._set_state(RunState.ACTIVE, "resume")

    async def stop(self) -> None:
        self._set_state(RunState.STOPPED, "stop")

    async def reload(self) -> None:
        await self._config.reload()

    def status(self) -> StatusReport:
        report = status_report(self._ctx, self.started, self.instance, self._engine.calls)
        for fn in self._status_extras:
            report.extra.update(fn())
        return report

    def pilots(self) -> list[PilotInfo]:
        return pilot_infos(self._ctx, self._host)

    def counts(self) -> PilotCounts:
        return pilot_counts(self._ctx)

    def _set_state(self, state: RunState, by: str) -> None:
        ctx = self._ctx
        self._store.save(state, by)
        if state is not ctx.run_state:
            old, ctx.run_state = ctx.run_state, state
            ctx.emit(
                EventKind.STATE_CHANGED,
                f"state {old.value} -> {state.value} ({by})",
                state=state.value,
            )
        ctx.kick()

    # --- wiring between the parts ------------------------------------------------------------------
    def _on_connected(self, info: EngineInfo) -> None:
        self._engine_info = info
        config = self._ctx.config
        parent = parent_for(info.cgroup_driver, config.docker.cgroup_parent)
        problem = self._host.attach(info, parent, config.owner.cgroup)
        if problem:
            self._ctx.last_error = problem

    def _on_owner_scope(self) -> None:
        """A reload changed `owner.cgroup`: read the owner from there from the next tick on (the
        rolling means start over: they measured something else)."""
        if self._engine_info is not None:
            self._on_connected(self._engine_info)

    def _on_event(self, ev: ContainerEvent) -> None:
        self._ops.on_event(ev)

    # --- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        ctx = self._ctx
        link = asyncio.create_task(self._link.run(), name="docker")
        tasks = [
            asyncio.create_task(self._ticker.run(), name="tick-loop"),
            asyncio.create_task(self._config.run(), name="config-watch"),
        ]
        if self._remote is not None:
            tasks.append(asyncio.create_task(self._remote.run(), name="remote-watch"))
        shutdown = asyncio.create_task(ctx.shutdown.wait(), name="shutdown")
        try:
            done, _ = await asyncio.wait(
                [*tasks, link, shutdown], return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                exc = None if t is shutdown or t.cancelled() else t.exception()
                if exc is not None:
                    log.error("task %s failed; stopping", t.get_name(), exc_info=exc)
                    raise exc
        finally:
            ctx.shutdown.set()
            for t in [*tasks, shutdown]:
                t.cancel()
            await asyncio.gather(*tasks, shutdown, return_exceptions=True)
            # The event follower keeps running while pilots stop: their exits arrive as events.
            try:
                await self._finish()
            finally:
                link.cancel()
                await asyncio.gather(link, return_exceptions=True)

    async def _finish(self) -> None:
        ctx = self._ctx
        await ctx.ops_done()
        if ctx.stop_pilots_on_exit and ctx.docker_ok:
            await self._ops.stop_all_now()
            await ctx.ops_done()
        elif not ctx.stop_pilots_on_exit:
            log.info("leaving %d pilots running for the next daemon to adopt", len(ctx.registry))
