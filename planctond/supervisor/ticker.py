"""The tick: read the host, ask the policy, apply its decision.

A full tick (every `tick` seconds, or at once after Docker reconnects) reconciles the registry
with one list call and takes a fresh host reading. Between full ticks, anything that changes the
picture (an exit, a state change, a reload) "kicks" the loop: it decides again on the last host
reading, so an exited pilot is replaced within a second without a Docker request of its own.

The loop comes round at least every `HEARTBEAT` seconds whatever happens, and tells its heartbeat
hooks so: the systemd watchdog is fed by a live loop, not by a timer beside it. A full tick that
waits on a slow Docker (a dockerd restarting takes longer than WatchdogSec under load) keeps
beating, for `TICK_STALL_LIMIT` at most: a loop stuck longer than that is what the watchdog is for.

Writes to the context: `host`, `policy` and `verdicts` (from `decide`), `ticks`, `last_tick`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

from planctond import constants as C
from planctond.engine.cgroup_parent import parent_for
from planctond.engine.errors import EngineError
from planctond.engine.port import Engine
from planctond.engine.spec import spec_hash
from planctond.policy.decide import PolicyInput, decide
from planctond.policy.model import Decision, HostSnapshot, PilotView
from planctond.policy.state import PolicyState
from planctond.supervisor.api import StatusReport
from planctond.supervisor.context import Context
from planctond.supervisor.events import EventKind
from planctond.supervisor.pilot_ops import PilotOps
from planctond.supervisor.ports import HostProbe, Runner

log = logging.getLogger(__name__)

VariableSource = Callable[[], Mapping[str, float | bool]]
# Told of every decision: (the host reading, the pilots as the policy saw them, the policy's
# memory before and after, the decision). The owner yield figures are measured this way.
DecisionHook = Callable[
    [HostSnapshot, Sequence[PilotView], PolicyState, PolicyState, Decision], None
]


class Ticker:
    def __init__(
        self,
        ctx: Context,
        engine: Engine,
        runner: Runner,
        host: HostProbe,
        ops: PilotOps,
        on_engine_suspect: Callable[[Exception], None],
        status: Callable[[], StatusReport],
    ) -> None:
        self._ctx = ctx
        self._engine = engine
        self._runner = runner
        self._host = host
        self._ops = ops
        self._suspect = on_engine_suspect
        self._status = status
        self.tick_hooks: list[Callable[[StatusReport], None]] = []
        self.heartbeat_hooks: list[Callable[[], None]] = []
        self.variable_sources: list[VariableSource] = []
        self.decision_hooks: list[DecisionHook] = []
        self._note_keys: set[str] = set()  # the keys of the last decision's notes

    def _beat(self) -> None:
        for beat in self.heartbeat_hooks:
            beat()

    async def _full_tick_beating(self) -> None:
        """The full tick, with heartbeats while it waits (up to TICK_STALL_LIMIT)."""
        clock = self._ctx.clock
        self._beat()  # the loop may have waited a heartbeat before this tick came due
        task = asyncio.ensure_future(self.full_tick())
        give_up = clock.monotonic() + C.TICK_STALL_LIMIT
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=C.HEARTBEAT)
                if not task.done() and clock.monotonic() < give_up:
                    self._beat()
        finally:
            task.cancel()  # only when we are cancelled ourselves; a no-op once it is done
        task.result()

    async def run(self) -> None:
        """Root task."""
        ctx = self._ctx
        next_full = ctx.clock.monotonic()
        while not ctx.shutdown.is_set():
            self._beat()
            timeout = max(0.0, min(C.HEARTBEAT, next_full - ctx.clock.monotonic()))
            kicked = False
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ctx.kicked.wait(), timeout)
                    kicked = True
            ctx.kicked.clear()
            if ctx.shutdown.is_set():
                break
            if ctx.clock.monotonic() >= next_full or ctx.full_wanted:
                ctx.full_wanted = False
                await self._full_tick_beating()
                next_full = ctx.clock.monotonic() + self._next_full_in()
                self._after_tick()
            elif kicked and ctx.docker_ok and ctx.host is not None:
                self.decide_and_apply(ctx.host)

    def _next_full_in(self) -> float:
        """Seconds to the next full tick. A reading that covered no time yet (the sensor began
        a moment ago) started nothing: the next comes as soon as the host's CPU can be read,
        not a whole `tick` later, so a daemon starting or reconnecting to Docker is not idle
        for it."""
        host, tick = self._ctx.host, self._ctx.config.tick
        if host is not None and not host.cpu_measured:
            return min(tick, 2 * C.CPU_MIN_INTERVAL)
        return tick

    def _after_tick(self) -> None:
        report = self._status()
        for fn in self.tick_hooks:
            try:
                fn(report)
            except Exception:
                log.exception("tick hook failed")

    async def full_tick(self) -> None:
        ctx = self._ctx
        ctx.ticks += 1
        if not ctx.docker_ok:
            ctx.last_tick = ctx.clock.wall()
            return
        listed_at = ctx.clock.monotonic()
        try:
            records = await self._runner.call(self._engine.list_pilots)
        except EngineError as exc:
            self._suspect(exc)
            return
        seen = ctx.registry.reconcile(records, ctx.starts.names, listed_at)
        for p, phase in seen.observed:
            self._ops.observe(p, phase)
        for p in seen.adopted:
            ctx.emit(
                EventKind.PILOT_STARTED,
                "adopted (left running by an earlier daemon)",
                p,
                reason="adopted",
            )
        for p, code in seen.ended:
            self._ops.ended(p, code)
        for p in seen.vanished:
            self._ops.ended(p, None, remove=False, judged=False)
        host = self._sample()
        if host is not None:
            ctx.host = host
            self.decide_and_apply(host)
        ctx.last_tick = ctx.clock.wall()

    def _sample(self) -> HostSnapshot | None:
        extra: dict[str, float | bool] = {}
        for source in self.variable_sources:
            try:
                extra.update(source())
            except Exception:
                log.exception("variable source failed")
        return self._host.sample(extra)

    def decide_and_apply(self, host: HostSnapshot) -> None:
        ctx = self._ctx
        specs = {p.name: spec_hash(p) for p in ctx.config.pools}
        inp = PolicyInput(
            now=ctx.clock.monotonic(),
            config=ctx.config,
            host=host,
            pilots=[p.view(specs.get(p.pool)) for p in ctx.registry.live()],
            run_state=ctx.run_state,
            starting=dict(ctx.starts.per_pool),
        )
        before = ctx.policy
        decision, ctx.policy, ctx.verdicts = decide(inp, ctx.policy)
        for hook in self.decision_hooks:
            try:
                hook(host, inp.pilots, before, ctx.policy, decision)
            except Exception:
                log.exception("decision hook failed")
        for pool, verdict in ctx.verdicts.items():
            ctx.note(f"pool:{pool}", f"pool {pool}: {verdict.note}" if verdict.note else "")
        self._decision_notes(decision.notes)
        self._apply(decision)

    def _decision_notes(self, notes: Sequence[str]) -> None:
        """Each note once while it holds; one that no longer holds is forgotten, so that the
        journal says it again if it comes back (a pool's note is cleared by its verdict)."""
        keyed = {n.split(":")[0]: n for n in notes}
        for key, n in keyed.items():
            self._ctx.note(key, n)
        for key in self._note_keys - keyed.keys():
            self._ctx.note(key, "")
        self._note_keys = set(keyed)

    def _apply(self, decision: Decision) -> None:
        ctx, ops = self._ctx, self._ops
        for a in decision.remove:
            if (p := ctx.registry.get(a.pilot_id)) is not None:
                ctx.spawn(ops.remove(p))
        for a in decision.stop:
            if (p := ctx.registry.get(a.pilot_id)) is not None:
                ops.stop(p, a.reason, a.detail)
        for a in decision.freeze:
            if (p := ctx.registry.get(a.pilot_id)) is not None:
                ops.freeze(p, a)
        for a in decision.thaw:
            if (p := ctx.registry.get(a.pilot_id)) is not None:
                ops.thaw(p, a)
        driver = ctx.engine_info.cgroup_driver if ctx.engine_info else "cgroupfs"
        parent = parent_for(driver, ctx.config.docker.cgroup_parent)
        for s in decision.start:
            pool = ctx.config.pool(s.pool)
            if pool is not None:
                ops.start(pool, s.count, s.why, parent)
