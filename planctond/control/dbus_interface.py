"""The org.plancton.Manager1 interface object: members, signatures, signals and properties.

dbus-next reads D-Bus signatures from annotations; the small decorators below set those at
definition time so the Python annotations stay real types for mypy and ruff. Authorization and
error translation are not here: they live in the dispatcher (dbus_service.py), the one boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, TypeVar

from dbus_next import introspection as intr
from dbus_next.constants import PropertyAccess
from dbus_next.service import ServiceInterface, dbus_property, method, signal
from dbus_next.signature import Variant

from planctond.constants import INTERFACE
from planctond.control.dbus_marshal import (
    PILOT_STRUCT,
    RECENT_EVENTS,
    pilot_to_dbus,
    status_to_dbus,
    u32,
)
from planctond.supervisor.api import Controller
from planctond.supervisor.events import Event, EventKind

log = logging.getLogger(__name__)

NO_EXIT_CODE: Final = -1
INT32: Final = range(-(2**31), 2**31)

# Argument names for introspection (dbus-next leaves out-args and signal args unnamed).
ARG_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "Status": ("status",),
    "ListPilots": ("pilots",),
    "StateChanged": ("state",),
    "PilotStarted": ("name", "id", "pool"),
    "PilotExited": ("name", "id", "pool", "exit_code"),
    "PilotStopped": ("name", "id", "pool", "reason", "exit_code"),
    "PilotKilled": ("name", "id", "pool", "reason", "exit_code"),
    "PilotFrozen": ("name", "id", "pool", "reason"),
    "PilotThawed": ("name", "id", "pool", "reason"),
}

F = TypeVar("F", bound=Callable[..., Any])


def _with_dbus_type(fn: F, returns: str) -> F:
    """Replace the return annotation by the D-Bus signature (none: no out args)."""
    annotations = dict(fn.__annotations__)
    if returns:
        annotations["return"] = returns
    else:
        annotations.pop("return", None)
    fn.__annotations__ = annotations
    return fn


def _dbus_method(returns: str = "") -> Callable[[F], F]:
    def deco(fn: F) -> F:
        result: F = method()(_with_dbus_type(fn, returns))
        return result

    return deco


def _dbus_signal(returns: str) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        result: F = signal()(_with_dbus_type(fn, returns))
        return result

    return deco


def _dbus_readonly_property(returns: str) -> Callable[[Callable[[Any], Any]], Any]:
    def deco(fn: Callable[[Any], Any]) -> Any:
        return dbus_property(access=PropertyAccess.READ)(_with_dbus_type(fn, returns))

    return deco


class Manager1(ServiceInterface):
    """Methods return plain data; authorization and error translation live in `_Dispatcher`."""

    def __init__(self, controller: Controller) -> None:
        super().__init__(INTERFACE)
        self._controller = controller
        self._state = "active"
        self._running = 0
        try:
            # The one full status() read: from here on STATE_CHANGED events carry the state.
            self._state = controller.status().state.value
            self._running = u32(controller.counts().running)
        except Exception:  # properties catch up with the next event; serving matters more
            log.exception("reading the controller's initial state failed")

    # methods -----------------------------------------------------------------------------------
    @_dbus_method()
    async def Start(self) -> None:
        await self._controller.start()

    @_dbus_method()
    async def Drain(self) -> None:
        await self._controller.drain()

    @_dbus_method()
    async def Resume(self) -> None:
        await self._controller.resume()

    @_dbus_method()
    async def Stop(self) -> None:
        await self._controller.stop()

    @_dbus_method()
    async def Reload(self) -> None:
        await self._controller.reload()

    @_dbus_method("a{sv}")
    def Status(self) -> dict[str, Variant]:
        recent = list(self._controller.events.recent)[-RECENT_EVENTS:]
        return status_to_dbus(self._controller.status(), recent)

    @_dbus_method(f"a{PILOT_STRUCT}")
    def ListPilots(self) -> list[list[Any]]:
        return [pilot_to_dbus(p) for p in self._controller.pilots()]

    # properties (read by dbus-next through getattr, so keep them cheap and exception-free) ------
    @_dbus_readonly_property("s")
    def State(self) -> str:
        return self._state

    @_dbus_readonly_property("u")
    def RunningPilots(self) -> int:
        return self._running

    # signals -------------------------------------------------------------------------------------
    @_dbus_signal("s")
    def StateChanged(self, state: str) -> str:
        return state

    @_dbus_signal("sss")
    def PilotStarted(self, name: str, id: str, pool: str) -> list[Any]:
        return [name, id, pool]

    @_dbus_signal("sssi")
    def PilotExited(self, name: str, id: str, pool: str, exit_code: int) -> list[Any]:
        return [name, id, pool, exit_code]

    @_dbus_signal("ssssi")
    def PilotStopped(self, name: str, id: str, pool: str, reason: str, exit_code: int) -> list[Any]:
        return [name, id, pool, reason, exit_code]

    @_dbus_signal("ssssi")
    def PilotKilled(self, name: str, id: str, pool: str, reason: str, exit_code: int) -> list[Any]:
        return [name, id, pool, reason, exit_code]

    @_dbus_signal("ssss")
    def PilotFrozen(self, name: str, id: str, pool: str, reason: str) -> list[Any]:
        return [name, id, pool, reason]

    @_dbus_signal("ssss")
    def PilotThawed(self, name: str, id: str, pool: str, reason: str) -> list[Any]:
        return [name, id, pool, reason]

    # events -> signals and PropertiesChanged ----------------------------------------------------
    def emit_for_event(self, event: Event) -> None:
        name, pid, pool = event.pilot or "", event.pilot_id or "", event.pool or ""
        reason = event.reason or ""
        code = NO_EXIT_CODE if event.exit_code is None else int(event.exit_code)
        code = code if code in INT32 else NO_EXIT_CODE
        match event.kind:
            case EventKind.STATE_CHANGED:
                if event.state:
                    self._set_state(event.state)
            case EventKind.PILOT_STARTED:
                self.PilotStarted(name, pid, pool)
            case EventKind.PILOT_EXITED:
                self.PilotExited(name, pid, pool, code)
            case EventKind.PILOT_STOPPED:
                self.PilotStopped(name, pid, pool, reason, code)
            case EventKind.PILOT_KILLED:
                self.PilotKilled(name, pid, pool, reason, code)
            case EventKind.PILOT_FROZEN:
                self.PilotFrozen(name, pid, pool, reason)
            case EventKind.PILOT_THAWED:
                self.PilotThawed(name, pid, pool, reason)
            case _:
                pass

    def refresh(self) -> None:
        """Re-count running pilots after a burst of events. `counts()` is the controller's
        memory alone: a full status() or pilots() here would cost Docker and cgroup reads on
        every burst. Emits only when the count moved."""
        running = u32(self._controller.counts().running)
        if running != self._running:
            self._running = running
            self.emit_properties_changed({"RunningPilots": running})

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        self.emit_properties_changed({"State": state})
        self.StateChanged(state)

    def introspect(self) -> intr.Interface:
        """dbus-next's introspection plus argument names, as in dbus/org.plancton.Manager1.xml."""
        iface: intr.Interface = super().introspect()
        named: list[tuple[str, list[intr.Arg]]] = [(m.name, m.out_args) for m in iface.methods]
        named += [(sig.name, sig.args) for sig in iface.signals]
        for member, args in named:
            names = ARG_NAMES.get(member)
            if names and len(names) == len(args):
                for arg, arg_name in zip(args, names, strict=True):
                    arg.name = arg_name
        return iface
