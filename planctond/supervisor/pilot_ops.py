"""Everything done to a pilot, and the only place a pilot's phase changes.

A phase changes for two reasons only: we decided something (start, freeze, thaw, stop), or Docker
showed us something (an event, a list). Both go through here, so the rules that reconcile the two
(a decided freeze holds while Docker's pause is under way; a stopping pilot stays stopping; a
starved pilot stays frozen for the policy) live in one function, `observe`.

Stops never hold a thread for the grace period: SIGTERM is sent, and the operation sleeps on the
loop until the pilot's exit event arrives or `stop_grace` runs out, then sends SIGKILL.

Writes to the context: the registry, starts in flight, the policy's back-off memory (through
`planctond.policy.memory`), `last_error`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from planctond import constants as C
from planctond.config.model import PoolConfig
from planctond.engine.errors import EngineError, EngineUnavailable, NoSuchImage
from planctond.engine.port import ContainerEvent, Engine
from planctond.engine.spec import build_spec, resource_limits
from planctond.policy import memory
from planctond.policy.model import PilotAction, PilotPhase, Reason
from planctond.supervisor.context import Context
from planctond.supervisor.events import EventKind
from planctond.supervisor.image_gate import ImageGate
from planctond.supervisor.ports import Runner
from planctond.supervisor.registry import Pilot

log = logging.getLogger(__name__)

# After SIGKILL, how long a shutdown waits for the exit event before removing the container.
KILL_WAIT = 5.0
POLL = 0.2


class PilotOps:
    def __init__(
        self,
        ctx: Context,
        engine: Engine,
        runner: Runner,
        images: ImageGate,
        instance: str,
        on_engine_suspect: Callable[[Exception], None],
        pilot_cpu_seconds: Callable[[str], float | None] = lambda cid: None,
    ) -> None:
        self._ctx = ctx
        self._engine = engine
        self._runner = runner
        self._images = images
        self._instance = instance
        self._suspect = on_engine_suspect
        self._pilot_cpu_seconds = pilot_cpu_seconds

    # --- what Docker shows ------------------------------------------------------------------------
    def observe(self, p: Pilot, phase: PilotPhase) -> None:
        """Docker shows `p` in `phase` (a list or an event). Our own decisions in progress win:
        a stopping pilot stays stopping, a pause or unpause under way keeps the decided phase,
        and a starved pilot stays frozen while Docker calls it running."""
        if p.changing:
            return
        p.paused = phase is PilotPhase.FROZEN
        if p.phase is PilotPhase.STOPPING:
            return
        if p.starved and phase is PilotPhase.RUNNING:
            return
        p.phase = phase

    def on_event(self, ev: ContainerEvent) -> None:
        ctx = self._ctx
        p = ctx.registry.get(ev.id)
        if ev.action == "start" and p is None:
            if ev.name in ctx.starts.names or ctx.registry.has_ended(ev.id):
                return  # our own start (registered when create returns), or a late event
            p = ctx.registry.from_labels(ev.id, ev.name, ev.attrs, ev.attrs.get("image", ""))
        if p is None:
            if ev.action == "die" and ev.name in ctx.starts.names:
                ctx.starts.early_exits[ev.id] = ev.exit_code
            return
        if ev.action == "die":
            self.ended(p, ev.exit_code)
        elif ev.action == "pause" and p.phase is PilotPhase.RUNNING:
            self.observe(p, PilotPhase.FROZEN)
        elif ev.action == "unpause" and p.phase is PilotPhase.FROZEN:
            self.observe(p, PilotPhase.RUNNING)
        elif ev.action == "destroy":
            self.ended(p, None, remove=False, judged=False)

    # --- starting -----------------------------------------------------------------------------------
    def start(self, pool: PoolConfig, count: int, why: str, parent: str) -> None:
        """Start `count` pilots of `pool` in the background, if its image is ready."""
        ctx = self._ctx
        if not self._images.ready(pool):
            # Nothing starts: give back the per_tick allowance the decision counted.
            ctx.policy = memory.after_start_skipped(ctx.policy, pool.name, count)
            return
        for _ in range(count):
            ctx.starts.per_pool[pool.name] = ctx.starts.per_pool.get(pool.name, 0) + 1
            ctx.spawn(self._start_one(pool, why, parent))

    async def _start_one(self, pool: PoolConfig, why: str, parent: str) -> None:
        ctx = self._ctx
        spec = build_spec(pool, instance=self._instance, cgroup_parent=parent)
        ctx.starts.names.add(spec.name)
        try:
            cid = await self._runner.call(self._engine.create_and_start, spec)
        except EngineError as exc:
            self._start_failed(pool, exc)
            return
        finally:
            ctx.starts.per_pool[pool.name] = max(0, ctx.starts.per_pool.get(pool.name, 1) - 1)
            ctx.starts.names.discard(spec.name)
        known = ctx.registry.get(cid) is not None
        pilot = ctx.registry.from_labels(cid, spec.name, spec.create["labels"], pool.image)
        pilot.created = min(pilot.created, ctx.clock.wall())
        if not known:
            ctx.emit(EventKind.PILOT_STARTED, f"started: {why}", pilot, reason="spawned")
        if cid in ctx.starts.early_exits:
            self.ended(pilot, ctx.starts.early_exits.pop(cid))

    def _start_failed(self, pool: PoolConfig, exc: EngineError) -> None:
        ctx = self._ctx
        if isinstance(exc, NoSuchImage):
            self._images.forget(pool.image)
        now = ctx.clock.monotonic()
        ctx.policy, backoff = memory.after_start_failure(ctx.policy, pool, now, str(exc))
        if backoff is None:
            return  # the same burst failing for the same reason: already said
        ctx.last_error = str(exc)
        ctx.emit(
            EventKind.POOL_BACKOFF,
            f"pool {pool.name}: {backoff.last_reason}; next try in {backoff.until - now:.0f}s",
            pool=pool.name,
            reason=str(exc),
        )
        if isinstance(exc, EngineUnavailable):
            self._suspect(exc)

    # --- freezing -----------------------------------------------------------------------------------
    # The decided phase holds from the decision on, while Docker's pause/unpause is under way: a
    # decision in between (an exit elsewhere) must see the pilot as the policy left it, or it
    # would freeze it again and restart its `freeze` clock.
    def freeze(self, p: Pilot, a: PilotAction) -> None:
        if p.phase is PilotPhase.RUNNING:
            p.phase = PilotPhase.FROZEN
            p.pending += 1
            self._ctx.spawn(self._freeze(p, a))

    def thaw(self, p: Pilot, a: PilotAction) -> None:
        if p.phase is PilotPhase.FROZEN:
            p.phase = PilotPhase.RUNNING
            p.pending += 1
            self._ctx.spawn(self._thaw(p, a))

    async def _freeze(self, p: Pilot, a: PilotAction) -> None:
        detail = a.detail
        async with p.op_lock:
            try:
                await self._runner.call(self._engine.pause, p.id)
                p.paused = True
            except EngineUnavailable as exc:
                log.warning("%s", exc)
                p.pending -= 1
                if p.phase is PilotPhase.FROZEN:
                    p.phase = PilotPhase.RUNNING  # not frozen after all; the next tick decides
                return
            except EngineError as exc:
                # Under the idle parent a busy owner starves the pilot so completely that the
                # cgroup freezer cannot catch it (runc gives up). It gets no CPU either way:
                # count it as frozen, so the ladder goes on to a graceful stop if the owner stays.
                p.starved = True
                detail += f"; not paused ({exc}), starved by the idle cgroup instead"
            p.pending -= 1
        if not p.ended and p.phase is not PilotPhase.STOPPING:  # not stopped meanwhile
            self._ctx.emit(EventKind.PILOT_FROZEN, f"frozen: {detail}", p, reason=a.reason.value)

    async def _thaw(self, p: Pilot, a: PilotAction) -> None:
        async with p.op_lock:
            try:
                if p.paused:
                    await self._runner.call(self._engine.unpause, p.id)
                    p.paused = False
            except EngineError as exc:
                log.warning("%s", exc)
                p.pending -= 1
                if p.phase is PilotPhase.RUNNING:
                    p.phase = PilotPhase.FROZEN  # still paused; the next tick decides again
                return
            p.pending -= 1
            p.starved = False
        if not p.ended and p.phase is not PilotPhase.STOPPING:
            self._ctx.emit(EventKind.PILOT_THAWED, f"thawed: {a.detail}", p, reason=a.reason.value)

    # --- stopping -----------------------------------------------------------------------------------
    def stop(self, p: Pilot, reason: Reason, detail: str) -> None:
        if p.phase is not PilotPhase.STOPPING:
            self._ctx.spawn(self.stop_now(p, reason, detail))

    async def stop_now(self, p: Pilot, reason: Reason, detail: str, wait: bool = False) -> None:
        """SIGTERM, `stop_grace` for the pilot to finish, then SIGKILL. `wait`: at shutdown, do
        not return before the container is gone (removed if its exit never shows)."""
        ctx = self._ctx
        pool = ctx.config.pool(p.pool)
        grace = pool.stop_grace if pool else C.DEFAULT_STOP_GRACE
        p.phase, p.stop_reason, p.stop_detail = PilotPhase.STOPPING, reason, detail
        # The work a stop throws away, read now: the pilot's cgroup goes with its container.
        # (One small file read: the stop itself costs far more.)
        p.cpu_seconds = self._pilot_cpu_seconds(p.id)
        log.info("stopping pilot %s (%s): %s", p.name, reason.value, detail)
        async with p.op_lock:  # after a pause or unpause under way
            if p.paused:
                # A frozen process cannot act on SIGTERM: thaw it so it can finish cleanly.
                try:
                    await self._runner.call(self._engine.unpause, p.id)
                    p.paused = False
                except EngineError as exc:
                    log.warning("%s", exc)
            try:
                await self._runner.call(self._engine.signal, p.id, "SIGTERM")
            except EngineError as exc:
                log.warning("%s", exc)
        await self._until_ended(p, grace)
        if p.ended:
            return
        p.killed = True
        try:
            await self._runner.call(self._engine.signal, p.id, "SIGKILL")
        except EngineError as exc:
            log.debug("%s", exc)
        if wait:
            await self._until_ended(p, KILL_WAIT)
            if not p.ended:
                await self.remove(p)
                self.ended(p, None, remove=False)

    async def _until_ended(self, p: Pilot, seconds: float) -> None:
        clock = self._ctx.clock
        deadline = clock.monotonic() + seconds
        while not p.ended and (left := deadline - clock.monotonic()) > 0:
            await asyncio.sleep(min(POLL, left))

    async def stop_all_now(self) -> None:
        pilots = self._ctx.registry.live()
        if not pilots:
            return
        log.info("stopping %d pilots before exit", len(pilots))
        await asyncio.gather(
            *(
                self.stop_now(p, Reason.SHUTDOWN, "the daemon is shutting down", wait=True)
                for p in pilots
            ),
            return_exceptions=True,
        )

    async def remove(self, p: Pilot) -> None:
        try:
            await self._runner.call(self._engine.remove, p.id)
        except EngineError as exc:
            log.warning("%s", exc)

    async def update_resources(self, pool: PoolConfig) -> None:
        """A reload changed cpus/memory/swap: `docker update` the running pilots in place."""
        limits = resource_limits(pool)
        for p in self._ctx.registry.live():
            if p.pool != pool.name:
                continue
            try:
                await self._runner.call(self._engine.update_resources, p.id, limits)
                p.cpus = pool.cpus
            except EngineError as exc:
                log.warning("%s", exc)

    # --- ends ---------------------------------------------------------------------------------------
    def ended(
        self, p: Pilot, exit_code: int | None, remove: bool = True, judged: bool = True
    ) -> None:
        """Report an exit once, feed the pool's back-off, remove the container, replace it now.
        A pilot removed behind our back (`judged=False`) says nothing about the pool's health."""
        if p.ended:
            return
        ctx = self._ctx
        p.ended = True
        lifetime = max(0.0, ctx.clock.wall() - p.created)
        pool = ctx.config.pool(p.pool)
        if pool is not None and judged:
            now = ctx.clock.monotonic()
            ctx.policy, backoff = memory.after_pilot_end(
                ctx.policy,
                pool,
                now,
                exit_code=exit_code,
                lifetime=lifetime,
                stopped_by_us=p.stop_reason is not None,
            )
            if backoff is not None:
                ctx.emit(
                    EventKind.POOL_BACKOFF,
                    f"pool {pool.name}: {backoff.last_reason}; waiting {backoff.until - now:.0f}s before the next start",
                    pool=pool.name,
                    reason=backoff.last_reason,
                )
        self._report_end(p, exit_code, lifetime)
        ctx.registry.pop(p.id)
        if remove:
            ctx.spawn(self.remove(p))
        ctx.kick()

    def _report_end(self, p: Pilot, exit_code: int | None, lifetime: float) -> None:
        ctx = self._ctx
        code = "?" if exit_code is None else str(exit_code)
        lived = {"lifetime_seconds": f"{lifetime:.3f}"}  # for monitoring; journal field too
        if p.stop_reason is not None and p.cpu_seconds is not None:
            lived["cpu_seconds"] = f"{p.cpu_seconds:.3f}"  # its work lost, at most
        if p.stop_reason is None:
            ctx.emit(
                EventKind.PILOT_EXITED,
                f"exited with code {code} after {lifetime:.1f}s",
                p,
                exit_code=exit_code,
                reason="exited",
                extra=lived,
            )
        elif p.killed:
            ctx.emit(
                EventKind.PILOT_KILLED,
                f"killed: still running after its stop grace ({p.stop_reason.value}: {p.stop_detail}), lived {lifetime:.1f}s",
                p,
                exit_code=exit_code,
                reason=p.stop_reason.value,
                extra=lived,
            )
        else:
            ctx.emit(
                EventKind.PILOT_STOPPED,
                f"stopped ({p.stop_reason.value}: {p.stop_detail}), exit code {code} after {lifetime:.1f}s",
                p,
                exit_code=exit_code,
                reason=p.stop_reason.value,
                extra=lived,
            )
