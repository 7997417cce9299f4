"""An in-memory container engine for the supervisor's fast tests, with the failures only a fake
can produce on demand: pilots that exit at once or ignore SIGTERM, starts that fail, a pause that
hangs, Docker going away and coming back, events held back and delivered out of order.

It implements `planctond.engine.port.Engine` the way dockerd behaves (checked against the real
engine in tests/integration/test_docker_engine.py): pilots are found by label, a paused process
cannot exit, SIGTERM ends a well-behaved pilot with 143 and SIGKILL with 137, every change is an
event. Pilots "run" on the event loop's (virtual) time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from planctond import constants as C
from planctond.engine.errors import (
    Conflict,
    EngineError,
    EngineUnavailable,
    NoSuchContainer,
    NoSuchImage,
)
from planctond.engine.port import ContainerEvent, ContainerRecord, EngineInfo, EventStream
from planctond.engine.spec import PilotSpec
from planctond.policy.model import HostSnapshot
from tests.support.virtual_time import EPOCH

T = TypeVar("T")


@dataclass(frozen=True)
class Behaviour:
    """How a pilot's process behaves once started."""

    runs_for: float = 3600.0  # seconds of running (not paused) before it exits by itself
    exit_code: int = 0
    term_takes: float = 0.5  # seconds from SIGTERM to exit (143)
    ignores_term: bool = False


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    labels: dict[str, str]
    created: float  # epoch
    cpu_quota: float | None
    behaviour: Behaviour
    state: str = "running"
    exit_code: int | None = None
    left: float = 0.0  # running seconds left before it exits by itself
    resumed_at: float = 0.0  # loop time it last started running
    timer: asyncio.TimerHandle | None = None


class FakeEventStream:
    def __init__(self) -> None:
        self.buffer: deque[ContainerEvent] = deque()
        self.closed = False
        self.wake = asyncio.Event()

    def push(self, ev: ContainerEvent) -> None:
        self.buffer.append(ev)
        self.wake.set()

    def __iter__(self) -> Iterator[ContainerEvent]:
        raise AssertionError("the fake stream is followed on the loop by FakeRunner.follow")

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class FakeEngine:
    def __init__(self, instance: str, *, images: tuple[str, ...] = ("busybox:latest",)) -> None:
        self.instance = instance
        self.containers: dict[str, FakeContainer] = {}
        self.images: set[str] = set(images)
        self.pullable: set[str] = set()  # refs a pull succeeds for (added to `images`)
        self.up = True
        self.driver = "cgroupfs"
        self.behaviour: Callable[[PilotSpec], Behaviour] = lambda spec: Behaviour()
        # Scripting: an error raised by the next call of an operation (FIFO per operation), a
        # delay before a call takes effect, and held-back events.
        self.fail_next: dict[str, deque[EngineError]] = {}
        self.fail_always: dict[str, EngineError] = {}
        self.latency: dict[str, float] = {}
        self.hold_events = False
        self.held: list[ContainerEvent] = []
        self.log: list[tuple[str, tuple[Any, ...]]] = []
        self._streams: list[FakeEventStream] = []
        self._ids = itertools.count(1)
        self._calls = 0

    # --- scripting --------------------------------------------------------------------------------
    def fail(self, op: str, error: EngineError, times: int = 1) -> None:
        self.fail_next.setdefault(op, deque()).extend([error] * times)

    def go_down(self) -> None:
        """dockerd stops answering: calls fail, event streams end. Containers keep running
        (live-restore), as a daemon restart with `live-restore` leaves them."""
        self.up = False
        for s in self._streams:
            s.close()
        self._streams.clear()

    def come_back(self) -> None:
        self.up = True

    def release_events(self, order: Callable[[list[ContainerEvent]], list[ContainerEvent]]) -> None:
        held, self.held, self.hold_events = self.held, [], False
        for ev in order(held):
            self._send(ev)

    def inject(self, ev: ContainerEvent) -> None:
        self._send(ev)

    def run_container(self, name: str, labels: dict[str, str], behaviour: Behaviour) -> str:
        """A container made outside the supervisor (an earlier daemon's pilot, a foreign one)."""
        c = self._create(name, "busybox:latest", labels, None, behaviour)
        self._start(c)
        return c.id

    def exit(self, cid: str, code: int) -> None:
        """The pilot's process ends now with `code` (if it still runs)."""
        c = self.containers[cid]
        if c.state in ("running", "paused"):
            self._die(c, code)

    def ops(self, op: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.log if name == op]

    @property
    def calls(self) -> int:
        return self._calls

    # --- internals ----------------------------------------------------------------------------------
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _enter(self, op: str, *args: Any) -> None:
        self._calls += 1
        self.log.append((op, args))
        if not self.up:
            raise EngineUnavailable(f"{op}: cannot connect to the Docker daemon")
        if op in self.fail_always:
            raise self.fail_always[op]
        queue = self.fail_next.get(op)
        if queue:
            raise queue.popleft()

    def _send(self, ev: ContainerEvent) -> None:
        if self.hold_events:
            self.held.append(ev)
            return
        for s in self._streams:
            s.push(ev)

    def _event(self, action: str, c: FakeContainer, exit_code: int | None = None) -> None:
        attrs = {**c.labels, "name": c.name, "image": c.image}
        if exit_code is not None:
            attrs["exitCode"] = str(exit_code)
        self._send(ContainerEvent(action, c.id, attrs, exit_code))

    def _get(self, cid: str) -> FakeContainer:
        c = self.containers.get(cid)
        if c is None:
            raise NoSuchContainer(f"No such container: {cid[:12]}")
        return c

    def _create(
        self,
        name: str,
        image: str,
        labels: dict[str, str],
        quota: float | None,
        behaviour: Behaviour,
    ) -> FakeContainer:
        if any(c.name == name for c in self.containers.values()):
            raise Conflict(f"the container name {name} is already in use")
        cid = f"{next(self._ids):064x}"
        c = FakeContainer(cid, name, image, dict(labels), EPOCH + self._now(), quota, behaviour)
        c.state = "created"
        self.containers[cid] = c
        self._event("create", c)
        return c

    def _start(self, c: FakeContainer) -> None:
        c.state, c.left = "running", c.behaviour.runs_for
        self._event("start", c)
        self._resume(c)

    def _resume(self, c: FakeContainer) -> None:
        c.resumed_at = self._now()
        c.timer = asyncio.get_running_loop().call_later(c.left, self._die, c, c.behaviour.exit_code)

    def _suspend(self, c: FakeContainer) -> None:
        if c.timer is not None:
            c.timer.cancel()
            c.timer = None
        c.left = max(0.0, c.left - (self._now() - c.resumed_at))

    def _die(self, c: FakeContainer, code: int) -> None:
        if c.state not in ("running", "paused"):
            return
        self._suspend(c)
        c.state, c.exit_code = "exited", code
        self._event("die", c, code)

    # --- the Engine protocol ------------------------------------------------------------------------
    def info(self) -> EngineInfo:
        self._enter("info")
        return EngineInfo("20.10.fake", "1.41", self.driver, 1, "/var/lib/docker", 4)

    def list_pilots(self) -> list[ContainerRecord]:
        self._enter("list_pilots")
        return [
            ContainerRecord(c.id, c.name, c.state, c.created, dict(c.labels), c.image, c.exit_code)
            for c in self.containers.values()
            if c.labels.get(C.LABEL_MANAGED) == "1"
            and c.labels.get(C.LABEL_INSTANCE) == self.instance
        ]

    def create_and_start(self, spec: PilotSpec) -> str:
        self._enter("create_and_start", spec.name)
        if spec.image not in self.images:
            raise NoSuchImage(f"create pilot {spec.name}: No such image: {spec.image}")
        quota = spec.host.get("nano_cpus")
        c = self._create(
            spec.name,
            spec.image,
            spec.create["labels"],
            None if quota is None else quota / 1e9,
            self.behaviour(spec),
        )
        self._start(c)
        return c.id

    def signal(self, cid: str, sig: str) -> None:
        self._enter("signal", cid, sig)
        c = self._get(cid)
        if c.state not in ("running", "paused"):
            raise Conflict(f"container {cid[:12]} is not running")
        if sig == "SIGKILL":
            self._die(c, 137)
        elif sig == "SIGTERM" and not c.behaviour.ignores_term and c.state == "running":
            asyncio.get_running_loop().call_later(c.behaviour.term_takes, self._die, c, 143)

    def pause(self, cid: str) -> None:
        self._enter("pause", cid)
        c = self._get(cid)
        if c.state != "running":
            raise Conflict(f"container {cid[:12]} is not running")
        self._suspend(c)
        c.state = "paused"
        self._event("pause", c)

    def unpause(self, cid: str) -> None:
        self._enter("unpause", cid)
        c = self._get(cid)
        if c.state != "paused":
            raise Conflict(f"container {cid[:12]} is not paused")
        c.state = "running"
        self._event("unpause", c)
        self._resume(c)

    def remove(self, cid: str) -> None:
        self._enter("remove", cid)
        c = self.containers.pop(cid, None)
        if c is None:
            return
        if c.state in ("running", "paused"):
            self._die(c, 137)
        self._event("destroy", c)

    def update_resources(self, cid: str, limits: dict[str, Any]) -> None:
        self._enter("update_resources", cid, limits)
        self._get(cid).cpu_quota = limits["nano_cpus"] / 1e9

    def events(self, since: float | None = None) -> EventStream:
        self._enter("events")
        stream = FakeEventStream()
        self._streams.append(stream)
        return stream

    def image_present(self, ref: str) -> bool:
        self._enter("image_present", ref)
        return ref in self.images

    def pull(self, ref: str) -> None:
        self._enter("pull", ref)
        if ref not in self.pullable:
            raise EngineError(f"pull {ref}: registry unreachable")
        self.images.add(ref)

    def reset(self) -> None:
        pass


class FakeRunner:
    """Runs engine calls inline on the loop, after the engine's scripted latency for that call:
    no threads, so the virtual clock alone orders what happens."""

    def __init__(self, engine: FakeEngine) -> None:
        self._engine = engine

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        delay = self._engine.latency.get(getattr(fn, "__name__", ""), 0.0)
        await asyncio.sleep(delay)
        return fn(*args)

    async def follow(self, stream: EventStream) -> AsyncIterator[ContainerEvent]:
        assert isinstance(stream, FakeEventStream)
        while True:
            while stream.buffer:
                yield stream.buffer.popleft()
            if stream.closed:
                return
            stream.wake.clear()
            await stream.wake.wait()

    def close(self) -> None:
        pass


@dataclass
class FakeHost:
    """The host as the policy sees it, set by the test: no /proc, no cgroups."""

    ncpus: int = 4
    owner_cpu: float = 0.0
    # What the pilots' parent cgroup reads: nothing, unless the test says how they burn.
    pilots_load: Callable[[], float] = lambda: 0.0
    mem_total: int = 16 * 2**30
    mem_available: int = 12 * 2**30
    variables: dict[str, float | bool] = field(default_factory=dict)
    attached: list[tuple[EngineInfo, str, str | None]] = field(default_factory=list)
    attach_problem: str = ""
    pilot_seconds: dict[str, float] = field(default_factory=dict)
    # The pilots' parent counter: pilots_load integrated over the loop's time, read by read.
    pilots_total: float = 0.0
    _counted_at: float | None = None
    _last_sample: tuple[float, float] | None = None  # (time, counter) of the last sample
    # The first sample after each attach covers no time, as the real sensor's (cpu_measured
    # False, zeros): set by a test about the daemon's first moments.
    unmeasured_first: bool = False
    _fresh: bool = False
    sampled_at: list[float] = field(default_factory=list)  # the loop's time of every sample

    def _count(self) -> tuple[float, float]:
        now = asyncio.get_running_loop().time()
        if self._counted_at is not None:
            self.pilots_total += self.pilots_load() * max(0.0, now - self._counted_at)
        self._counted_at = now
        return now, self.pilots_total

    def attach(self, info: EngineInfo, parent: str, owner_cgroup: str | None = None) -> str:
        self.attached.append((info, parent, owner_cgroup))
        self._fresh = self.unmeasured_first
        return self.attach_problem

    def sample(self, extra: Mapping[str, float | bool]) -> HostSnapshot | None:
        if not self.attached:
            return None
        now, total = self._count()
        self.sampled_at.append(now)
        since, at_since = self._last_sample or (now, total)
        self._last_sample = (now, total)
        fresh, self._fresh = self._fresh, False
        return HostSnapshot(
            monotonic=now,
            wall=EPOCH + now,
            ncpus=self.ncpus,
            host_cpu=0.0 if fresh else self.owner_cpu + self.pilots_load(),
            pilots_cpu=0.0 if fresh else self.pilots_load(),
            mem_total=self.mem_total,
            mem_available=self.mem_available,
            variables={**self.variables, **dict(extra)},
            since=since,
            pilots_cpu_seconds_since=at_since,
            cpu_measured=not fresh,
        )

    def pilot_cpu_seconds(self, cid: str) -> float | None:
        return self.pilot_seconds.get(cid)

    def pilots_cpu_seconds(self) -> float | None:
        return self._count()[1] if self.attached else None
