"""Docker's own container events, recorded in the background for the whole benchmark run.

Why Docker's events and Docker's timestamps (`timeNano`): the latency and throughput figures are
then taken on the engine's clock, the same way for planctond and for the raw docker-py baseline,
and nothing about how fast the benchmark's own process reads its stream leaks into them.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from planctond import constants as C


@dataclass(frozen=True)
class ContainerEvent:
    at: float  # engine clock, epoch seconds
    action: str  # create | start | die | destroy | ...
    cid: str
    instance: str  # org.plancton.instance of the container


class EventRecorder:
    def __init__(self, api: Any, label: str) -> None:
        """`api` is a docker.APIClient used only by this recorder (its stream blocks a socket)."""
        self._api = api
        self._label = label
        self._lock = threading.Lock()
        self._events: list[ContainerEvent] = []
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stream = self._api.events(
            decode=True, filters={"type": "container", "label": self._label}
        )
        self._thread = threading.Thread(target=self._pump, name="events", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def _pump(self) -> None:
        try:
            for ev in self._stream:
                actor = ev.get("Actor") or {}
                attrs = actor.get("Attributes") or {}
                item = ContainerEvent(
                    at=int(ev.get("timeNano", 0)) / 1e9 or float(ev.get("time", 0)),
                    action=str(ev.get("status") or ev.get("Action") or ""),
                    cid=str(ev.get("id") or actor.get("ID", "")),
                    instance=str(attrs.get(C.LABEL_INSTANCE, "")),
                )
                with self._lock:
                    self._events.append(item)
        except Exception:
            pass  # closed by close(), or the engine went away: the figures say what they saw

    def of(self, instance: str, *actions: str) -> list[ContainerEvent]:
        with self._lock:
            evs = [e for e in self._events if e.instance == instance]
        if actions:
            evs = [e for e in evs if e.action in actions]
        return sorted(evs, key=lambda e: e.at)

    def wait_count(self, instance: str, action: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.of(instance, action)) >= count:
                return True
            time.sleep(0.1)
        return False
