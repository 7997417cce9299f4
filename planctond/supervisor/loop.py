"""The supervisor: one asyncio process that keeps the pilots in line with the policy.

Root tasks (kopf style): the tick loop, the Docker connection + event follower, and the config
watcher. Each handles the failures it expects (Docker away, a bad config) itself; an unexpected
exception in one is logged, the others are cancelled cleanly and `run()` raises, so systemd
restarts a daemon that is really broken instead of one limping on.

Every docker-py call runs in a dedicated thread pool. Stops never hold a thread for the grace
period: SIGTERM is sent, and a timer sends SIGKILL if the pilot is still there `stop_grace` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from planctond import __version__
from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.loader import load_config
from planctond.config.model import Config, PoolConfig
from planctond.engine.cgroup_parent import CgroupSetupError, ensure_idle_parent
from planctond.engine.docker_engine import (
    DockerEngine,
    EngineError,
    EngineInfo,
    EngineUnavailable,
    EventStream,
)
from planctond.engine.images import ImageKeeper
from planctond.engine.spec import build_spec, resource_limits, spec_hash
from planctond.policy import backoff as backoff_mod
from planctond.policy.decide import PolicyInput, PoolVerdict, decide, spare_cpus
from planctond.policy.model import Decision, HostSnapshot, PilotAction, PilotPhase, Reason, RunState
from planctond.policy.state import PolicyState
from planctond.sensors.cgroups import CgroupError, CgroupLayout, PilotCgroups
from planctond.sensors.host import HostSensor
from planctond.supervisor.api import ControlError, PilotInfo, PoolStatus, StatusReport
from planctond.supervisor.events import Event, EventBus, EventKind
from planctond.supervisor.registry import Pilot, Registry
from planctond.supervisor.state_store import StateStore

log = logging.getLogger(__name__)
T = TypeVar("T")

_NUMBERS = re.compile(r"\d+(\.\d+)?")
HEARTBEAT = 1.0  # the loop wakes at least this often, so watchdog pings reflect a live loop
DOCKER_TIMEOUT = 20.0
BACKOFF_MAX = 30.0


def _exit_code(attrs: Mapping[str, str]) -> int | None:
    try:
        return int(attrs.get("exitCode", ""))
    except ValueError:
        return None


def cgroup_parent_for(cfg: Config, driver: str) -> str:
    if cfg.docker.cgroup_parent:
        return cfg.docker.cgroup_parent
    return C.CGROUP_PARENT_SYSTEMD if driver == "systemd" else C.CGROUP_PARENT_CGROUPFS


class Supervisor:
    """Implements `planctond.supervisor.api.Controller`."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None,
        docker_url: str | None = None,
        loader: Callable[[str | None], Config] | None = None,
        cgroup_root: str = "/sys/fs/cgroup",
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.events = EventBus()
        self._loader = loader or (lambda p: load_config(p))
        self._store = StateStore(config.state_dir)
        self.instance = self._store.instance_id()
        persisted = self._store.load()
        self.run_state = persisted.run_state
        self.engine = DockerEngine(
            docker_url or config.docker.url, self.instance, timeout=DOCKER_TIMEOUT
        )
        self.images = ImageKeeper(self.engine)
        self.registry = Registry()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="docker")
        self._cgroup_root = cgroup_root
        self._policy = PolicyState()
        self._verdicts: dict[str, PoolVerdict] = {}
        self._starting: dict[str, int] = {}
        self._starting_names: set[str] = set()
        self._early_exits: dict[str, int | None] = {}  # died before create_and_start returned
        self._ops: set[asyncio.Task[Any]] = set()
        self._pulling: set[str] = set()
        self._kick = asyncio.Event()
        self._full_wanted = False  # (re)connected: reconcile with a list call at once
        self._stream: EventStream | None = None
        self._shutdown = asyncio.Event()
        self._stop_pilots_on_exit = config.docker.stop_pilots_on_exit
        self._docker_ok = False
        self._docker_error = "not connected yet"
        self._engine_info: EngineInfo | None = None
        self._sensor: HostSensor | None = None
        self._cgroups: PilotCgroups | None = None
        self._host: HostSnapshot | None = None
        self._tick_hooks: list[Callable[[StatusReport], None]] = []
        self._heartbeat_hooks: list[Callable[[], None]] = []
        self._variable_sources: list[Callable[[], Mapping[str, float | bool]]] = []
        self._notes: dict[str, str] = {}
        self._config_digest = self._digest()
        self.started = time.time()
        self.last_tick = 0.0
        self.last_error = ""
        self.ticks = 0
        for w in config.warnings:
            log.warning("%s", w)

    # --- hooks for the control layer ------------------------------------------------------------
    def on_tick(self, fn: Callable[[StatusReport], None]) -> None:
        """Called after every completed full tick (systemd STATUS=, metrics)."""
        self._tick_hooks.append(fn)

    def on_heartbeat(self, fn: Callable[[], None]) -> None:
        """Called each time the loop comes round (at least every second): the watchdog's ping."""
        self._heartbeat_hooks.append(fn)

    def add_variable_source(self, fn: Callable[[], Mapping[str, float | bool]]) -> None:
        """Extra host variables for expressions (logind's owner_idle)."""
        self._variable_sources.append(fn)

    def request_shutdown(self, stop_pilots: bool | None = None) -> None:
        """`stop_pilots` None follows `docker.stop_pilots_on_exit` of the config in force."""
        if stop_pilots is not None:
            self._stop_pilots_on_exit = stop_pilots
        self._shutdown.set()
        self._kick.set()

    # --- Controller -------------------------------------------------------------------------
    async def start(self) -> None:
        self._policy = replace(self._policy, gave_way_at=None, backoff={})
        self._set_state(RunState.ACTIVE, "start")

    async def drain(self) -> None:
        self._set_state(RunState.DRAINING, "drain")

    async def resume(self) -> None:
        self._set_state(RunState.ACTIVE, "resume")

    async def stop(self) -> None:
        self._set_state(RunState.STOPPED, "stop")

    async def reload(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            new = await loop.run_in_executor(self._pool, self._loader, self.config_path)
        except ConfigError as exc:
            self.last_error = str(exc)
            self._emit(
                EventKind.CONFIG_REJECTED,
                f"config rejected, keeping the last good one: {exc}",
                reason=str(exc),
            )
            raise ControlError(str(exc)) from exc
        self._config_digest = self._digest()
        await self._apply_config(new)

    def status(self) -> StatusReport:
        host = self._host
        pools = []
        for pool in self.config.pools:
            members = [p for p in self.registry if p.pool == pool.name and not p.ended]
            verdict = self._verdicts.get(pool.name)
            bo = self._policy.backoff.get(pool.name)
            until = None
            if bo is not None and bo.active(time.monotonic()):
                until = time.time() + (bo.until - time.monotonic())
            pools.append(
                PoolStatus(
                    name=pool.name,
                    running=sum(
                        1 for p in members if p.phase in (PilotPhase.RUNNING, PilotPhase.STOPPING)
                    ),
                    frozen=sum(1 for p in members if p.phase is PilotPhase.FROZEN),
                    allowed=verdict.allowed if verdict else 0,
                    backoff_until=until,
                    note=verdict.note if verdict else "",
                )
            )
        return StatusReport(
            state=self.run_state,
            docker_ok=self._docker_ok,
            docker_error="" if self._docker_ok else self._docker_error,
            pools=tuple(pools),
            pilots=sum(1 for p in self.registry if not p.ended),
            capacity_cpus=spare_cpus(self.config, host) if host else 0.0,
            owner_cpu=host.owner_cpu if host else 0.0,
            host_cpu=host.host_cpu if host else 0.0,
            ncpus=host.ncpus if host else (os.cpu_count() or 1),
            started=self.started,
            version=__version__,
            config_path=self.config_path or "(built-in defaults)",
            last_error=self.last_error,
            last_tick=self.last_tick,
            extra={"instance": self.instance, "docker_calls": str(self.engine.calls)},
        )

    def pilots(self) -> list[PilotInfo]:
        out = []
        now = time.time()
        for p in self.registry:
            if p.ended:
                continue
            cpu = 0.0
            if self._cgroups is not None:
                used = self._cgroups.container_cpu_seconds(p.id)
                if used is not None and now > p.created:
                    cpu = used / max(1.0, now - p.created)
            out.append(PilotInfo(p.id, p.name, p.pool, p.phase.value, p.created, cpu, p.image))
        return sorted(out, key=lambda i: i.started)

    # --- state ------------------------------------------------------------------------------
    def _set_state(self, state: RunState, by: str) -> None:
        self._store.save(state, by)
        if state is not self.run_state:
            old, self.run_state = self.run_state, state
            self._emit(
                EventKind.STATE_CHANGED,
                f"state {old.value} -> {state.value} ({by})",
                state=state.value,
            )
        self._kick.set()

    def _emit(self, kind: EventKind, message: str, pilot: Pilot | None = None, **kw: Any) -> None:
        if pilot is not None:
            kw.setdefault("pilot", pilot.name)
            kw.setdefault("pilot_id", pilot.id)
            kw.setdefault("pool", pilot.pool)
        self.events.emit(Event(kind=kind, message=message, **kw))

    def _note(self, key: str, text: str) -> None:
        """Log a condition once when it appears or changes kind, not every tick: the figures in
        it ("0.01 CPUs left") move every tick and do not make it news."""
        shape = _NUMBERS.sub("#", text)
        if self._notes.get(key) != shape:
            self._notes[key] = shape
            if text:
                log.info("%s", text)

    # --- running ------------------------------------------------------------------------------
    async def run(self) -> None:
        docker_task = asyncio.create_task(self._docker_loop(), name="docker")
        tasks = [
            asyncio.create_task(self._tick_loop(), name="tick-loop"),
            asyncio.create_task(self._config_loop(), name="config-watch"),
        ]
        shutdown = asyncio.create_task(self._shutdown.wait(), name="shutdown")
        try:
            done, _ = await asyncio.wait(
                [*tasks, docker_task, shutdown], return_when=asyncio.FIRST_COMPLETED
            )
            for t in done:
                if t is not shutdown and not t.cancelled() and t.exception() is not None:
                    log.error("task %s failed; stopping", t.get_name(), exc_info=t.exception())
                    raise t.exception()  # type: ignore[misc]
        finally:
            self._shutdown.set()
            for t in [*tasks, shutdown]:
                t.cancel()
            await asyncio.gather(*tasks, shutdown, return_exceptions=True)
            # The event follower keeps running while pilots stop: their exits arrive as events.
            try:
                await self._finish()
            finally:
                docker_task.cancel()
                await asyncio.gather(docker_task, return_exceptions=True)
                self.engine.reset()
                self._pool.shutdown(wait=False, cancel_futures=True)

    async def _finish(self) -> None:
        if self._ops:
            await asyncio.gather(*list(self._ops), return_exceptions=True)
        if self._stop_pilots_on_exit and self._docker_ok:
            await self._stop_all_now()
        elif not self._stop_pilots_on_exit:
            log.info("leaving %d pilots running for the next daemon to adopt", len(self.registry))

    async def _stop_all_now(self) -> None:
        pilots = [p for p in self.registry if not p.ended]
        if not pilots:
            return
        log.info("stopping %d pilots before exit", len(pilots))
        await asyncio.gather(
            *(
                self._stop_pilot(p, Reason.SHUTDOWN, "the daemon is shutting down", wait=True)
                for p in pilots
            ),
            return_exceptions=True,
        )

    async def _docker(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._ops.add(task)
        task.add_done_callback(self._op_done)

    def _op_done(self, task: asyncio.Task[Any]) -> None:
        self._ops.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pilot operation failed", exc_info=task.exception())

    # --- tick loop ----------------------------------------------------------------------------
    async def _tick_loop(self) -> None:
        next_full = time.monotonic()
        while not self._shutdown.is_set():
            for hook in self._heartbeat_hooks:
                hook()
            now = time.monotonic()
            timeout = max(0.0, min(HEARTBEAT, next_full - now))
            kicked = False
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), timeout)
                    kicked = True
            self._kick.clear()
            if self._shutdown.is_set():
                break
            if time.monotonic() >= next_full or self._full_wanted:
                self._full_wanted = False
                await self._full_tick()
                next_full = time.monotonic() + self.config.tick
                report = self.status()
                for fn in self._tick_hooks:
                    try:
                        fn(report)
                    except Exception:
                        log.exception("tick hook failed")
            elif kicked and self._docker_ok and self._host is not None:
                self._decide_and_apply(self._host)

    async def _full_tick(self) -> None:
        self.ticks += 1
        if not self._docker_ok:
            self.last_tick = time.time()
            return
        listed_at = time.monotonic()
        try:
            records = await self._docker(self.engine.list_pilots)
        except EngineError as exc:
            self._docker_suspect(exc)
            return
        adopted, ended, vanished = self.registry.reconcile(records, self._starting_names, listed_at)
        for p in adopted:
            self._emit(
                EventKind.PILOT_STARTED,
                "adopted (left running by an earlier daemon)",
                p,
                reason="adopted",
            )
        for p, code in ended:
            self._pilot_ended(p, code)
        for p in vanished:
            self._pilot_ended(p, None, remove=False, judged=False)
        host = self._sample()
        if host is not None:
            self._host = host
            self._decide_and_apply(host)
        self.last_tick = time.time()

    def _sample(self) -> HostSnapshot | None:
        if self._sensor is None:
            return None
        extra: dict[str, float | bool] = {}
        for src in self._variable_sources:
            try:
                extra.update(src())
            except Exception:
                log.exception("variable source failed")
        return self._sensor.sample(extra)

    def _decide_and_apply(self, host: HostSnapshot) -> None:
        specs = {p.name: spec_hash(p) for p in self.config.pools}
        views = [p.view(specs.get(p.pool)) for p in self.registry if not p.ended]
        inp = PolicyInput(
            now=time.monotonic(),
            config=self.config,
            host=host,
            pilots=views,
            run_state=self.run_state,
            starting=dict(self._starting),
        )
        decision, self._policy, self._verdicts = decide(inp, self._policy)
        for pool, verdict in self._verdicts.items():
            self._note(f"pool:{pool}", f"pool {pool}: {verdict.note}" if verdict.note else "")
        for n in decision.notes:
            self._note(n.split(":")[0], n)
        self._apply(decision)

    def _apply(self, decision: Decision) -> None:
        for a in decision.remove:
            p = self.registry.get(a.pilot_id)
            if p is not None:
                self._spawn(self._remove(p))
        for a in decision.stop:
            p = self.registry.get(a.pilot_id)
            if p is not None and p.phase is not PilotPhase.STOPPING:
                self._spawn(self._stop_pilot(p, a.reason, a.detail))
        # The decided phase holds from now on, while Docker's pause/unpause is under way: a
        # decision in between (an exit elsewhere) must see the pilot as the policy left it, or
        # it would freeze it again and restart its `freeze` clock.
        for a in decision.freeze:
            p = self.registry.get(a.pilot_id)
            if p is not None and p.phase is PilotPhase.RUNNING:
                p.phase, p.changing = PilotPhase.FROZEN, True
                self._spawn(self._freeze(p, a))
        for a in decision.thaw:
            p = self.registry.get(a.pilot_id)
            if p is not None and p.phase is PilotPhase.FROZEN:
                p.phase, p.changing = PilotPhase.RUNNING, True
                self._spawn(self._thaw(p, a))
        for s in decision.start:
            pool = self.config.pool(s.pool)
            if pool is None:
                continue
            if not self._image_ready(pool):
                # Nothing starts: give back the per_tick allowance the decision counted.
                self._policy = self._policy.uncount_starts(pool.name, s.count)
                continue
            for _ in range(s.count):
                self._starting[pool.name] = self._starting.get(pool.name, 0) + 1
                self._spawn(self._start_pilot(pool, s.why))

    # --- pilot operations ------------------------------------------------------------------------
    def _image_ready(self, pool: PoolConfig) -> bool:
        now = time.monotonic()
        ref = pool.image
        if (
            self.images.pull_due(ref, pool.pull, pool.pull_refresh, now)
            and ref not in self._pulling
        ):
            self._pulling.add(ref)
            self._spawn(self._pull(ref))
        usable = self.images.usable(ref)
        if usable is None and ref not in self._pulling:
            self._pulling.add(ref)
            self._spawn(self._check_image(ref, pool))
            return False
        if not usable:
            self._note(f"image:{ref}", f"pool {pool.name}: image {ref} is not available yet")
        return bool(usable)

    async def _check_image(self, ref: str, pool: PoolConfig) -> None:
        try:
            present = await self._docker(self.images.check_present, ref)
            if not present and pool.pull.value == "never":
                self.last_error = f"image {ref} is not present and pool {pool.name} has pull: never"
                self._emit(EventKind.IMAGE, self.last_error, pool=pool.name)
            elif not present:
                await self._pull(ref, keep=True)
        except EngineError as exc:
            log.warning("%s", exc)
        finally:
            self._pulling.discard(ref)
        self._kick.set()

    async def _pull(self, ref: str, keep: bool = False) -> None:
        try:
            msg = await self._docker(self.images.pull, ref, time.monotonic())
            if msg:
                self._emit(EventKind.IMAGE, msg)
        except EngineError as exc:
            log.warning("%s", exc)
        finally:
            if not keep:
                self._pulling.discard(ref)
        self._kick.set()

    async def _start_pilot(self, pool: PoolConfig, why: str) -> None:
        cgroup_parent = cgroup_parent_for(
            self.config, self._engine_info.cgroup_driver if self._engine_info else "cgroupfs"
        )
        spec = build_spec(pool, instance=self.instance, cgroup_parent=cgroup_parent)
        self._starting_names.add(spec.name)
        try:
            cid = await self._docker(self.engine.create_and_start, spec)
        except EngineError as exc:
            if "No such image" in str(exc):
                self.images.forget(pool.image)
            now = time.monotonic()
            current = self._policy.backoff.get(pool.name, backoff_mod.Backoff())
            if current.active(now):
                # The other starts of the same burst failed for the same reason: one failure,
                # not one doubling of the wait per pilot asked for.
                return
            bo = backoff_mod.after_exit(
                current,
                pool,
                now,
                exit_code=None,
                lifetime=0.0,
                stopped_by_us=False,
                why=f"cannot start a pilot: {exc}",
            )
            self._policy = self._policy.with_backoff(pool.name, bo)
            self.last_error = str(exc)
            self._emit(
                EventKind.POOL_BACKOFF,
                f"pool {pool.name}: {bo.last_reason}; next try in {bo.until - now:.0f}s",
                pool=pool.name,
                reason=str(exc),
            )
            if isinstance(exc, EngineUnavailable):
                self._docker_suspect(exc)
            return
        finally:
            self._starting[pool.name] = max(0, self._starting.get(pool.name, 1) - 1)
            self._starting_names.discard(spec.name)
        known = self.registry.get(cid) is not None
        pilot = self.registry.from_labels(cid, spec.name, spec.create["labels"], pool.image)
        pilot.created = min(pilot.created, time.time())
        if not known:
            self._emit(EventKind.PILOT_STARTED, f"started: {why}", pilot, reason="spawned")
        if cid in self._early_exits:
            self._pilot_ended(pilot, self._early_exits.pop(cid))

    async def _stop_pilot(self, p: Pilot, reason: Reason, detail: str, wait: bool = False) -> None:
        pool = self.config.pool(p.pool)
        grace = pool.stop_grace if pool else C.DEFAULT_STOP_GRACE
        was_paused = p.phase is PilotPhase.FROZEN and not p.starved
        p.phase, p.stop_reason, p.stop_detail = PilotPhase.STOPPING, reason, detail
        p.term_sent = time.monotonic()
        log.info("stopping pilot %s (%s): %s", p.name, reason.value, detail)
        try:
            if was_paused:
                # A frozen process cannot act on SIGTERM: thaw it so it can finish cleanly.
                await self._docker(self.engine.unpause, p.id)
            await self._docker(self.engine.signal, p.id, "SIGTERM")
        except EngineError as exc:
            log.warning("%s", exc)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not p.ended:
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        if not p.ended:
            p.killed = True
            try:
                await self._docker(self.engine.signal, p.id, "SIGKILL")
            except EngineError as exc:
                log.debug("%s", exc)
            if wait:
                for _ in range(50):
                    if p.ended:
                        break
                    await asyncio.sleep(0.1)
                if not p.ended:
                    await self._remove(p)
                    self._pilot_ended(p, None, remove=False)

    async def _freeze(self, p: Pilot, a: PilotAction) -> None:
        detail = a.detail
        try:
            await self._docker(self.engine.pause, p.id)
        except EngineUnavailable as exc:
            log.warning("%s", exc)
            if p.phase is PilotPhase.FROZEN:
                p.phase = PilotPhase.RUNNING  # not frozen after all; the next tick decides again
            return
        except EngineError as exc:
            # Under the idle parent a busy owner starves the pilot so completely that the cgroup
            # freezer cannot catch it (runc gives up). It gets no CPU either way: count it as
            # frozen, so the ladder goes on to a graceful stop if the owner stays.
            p.starved = True
            detail += f"; not paused ({exc}), starved by the idle cgroup instead"
        finally:
            p.changing = False
        if p.phase is PilotPhase.FROZEN and not p.ended:  # not stopped meanwhile
            self._emit(EventKind.PILOT_FROZEN, f"frozen: {detail}", p, reason=a.reason.value)

    async def _thaw(self, p: Pilot, a: PilotAction) -> None:
        try:
            if not p.starved:
                await self._docker(self.engine.unpause, p.id)
        except EngineError as exc:
            log.warning("%s", exc)
            if p.phase is PilotPhase.RUNNING:
                p.phase = PilotPhase.FROZEN  # still paused; the next tick decides again
            return
        finally:
            p.changing = False
        p.starved = False
        if p.phase is PilotPhase.RUNNING and not p.ended:
            self._emit(EventKind.PILOT_THAWED, f"thawed: {a.detail}", p, reason=a.reason.value)

    async def _remove(self, p: Pilot) -> None:
        try:
            await self._docker(self.engine.remove, p.id)
        except EngineError as exc:
            log.warning("%s", exc)

    def _pilot_ended(
        self, p: Pilot, exit_code: int | None, remove: bool = True, judged: bool = True
    ) -> None:
        """Report an exit once, feed the pool's back-off, remove the container, replace it now."""
        if p.ended:
            return
        p.ended = True
        lifetime = max(0.0, time.time() - p.created)
        pool = self.config.pool(p.pool)
        stopped_by_us = p.stop_reason is not None
        # A pilot removed behind our back (`judged=False`) says nothing about the pool's health.
        if pool is not None and judged:
            current = self._policy.backoff.get(pool.name, backoff_mod.Backoff())
            bo = backoff_mod.after_exit(
                current,
                pool,
                time.monotonic(),
                exit_code=exit_code,
                lifetime=lifetime,
                stopped_by_us=stopped_by_us,
            )
            self._policy = self._policy.with_backoff(pool.name, bo)
            if bo.failures and bo.failures != current.failures:
                self._emit(
                    EventKind.POOL_BACKOFF,
                    f"pool {pool.name}: {bo.last_reason}; waiting {bo.until - time.monotonic():.0f}s before the next start",
                    pool=pool.name,
                    reason=bo.last_reason,
                )
        code = "?" if exit_code is None else str(exit_code)
        if p.stop_reason is None:
            self._emit(
                EventKind.PILOT_EXITED,
                f"exited with code {code} after {lifetime:.1f}s",
                p,
                exit_code=exit_code,
                reason="exited",
            )
        elif p.killed:
            self._emit(
                EventKind.PILOT_KILLED,
                f"killed: still running after its stop grace ({p.stop_reason.value}: {p.stop_detail}), lived {lifetime:.1f}s",
                p,
                exit_code=exit_code,
                reason=p.stop_reason.value,
            )
        else:
            self._emit(
                EventKind.PILOT_STOPPED,
                f"stopped ({p.stop_reason.value}: {p.stop_detail}), exit code {code} after {lifetime:.1f}s",
                p,
                exit_code=exit_code,
                reason=p.stop_reason.value,
            )
        self.registry.pop(p.id)
        if remove:
            self._spawn(self._remove(p))
        self._kick.set()

    # --- Docker connection and events ----------------------------------------------------------
    def _docker_suspect(self, exc: Exception) -> None:
        """A call found Docker unreachable or too slow. Only the connection loop decides that
        Docker is lost (and back): cutting the event stream hands the question to it, which
        re-checks with `info` and reconnects, so a passing timeout cannot leave the daemon
        believing forever that Docker is gone."""
        log.warning("Docker call failed: %s; reconnecting", exc)
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def _docker_failed(self, exc: Exception) -> None:
        if self._docker_ok:
            self._docker_ok = False
            self._docker_error = str(exc)
            self.last_error = str(exc)
            self._emit(
                EventKind.DOCKER_LOST,
                f"lost Docker: {exc}; waiting for it to come back",
                reason=str(exc),
            )

    async def _docker_loop(self) -> None:
        delay = 1.0
        told = False
        while not self._shutdown.is_set():
            try:
                info = await self._docker(self.engine.info)
                self._on_docker_connected(info)
                stream = await self._docker(self.engine.events, time.time())
                self._stream = stream
            except EngineError as exc:
                self._docker_error = str(exc)
                if self._docker_ok:
                    self._docker_failed(exc)
                elif not told:
                    self._emit(EventKind.DOCKER_LOST, f"waiting for Docker: {exc}", reason=str(exc))
                told = True
                await self._sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            if told or not self._docker_ok:
                if told:
                    self._emit(EventKind.DOCKER_BACK, f"Docker is back ({info.server_version})")
                self._docker_ok, told, delay = True, False, 1.0
                self._kick.set()
            try:
                await self._follow(stream)
            finally:
                self._stream = None
                with contextlib.suppress(Exception):
                    stream.close()
            if not self._shutdown.is_set():
                self._docker_failed(EngineUnavailable("the Docker event stream ended"))
                told = True
                await self._sleep(min(delay, 1.0))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shutdown.wait(), seconds)

    def _on_docker_connected(self, info: EngineInfo) -> None:
        if self._engine_info is None or self._engine_info.cgroup_driver != info.cgroup_driver:
            parent = cgroup_parent_for(self.config, info.cgroup_driver)
            try:
                layout = CgroupLayout.detect(self._cgroup_root)
                self._cgroups = PilotCgroups(layout, parent, info.cgroup_driver)
                self._setup_idle_parent(layout, parent, info.cgroup_driver)
            except CgroupError as exc:  # no cgroup fs (odd container): pilots' CPU unknown
                log.warning(
                    "cannot read cgroups under %s: %s; pilots' CPU counts as the owner's",
                    self._cgroup_root,
                    exc,
                )
                self._cgroups = None
            self._sensor = HostSensor(self._cgroups, info.docker_root)
            log.info(
                "Docker %s (API %s), cgroup v%d with the %s driver; pilots go under %s",
                info.server_version,
                info.api_version,
                info.cgroup_version,
                info.cgroup_driver,
                parent,
            )
        self._engine_info = info

    def _setup_idle_parent(self, layout: CgroupLayout, parent: str, driver: str) -> None:
        """Root (by hand, tests) sets the idle parent itself; as `plancton` under systemd the
        unit's `ExecStartPre=+planctond --setup-cgroup` has done it and we only check."""
        try:
            log.info("%s", ensure_idle_parent(layout, parent, driver).describe())
        except CgroupSetupError as exc:
            self.last_error = str(exc)
            log.warning(
                "pilots are not in an idle cgroup, the owner is protected by the policy only: %s",
                exc,
            )

    async def _follow(self, stream: Any) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def pump() -> None:
            try:
                for ev in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, ev)
            except Exception as exc:
                log.debug("event stream ended: %s", exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        fut = loop.run_in_executor(self._pool, pump)
        # Events may have raced the connect: a full tick reconciles with one list call.
        self._full_wanted = True
        self._kick.set()
        try:
            while True:
                ev = await queue.get()
                if ev is None:
                    break
                try:
                    self._on_event(ev)
                except Exception:
                    log.exception("cannot handle Docker event %r", ev)
        finally:
            with contextlib.suppress(Exception):
                stream.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fut, 5)

    def _on_event(self, ev: dict[str, Any]) -> None:
        action = str(ev.get("status") or ev.get("Action") or "")
        cid = str(ev.get("id") or ev.get("Actor", {}).get("ID", ""))
        attrs: dict[str, str] = dict(ev.get("Actor", {}).get("Attributes", {}) or {})
        if not cid:
            return
        p = self.registry.get(cid)
        if action == "start" and p is None:
            name = attrs.get("name", cid[:12])
            if name in self._starting_names:
                return
            p = self.registry.from_labels(cid, name, attrs, attrs.get("image", ""))
        if p is None:
            if action == "die" and attrs.get("name") in self._starting_names:
                self._early_exits[cid] = _exit_code(attrs)
            return
        if action == "die":
            self._pilot_ended(p, _exit_code(attrs))
        elif action == "pause" and p.phase is PilotPhase.RUNNING:
            p.phase = PilotPhase.FROZEN
        elif action == "unpause" and p.phase is PilotPhase.FROZEN:
            p.phase = PilotPhase.RUNNING
        elif action == "destroy":
            self._pilot_ended(p, None, remove=False, judged=False)

    # --- configuration ------------------------------------------------------------------------
    def _digest(self) -> str:
        if not self.config_path:
            return ""
        try:
            with open(self.config_path, "rb") as fh:
                return hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            return "absent"

    async def _config_loop(self) -> None:
        while not self._shutdown.is_set():
            await self._sleep(self.config.config_check)
            if self._shutdown.is_set():
                return
            digest = await asyncio.get_running_loop().run_in_executor(self._pool, self._digest)
            if digest != self._config_digest:
                self._config_digest = digest
                log.info("%s changed; reloading", self.config_path)
                with contextlib.suppress(ControlError):
                    await self.reload()

    async def _apply_config(self, new: Config) -> None:
        old, self.config = self.config, new
        if not self._shutdown.is_set():
            self._stop_pilots_on_exit = new.docker.stop_pilots_on_exit
        for w in new.warnings:
            log.warning("%s", w)
        changes: list[str] = []
        for pool in new.pools:
            before = old.pool(pool.name)
            if before is None:
                changes.append(f"pool {pool.name} added")
                continue
            fields = sorted(
                k for k, v in pool.spec_fields().items() if before.spec_fields()[k] != v
            )
            if fields:
                changes.append(
                    f"pool {pool.name}: {', '.join(fields)} changed; running pilots finish their work, new pilots use the new spec"
                )
            if resource_limits(pool) != resource_limits(before):
                changes.append(
                    f"pool {pool.name}: cpus/memory/swap changed; applied to running pilots in place"
                )
                await self._update_resources(pool)
        for pool in old.pools:
            if new.pool(pool.name) is None:
                changes.append(f"pool {pool.name} removed; its pilots are stopped")
        for attr in ("state_dir",):
            if getattr(old, attr) != getattr(new, attr):
                changes.append(f"{attr} changed; takes effect at the next restart")
        if old.docker.url != new.docker.url or old.docker.cgroup_parent != new.docker.cgroup_parent:
            changes.append("docker.url/cgroup_parent changed; takes effect at the next restart")
        summary = "; ".join(changes) if changes else "no change to pools"
        self.last_error = ""
        self._emit(
            EventKind.CONFIG_LOADED, f"config loaded from {new.source or '(defaults)'}: {summary}"
        )
        self._kick.set()

    async def _update_resources(self, pool: PoolConfig) -> None:
        limits = resource_limits(pool)
        for p in self.registry:
            if p.pool == pool.name and not p.ended:
                try:
                    await self._docker(self.engine.update_resources, p.id, limits)
                    p.cpus = pool.cpus
                except EngineError as exc:
                    log.warning("%s", exc)
