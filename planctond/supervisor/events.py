"""Events the supervisor emits: one stream that the stderr log, journald, D-Bus signals and
monitoring all subscribe to, so each transport reports the same facts with the same fields.

An Event only ever holds safe text (`planctond.text.safe_text`): its fields reach D-Bus signals,
Status() and the journal, and one unsendable string kept in `EventBus.recent` would otherwise fail
every Status() reply until it aged out, whatever the cause had been and however it was fixed."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from planctond.text import safe_text

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    PILOT_STARTED = "pilot-started"
    PILOT_EXITED = "pilot-exited"
    PILOT_FROZEN = "pilot-frozen"
    PILOT_THAWED = "pilot-thawed"
    PILOT_STOPPED = "pilot-stopped"
    PILOT_KILLED = "pilot-killed"
    STATE_CHANGED = "state-changed"
    CONFIG_LOADED = "config-loaded"
    CONFIG_REJECTED = "config-rejected"
    DOCKER_LOST = "docker-lost"
    DOCKER_BACK = "docker-back"
    POOL_BACKOFF = "pool-backoff"
    IMAGE = "image"
    OWNER_YIELD = "owner-yield"  # the pilots chosen to give way are out of the owner's way


@dataclass(frozen=True)
class Event:
    kind: EventKind
    message: str  # one readable sentence
    pilot: str | None = None  # container name
    pilot_id: str | None = None
    pool: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    state: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        """Text from outside (Docker, a config file) may reach an event unchecked by its emitter:
        it is made safe here, the one door every transport's data goes through."""
        for name in ("message", "pilot", "pilot_id", "pool", "reason", "state"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, safe_text(value))
        extra = {safe_text(k): safe_text(v) for k, v in self.extra.items()}
        object.__setattr__(self, "extra", extra)

    def fields(self) -> dict[str, str]:
        """Structured fields (journald style, upper-case PLANCTON_* keys)."""
        out = {"PLANCTON_EVENT": self.kind.value}
        for key, value in (
            ("PLANCTON_PILOT", self.pilot),
            ("PLANCTON_PILOT_ID", self.pilot_id),
            ("PLANCTON_POOL", self.pool),
            ("PLANCTON_REASON", self.reason),
            ("PLANCTON_EXIT_CODE", None if self.exit_code is None else str(self.exit_code)),
            ("PLANCTON_STATE", self.state),
        ):
            if value is not None:
                out[key] = value
        for k, v in self.extra.items():
            out["PLANCTON_" + k.upper()] = v
        return out


Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous fan-out; a failing subscriber is logged and never stops the others."""

    def __init__(self, history: int = 100) -> None:
        self._subscribers: list[Subscriber] = []
        self.recent: deque[Event] = deque(maxlen=history)

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn)

    def emit(self, event: Event) -> None:
        self.recent.append(event)
        for fn in list(self._subscribers):
            try:
                fn(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", fn, event.kind.value)
