"""The supervisor's picture of its pilots, fed by one list call per tick and Docker's events.

Docker stays the source of truth: the registry is rebuilt from each list, and events only make it
fresher between ticks. It never asks Docker about a single pilot (no inspect per pilot).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from planctond import constants as C
from planctond.engine.docker_engine import ContainerRecord
from planctond.policy.model import PilotPhase, PilotView, Reason


@dataclass
class Pilot:
    id: str
    name: str
    pool: str
    created: float  # epoch seconds
    cpus: float
    image: str
    spec: str
    phase: PilotPhase = PilotPhase.RUNNING
    stop_reason: Reason | None = None
    stop_detail: str = ""
    term_sent: float | None = None  # monotonic time SIGTERM was sent
    killed: bool = False  # SIGKILL was needed
    # Frozen in effect but not paused: the freezer could not catch a pilot the idle cgroup
    # starves (runc gives up waiting), and a starved pilot takes no CPU from the owner anyway.
    starved: bool = False
    changing: bool = False  # a pause/unpause is under way: the decided phase stands
    ended: bool = False  # its exit has been reported
    known_since: float = field(default_factory=time.monotonic)  # when the registry learnt of it

    def view(self, current_spec: str | None) -> PilotView:
        return PilotView(
            id=self.id,
            name=self.name,
            pool=self.pool,
            started=self.created,
            cpus=self.cpus,
            phase=self.phase,
            outdated=current_spec is not None and current_spec != self.spec,
        )


def _phase_of(state: str) -> PilotPhase | None:
    """Docker's container state -> our phase; None = the container has ended."""
    if state in ("running", "restarting"):
        return PilotPhase.RUNNING
    if state == "paused":
        return PilotPhase.FROZEN
    if state == "created":
        return PilotPhase.CREATED
    return None


class Registry:
    FORGET_AFTER = 600.0

    def __init__(self) -> None:
        self._pilots: dict[str, Pilot] = {}
        # Ended pilots whose container may still show in a list until its removal completes:
        # they must not come back as "adopted".
        self._ended: dict[str, float] = {}

    def __iter__(self) -> Iterator[Pilot]:
        return iter(list(self._pilots.values()))

    def __len__(self) -> int:
        return len(self._pilots)

    def get(self, cid: str) -> Pilot | None:
        return self._pilots.get(cid)

    def pop(self, cid: str) -> Pilot | None:
        now = time.monotonic()
        self._ended[cid] = now
        if len(self._ended) > 1000:
            self._ended = {k: t for k, t in self._ended.items() if now - t < self.FORGET_AFTER}
        return self._pilots.pop(cid, None)

    def add(self, pilot: Pilot) -> Pilot:
        return self._pilots.setdefault(pilot.id, pilot)

    def from_labels(self, cid: str, name: str, labels: dict[str, str], image: str) -> Pilot:
        """A pilot first seen in an event or a list (adoption, or an event racing our create)."""
        try:
            cpus = float(labels.get(C.LABEL_CPUS, "1"))
        except ValueError:
            cpus = 1.0
        return self.add(
            Pilot(
                id=cid,
                name=name,
                pool=labels.get(C.LABEL_POOL, ""),
                created=time.time(),
                cpus=cpus,
                image=image,
                spec=labels.get(C.LABEL_SPEC, ""),
            )
        )

    def reconcile(
        self, records: list[ContainerRecord], starting: set[str], listed_at: float
    ) -> tuple[list[Pilot], list[tuple[Pilot, int | None]], list[Pilot]]:
        """Bring the registry in line with one list call.

        Returns (adopted, ended with exit code, vanished): pilots seen for the first time, pilots
        whose container has exited, and pilots Docker no longer knows at all. `listed_at` is
        when the list request was sent: a pilot registered after it cannot be in the answer.
        """
        adopted: list[Pilot] = []
        ended: list[tuple[Pilot, int | None]] = []
        seen: set[str] = set()
        for rec in records:
            seen.add(rec.id)
            if rec.name in starting and rec.id not in self._pilots:
                continue  # our own start in flight: _start_pilot registers it when it returns
            if rec.id in self._ended:
                continue  # reported already; its removal is under way
            phase = _phase_of(rec.state)
            pilot = self._pilots.get(rec.id)
            if pilot is None:
                pilot = self.from_labels(rec.id, rec.name, rec.labels, rec.image)
                pilot.created = rec.created
                if phase is not None:
                    adopted.append(pilot)
            # A pilot we started keeps the time its start returned: Docker's create time would
            # add the engine's start latency to its lifetime and hide fast failures.
            if phase is None:
                if not pilot.ended:
                    ended.append((pilot, rec.exit_code))
            elif pilot.phase is PilotPhase.STOPPING or pilot.changing:
                continue
            elif pilot.starved and phase is PilotPhase.RUNNING:
                continue  # still "frozen" for the policy
            else:
                pilot.phase = phase
        vanished = [
            p
            for cid, p in self._pilots.items()
            if cid not in seen and p.name not in starting and p.known_since < listed_at
        ]
        return adopted, ended, vanished
