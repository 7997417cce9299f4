"""`owner_idle` from systemd-logind: seconds since the host's people last touched a session.

"Run only when the owner is away" then reads `run_when: owner_idle > 600`, as in BOINC's and
HTCondor's desktop policies. The policy reads variables synchronously every tick, so logind is
polled in the background and `variables()` returns the last answer; without logind the variable
is simply absent (the expression layer reports an undefined name once).

A sensor, not part of the D-Bus API: `start_owner_idle()` opens its own system bus connection
when the composition root has none to lend, so the variable exists whether or not org.plancton
is served. It is the one sensor allowed dbus_next (see the import-linter contracts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import BusType, MessageType
from dbus_next.message import Message

log = logging.getLogger(__name__)

LOGIN1: Final = "org.freedesktop.login1"
LOGIN1_PATH: Final = "/org/freedesktop/login1"
MANAGER_IFACE: Final = "org.freedesktop.login1.Manager"
SESSION_IFACE: Final = "org.freedesktop.login1.Session"
# Sessions a person sits at or types into; greeters, background and manager sessions are not
# the owner.
PERSON_TYPES: Final = frozenset({"x11", "wayland", "tty", "mir"})
POLL_INTERVAL: Final = 5.0
CALL_TIMEOUT: Final = 5.0


def _uptime() -> float:
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def owner_idle(sessions: list[dict[str, Any]], now: float, no_session: float) -> float:
    """Min idle seconds over the person sessions; `no_session` when nobody is logged in."""
    idles: list[float] = []
    for s in sessions:
        if s.get("Class") != "user" or s.get("Type") not in PERSON_TYPES:
            continue
        if not s.get("IdleHint", False):
            idles.append(0.0)
            continue
        since_usec = int(s.get("IdleSinceHint", 0) or 0)
        idles.append(max(0.0, now - since_usec / 1_000_000) if since_usec else 0.0)
    return min(idles) if idles else no_session


class LogindIdleSource:
    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        self._interval = interval
        self._bus: MessageBus | None = None
        self._owns_bus = False
        self._value: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    async def start(self, bus: MessageBus, owns_bus: bool = False) -> None:
        """First reading now, then poll. Never raises: without logind the source stays empty.
        `owns_bus`: the connection is this source's alone, and `stop()` closes it."""
        self._bus = bus
        self._owns_bus = owns_bus
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._owns_bus and self._bus is not None:
            self._owns_bus = False
            self._bus.disconnect()  # type: ignore[no-untyped-call]
            closed = self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closed, CALL_TIMEOUT)

    def variables(self) -> dict[str, float]:
        return {} if self._value is None else {"owner_idle": self._value}

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    async def refresh(self) -> None:
        try:
            sessions = await self._sessions()
        except Exception as exc:
            self._value = None
            if not self._warned:
                self._warned = True
                log.info("logind unavailable (%s): owner_idle is undefined", exc)
            return
        if self._warned:
            log.info("logind is reachable again: owner_idle is defined")
            self._warned = False
        self._value = owner_idle(sessions, time.time(), no_session=_uptime())

    async def _call(self, path: str, iface: str, member: str, signature: str = "", body: list[Any] | None = None) -> list[Any]:  # fmt: skip
        if self._bus is None:
            raise RuntimeError("not started")
        reply = await asyncio.wait_for(
            self._bus.call(
                Message(
                    destination=LOGIN1,
                    path=path,
                    interface=iface,
                    member=member,
                    signature=signature,
                    body=body or [],
                )
            ),
            timeout=CALL_TIMEOUT,
        )
        if reply is None:
            raise RuntimeError(f"no reply to {member}")
        if reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"{reply.error_name}: {reply.body[0] if reply.body else ''}")
        return list(reply.body)

    async def _sessions(self) -> list[dict[str, Any]]:
        (listed,) = await self._call(LOGIN1_PATH, MANAGER_IFACE, "ListSessions")
        out: list[dict[str, Any]] = []
        for _sid, _uid, _user, _seat, path in listed:
            try:
                (props,) = await self._call(
                    path, "org.freedesktop.DBus.Properties", "GetAll", "s", [SESSION_IFACE]
                )
            except RuntimeError:
                continue  # the session ended between the two calls
            out.append({k: v.value for k, v in props.items()})
        return out


async def _connect_system_bus() -> MessageBus | None:
    """A connection of our own (DBUS_SYSTEM_BUS_ADDRESS if set, as libdbus does); None, said
    once at info, when there is no system bus to reach."""
    try:
        bus = MessageBus(bus_type=BusType.SYSTEM)  # opens the socket: raises without a bus
    except Exception as exc:
        log.info("no system bus (%s): owner_idle is undefined", exc)
        return None
    try:
        connected: MessageBus = await asyncio.wait_for(bus.connect(), CALL_TIMEOUT)
    except Exception as exc:
        log.info("cannot connect to the system bus (%s): owner_idle is undefined", exc)
        with contextlib.suppress(Exception):  # not awaited: a bus without hello may never close
            bus.disconnect()  # type: ignore[no-untyped-call]
        return None
    return connected


async def start_owner_idle(
    bus: MessageBus | None = None, interval: float = POLL_INTERVAL
) -> LogindIdleSource | None:
    """The polling owner_idle source for the composition root, served API or not.

    Uses `bus` when given (it stays the caller's), else a system bus connection of its own that
    `stop()` closes. None when the bus or logind cannot be reached at start (logind is
    bus-activated, so a host where it does not answer then has no sessions to watch); why is
    said once at info. A logind that goes away later only leaves the variable undefined until
    it is back. Never raises.
    """
    own = bus is None
    if bus is None:
        bus = await _connect_system_bus()
        if bus is None:
            return None
    source = LogindIdleSource(interval)
    await source.start(bus, owns_bus=own)
    if source.variables():
        return source
    await source.stop()  # refresh() has said why, once
    return None
