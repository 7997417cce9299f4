"""The supervisor's picture of its pilots, fed by one list call per tick and Docker's events.

Docker stays the source of truth: the registry is rebuilt from each list, and events only make it
fresher between ticks. It never asks Docker about a single pilot (no inspect per pilot). It does
not change a pilot's phase itself: it reports what Docker shows, and `pilot_ops` decides what
that means for a pilot we may be pausing or stopping.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from planctond import constants as C
from planctond.engine.port import ContainerRecord
from planctond.policy.model import PilotPhase, PilotView, Reason
from planctond.supervisor.ports import Clock

# A label any container can carry must not be able to stop all starts (nan) or claim the host.
_MAX_LABEL_CPUS = 1024.0


@dataclass
class Pilot:
    id: str
    name: str
    pool: str
    created: float  # epoch seconds
    cpus: float
    image: str
    spec: str
    known_since: float  # monotonic: when the registry learnt of it
    phase: PilotPhase = PilotPhase.RUNNING
    stop_reason: Reason | None = None
    stop_detail: str = ""
    killed: bool = False  # SIGKILL was needed
    # Frozen in effect but not paused: the freezer could not catch a pilot the idle cgroup
    # starves (runc gives up waiting), and a starved pilot takes no CPU from the owner anyway.
    starved: bool = False
    paused: bool = False  # Docker has it paused, as far as we know
    pending: int = 0  # pauses/unpauses decided and not yet answered: the decided phase stands
    ended: bool = False  # its exit has been reported
    cpu_seconds: float | None = None  # CPU it had used when we decided to stop it
    # Pause, unpause and the start of a stop run one after the other for a pilot, in the order
    # they were decided: a thaw decided while Docker still pauses waits for that pause.
    op_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def changing(self) -> bool:
        return self.pending > 0

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


def phase_of(state: str) -> PilotPhase | None:
    """Docker's container state -> our phase; None = the container has ended."""
    if state in ("running", "restarting"):
        return PilotPhase.RUNNING
    if state == "paused":
        return PilotPhase.FROZEN
    if state == "created":
        return PilotPhase.CREATED
    return None


def label_cpus(labels: dict[str, str]) -> float:
    """The CPUs a pilot was given, from its label; 1.0 when absent or not a sane number."""
    try:
        cpus = float(labels.get(C.LABEL_CPUS, "1"))
    except ValueError:
        return 1.0
    return cpus if math.isfinite(cpus) and 0.0 < cpus <= _MAX_LABEL_CPUS else 1.0


@dataclass(frozen=True)
class Reconciled:
    """What one list call showed, against what we knew."""

    adopted: list[Pilot]  # seen for the first time (left running by an earlier daemon)
    ended: list[tuple[Pilot, int | None]]  # exited, with the exit code Docker shows
    vanished: list[Pilot]  # Docker no longer knows them at all
    observed: list[tuple[Pilot, PilotPhase]]  # the live phase Docker shows for each live pilot


class Registry:
    FORGET_AFTER = 600.0

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pilots: dict[str, Pilot] = {}
        # Ended pilots whose container may still show in a list until its removal completes:
        # they must not come back as "adopted".
        self._ended: dict[str, float] = {}

    def __iter__(self) -> Iterator[Pilot]:
        return iter(list(self._pilots.values()))

    def __len__(self) -> int:
        return len(self._pilots)

    def live(self) -> list[Pilot]:
        return [p for p in self._pilots.values() if not p.ended]

    def get(self, cid: str) -> Pilot | None:
        return self._pilots.get(cid)

    def has_ended(self, cid: str) -> bool:
        """Reported ended already: a late event for it must not bring it back."""
        return cid in self._ended

    def pop(self, cid: str) -> Pilot | None:
        now = self._clock.monotonic()
        self._ended[cid] = now
        if len(self._ended) > 1000:
            self._ended = {k: t for k, t in self._ended.items() if now - t < self.FORGET_AFTER}
        return self._pilots.pop(cid, None)

    def from_labels(self, cid: str, name: str, labels: dict[str, str], image: str) -> Pilot:
        """A pilot first seen in an event or a list (adoption, or an event racing our create)."""
        return self._pilots.setdefault(
            cid,
            Pilot(
                id=cid,
                name=name,
                pool=labels.get(C.LABEL_POOL, ""),
                created=self._clock.wall(),
                cpus=label_cpus(labels),
                image=image,
                spec=labels.get(C.LABEL_SPEC, ""),
                known_since=self._clock.monotonic(),
            ),
        )

    def reconcile(
        self, records: list[ContainerRecord], starting: set[str], listed_at: float
    ) -> Reconciled:
        """Bring the registry in line with one list call. `listed_at` is when the list request
        was sent: a pilot registered after it cannot be in the answer, so it has not vanished."""
        out = Reconciled([], [], [], [])
        seen: set[str] = set()
        for rec in records:
            seen.add(rec.id)
            if rec.name in starting and rec.id not in self._pilots:
                continue  # our own start in flight: pilot_ops registers it when it returns
            if rec.id in self._ended:
                continue  # reported already; its removal is under way
            phase = phase_of(rec.state)
            pilot = self._pilots.get(rec.id)
            if pilot is None:
                pilot = self.from_labels(rec.id, rec.name, rec.labels, rec.image)
                pilot.created = rec.created
                if phase is not None:
                    out.adopted.append(pilot)
            # A pilot we started keeps the time its start returned: Docker's create time would
            # add the engine's start latency to its lifetime and hide fast failures.
            if phase is None:
                if not pilot.ended:
                    out.ended.append((pilot, rec.exit_code))
            else:
                out.observed.append((pilot, phase))
        out.vanished.extend(
            p
            for cid, p in self._pilots.items()
            if cid not in seen and p.name not in starting and p.known_since < listed_at
        )
        return out
