"""What the supervisor needs from a container engine, as a contract.

`DockerEngine` implements it against a real dockerd; the tests' fake engine implements it in
memory. The supervisor depends on this protocol only, so its composition root decides which
engine it drives. Every method may block: callers run them off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from planctond import constants as C
from planctond.engine.spec import PilotSpec


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    api_version: str
    cgroup_driver: str  # "cgroupfs" | "systemd"
    cgroup_version: int
    docker_root: str
    ncpu: int


@dataclass(frozen=True)
class ContainerRecord:
    """One pilot as a list call shows it."""

    id: str
    name: str
    state: str  # running | paused | exited | created | restarting | removing | dead
    created: float  # epoch seconds
    labels: dict[str, str] = field(default_factory=dict)
    image: str = ""
    exit_code: int | None = None

    @property
    def pool(self) -> str:
        return self.labels.get(C.LABEL_POOL, "")


@dataclass(frozen=True)
class ContainerEvent:
    """One container event of this daemon's pilots.

    `action` is the engine's verb (start, die, pause, unpause, destroy, ...); `attrs` are the
    container's labels plus `name` and `image`, as the engine reports them with the event.
    """

    action: str
    id: str
    attrs: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None  # for "die"

    @property
    def name(self) -> str:
        return self.attrs.get("name", self.id[:12])


class EventStream(Protocol):
    """Container events as they happen; iteration blocks and ends when the engine goes away.
    `close()` may be called from another thread to end it."""

    def __iter__(self) -> Iterator[ContainerEvent]: ...

    def close(self) -> None: ...


class Engine(Protocol):
    """Every call may block and raise an `planctond.engine.errors.EngineError` subtype."""

    @property
    def calls(self) -> int:
        """Requests made so far (for Status and the benchmark)."""
        ...

    def info(self) -> EngineInfo: ...

    def list_pilots(self) -> list[ContainerRecord]:
        """Every container of this daemon's instance, in any state: one request."""
        ...

    def create_and_start(self, spec: PilotSpec) -> str:
        """Create and start; returns the id. A container that fails to start is removed."""
        ...

    def signal(self, cid: str, sig: str) -> None: ...

    def pause(self, cid: str) -> None: ...

    def unpause(self, cid: str) -> None: ...

    def remove(self, cid: str) -> None:
        """Force-remove; a container already gone or being removed is not an error."""
        ...

    def update_resources(self, cid: str, limits: dict[str, Any]) -> None: ...

    def events(self, since: float | None = None) -> EventStream: ...

    def image_present(self, ref: str) -> bool: ...

    def pull(self, ref: str) -> None: ...

    def reset(self) -> None:
        """Drop the connection; the next call reconnects."""
        ...
