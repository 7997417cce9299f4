"""An in-memory `Controller` for transport tests (D-Bus, planctonctl): the real supervisor is
tested against Docker elsewhere; here what matters is what crosses the bus."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from planctond.policy.model import RunState
from planctond.supervisor.api import (
    ControlError,
    PilotCounts,
    PilotInfo,
    PoolStatus,
    StatusReport,
)
from planctond.supervisor.events import Event, EventBus, EventKind


class FakeController:
    def __init__(self) -> None:
        self.events = EventBus()
        self.state = RunState.ACTIVE
        self.calls: list[str] = []  # state-changing requests, in order
        self.reads: Counter[str] = Counter()  # status / pilots / counts calls, to price a refresh
        self.reload_error: str | None = None
        self.crash: Exception | None = None  # raised by every method, to test the boundary
        self.hang: asyncio.Event | None = None  # state changes wait for it, to test shutdown
        self.report: StatusReport | None = None  # what status() says instead of its own report
        self.started = time.time() - 42
        self.pilot_list: list[PilotInfo] = [
            PilotInfo("3f2a" * 16, "plancton-default-3f2a", "default", "running", time.time() - 125, 0.93, "busybox:latest"),
            PilotInfo("77aa" * 16, "plancton-wq-77aa", "wq", "frozen", time.time() - 3700, 0.0, "wq:1"),
        ]  # fmt: skip

    def _maybe_crash(self) -> None:
        if self.crash is not None:
            raise self.crash

    def _set(self, state: RunState) -> None:
        if state is not self.state:
            self.state = state
            self.events.emit(
                Event(EventKind.STATE_CHANGED, f"state is now {state.value}", state=state.value)
            )

    async def start(self) -> None:
        self.calls.append("start")
        self._maybe_crash()
        self._set(RunState.ACTIVE)

    async def drain(self) -> None:
        self.calls.append("drain")
        self._maybe_crash()
        if self.hang is not None:
            await self.hang.wait()
        self._set(RunState.DRAINING)

    async def resume(self) -> None:
        self.calls.append("resume")
        self._maybe_crash()
        self._set(RunState.ACTIVE)

    async def stop(self) -> None:
        self.calls.append("stop")
        self._maybe_crash()
        self._set(RunState.STOPPED)

    async def reload(self) -> None:
        self.calls.append("reload")
        self._maybe_crash()
        if self.reload_error:
            raise ControlError(self.reload_error)

    def _phases(self) -> PilotCounts:
        by_phase = Counter(p.phase for p in self.pilot_list)
        return PilotCounts(by_phase["running"], by_phase["frozen"], by_phase["stopping"])

    def status(self) -> StatusReport:
        self.reads["status"] += 1
        self._maybe_crash()
        if self.report is not None:
            return self.report
        phases = self._phases()
        return StatusReport(
            state=self.state,
            docker_ok=True,
            docker_error="",
            pools=(
                PoolStatus("default", phases.running, 0, 2, None, ""),
                PoolStatus("wq", 0, phases.frozen, 1, time.time() + 60, "backing off"),
            ),
            pilots=len(self.pilot_list),
            capacity_cpus=0.5,
            owner_cpu=0.25,
            host_cpu=1.2,
            ncpus=2,
            started=self.started,
            version="0.1.0",
            config_path="/etc/plancton/config.yaml",
            last_error="",
            last_tick=time.time(),
        )

    def pilots(self) -> list[PilotInfo]:
        self.reads["pilots"] += 1
        self._maybe_crash()
        return list(self.pilot_list)

    def counts(self) -> PilotCounts:
        self.reads["counts"] += 1
        self._maybe_crash()
        return self._phases()
