"""org.plancton.Manager1 on the system bus: the D-Bus skin over a `Controller`.

Method calls to our interface do not go through dbus-next's own dispatch: a message handler
(`_Dispatcher`) takes them first, because only it sees the message and so the sender to check,
and because it is the single boundary where every exception becomes a named error instead of a
Python traceback sent to the caller. The `@method` declarations still define signatures and
introspection, so what is served, what is introspected and dbus/org.plancton.Manager1.xml agree.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

from dbus_next import introspection as intr
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import (
    BusType,
    MessageFlag,
    MessageType,
    NameFlag,
    PropertyAccess,
    RequestNameReply,
)
from dbus_next.errors import DBusError
from dbus_next.message import Message
from dbus_next.service import ServiceInterface, dbus_property, method, signal
from dbus_next.signature import Variant

from planctond.constants import BUS_NAME, INTERFACE, OBJECT_PATH
from planctond.control import dbus_errors
from planctond.control.authz import Authorizer
from planctond.supervisor.api import Controller, PilotInfo, StatusReport
from planctond.supervisor.events import Event, EventKind

log = logging.getLogger(__name__)

# Anyone may read; every other member of the interface changes state and needs an admin.
READ_ONLY_METHODS: Final = frozenset({"Status", "ListPilots"})
RECENT_EVENTS: Final = 10
NO_EXIT_CODE: Final = -1
PILOT_STRUCT: Final = "(ssssstd)"  # name, id, pool, phase, image, started (µs since epoch), cpu

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


class BusNameError(RuntimeError):
    """org.plancton could not be owned: taken by another process or denied by the bus policy."""


def _with_dbus_type(fn: F, returns: str) -> F:
    """dbus-next reads D-Bus signatures from annotations; setting them here keeps the Python
    annotations real types for mypy and ruff."""
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


# --- marshalling -------------------------------------------------------------------------------


def _usec(epoch: float | None) -> int:
    """Timestamps as µs since the epoch in a `t`, as systemd does: busctl prints integers
    exactly, while it rounds a `d` epoch to six digits. 0 means "none"."""
    return max(0, round(epoch * 1_000_000)) if epoch else 0


def _pool_dict(p: Any) -> dict[str, Variant]:
    return {
        "name": Variant("s", p.name),
        "running": Variant("u", max(0, int(p.running))),
        "frozen": Variant("u", max(0, int(p.frozen))),
        "allowed": Variant("u", max(0, int(p.allowed))),
        "backoff_until_usec": Variant("t", _usec(p.backoff_until)),
        "note": Variant("s", p.note),
    }


def _event_dict(e: Event) -> dict[str, Variant]:
    return {
        "time_usec": Variant("t", _usec(e.time)),
        "event": Variant("s", e.kind.value),
        "message": Variant("s", e.message),
        "pilot": Variant("s", e.pilot or ""),
        "pool": Variant("s", e.pool or ""),
    }


def status_to_dbus(report: StatusReport, recent: Iterable[Event] = ()) -> dict[str, Variant]:
    """Status() body: flat keys a person reads in `busctl call`, plain D-Bus types only."""
    now = time.time()
    return {
        "state": Variant("s", report.state.value),
        "summary": Variant("s", report.summary()),
        "docker_ok": Variant("b", bool(report.docker_ok)),
        "docker_error": Variant("s", report.docker_error),
        "pilots": Variant("u", max(0, int(report.pilots))),
        "pools": Variant("aa{sv}", [_pool_dict(p) for p in report.pools]),
        "capacity_cpus": Variant("d", float(report.capacity_cpus)),
        "owner_cpu": Variant("d", float(report.owner_cpu)),
        "host_cpu": Variant("d", float(report.host_cpu)),
        "ncpus": Variant("u", max(0, int(report.ncpus))),
        "started_usec": Variant("t", _usec(report.started)),
        "uptime_s": Variant("d", max(0.0, now - report.started)),
        "last_tick_usec": Variant("t", _usec(report.last_tick)),
        "version": Variant("s", report.version),
        "config_path": Variant("s", report.config_path),
        "last_error": Variant("s", report.last_error),
        "recent_events": Variant("aa{sv}", [_event_dict(e) for e in recent]),
        "extra": Variant("a{ss}", {str(k): str(v) for k, v in report.extra.items()}),
    }


def pilot_to_dbus(p: PilotInfo) -> list[Any]:
    return [p.name, p.id, p.pool, p.phase, p.image, _usec(p.started), float(p.cpu)]


# --- the interface -----------------------------------------------------------------------------


class Manager1(ServiceInterface):
    """Methods return plain data; authorization and error translation live in `_Dispatcher`."""

    def __init__(self, controller: Controller) -> None:
        super().__init__(INTERFACE)
        self._controller = controller
        self._state = "active"
        self._running = 0
        try:
            self._state = controller.status().state.value
            self._running = self._count_running()
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
        """Re-read state and pilot count from the controller; emit only what changed."""
        self._set_state(self._controller.status().state.value)
        running = self._count_running()
        if running != self._running:
            self._running = running
            self.emit_properties_changed({"RunningPilots": running})

    def _set_state(self, state: str) -> None:
        if state == self._state:
            return
        self._state = state
        self.emit_properties_changed({"State": state})
        self.StateChanged(state)

    def _count_running(self) -> int:
        return sum(1 for p in self._controller.pilots() if p.phase == "running")

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


class _Dispatcher:
    """Serves method calls on our interface: authorize, check arguments, run, reply, never raise."""

    def __init__(self, bus: MessageBus, iface: Manager1, authorizer: Authorizer) -> None:
        self._bus = bus
        self._iface = iface
        self._authorizer = authorizer
        # dbus-next 0.2.3 internals (untyped): the declared methods with their parsed signatures.
        declared = ServiceInterface._get_methods(iface)  # type: ignore[no-untyped-call]
        self._methods = {m.name: m for m in declared if not m.disabled}
        self._tasks: set[asyncio.Task[None]] = set()
        self._uids: dict[str, int] = {}

    def on_message(self, msg: Message) -> bool:
        """dbus-next message handler: True means "handled, do not dispatch it yourself"."""
        if (
            msg.message_type is not MessageType.METHOD_CALL
            or msg.path != OBJECT_PATH
            or msg.interface != INTERFACE
            or msg.member not in self._methods
        ):
            return False  # introspection, properties, unknown members: dbus-next's defaults
        task = asyncio.get_running_loop().create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _serve(self, msg: Message) -> None:
        member = msg.member
        try:
            reply = await self._call(msg)
        except asyncio.CancelledError:  # close() during a call: answer, then honour the cancel
            self._reply(
                msg, Message.new_error(msg, dbus_errors.FAILED, "planctond is shutting down")
            )
            raise
        except Exception as exc:  # the boundary: nothing escapes to dbus-next or the caller
            err = dbus_errors.translate(exc, member)
            reply = Message.new_error(msg, err.type, err.text)
        self._reply(msg, reply)

    def _reply(self, msg: Message, reply: Message) -> None:
        if msg.flags & MessageFlag.NO_REPLY_EXPECTED:
            return
        try:
            self._bus.send(reply)
        except Exception as exc:
            log.warning("could not reply to %s from %s: %s", msg.member, msg.sender, exc)

    async def _call(self, msg: Message) -> Message:
        m = self._methods[msg.member]
        if msg.member not in READ_ONLY_METHODS:
            await self._authorize(msg)
        if msg.signature != m.in_signature:
            raise dbus_errors.invalid_args(
                f"{msg.member} takes ({m.in_signature}), got ({msg.signature})"
            )
        result = m.fn(self._iface, *msg.body)
        if inspect.isawaitable(result):
            result = await result
        body, fds = ServiceInterface._fn_result_to_body(  # type: ignore[no-untyped-call]
            result, m.out_signature_tree
        )
        reply: Message = Message.new_method_return(msg, m.out_signature, body, fds)
        return reply

    async def _authorize(self, msg: Message) -> None:
        uid = await self._caller_uid(msg.sender)
        if not self._authorizer.may_control(uid):
            log.warning("refused %s from uid %d (%s)", msg.member, uid, msg.sender)
            raise dbus_errors.access_denied(
                f"{msg.member} changes the daemon's state: only {self._authorizer.describe()} may call it"
            )
        log.info("%s requested by uid %d", msg.member, uid)

    async def _caller_uid(self, sender: str | None) -> int:
        if not sender:
            raise dbus_errors.access_denied("cannot identify the caller (no sender)")
        cached = self._uids.get(sender)
        if cached is not None:
            return cached  # unique names are never reused on a bus
        reply = await self._bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="GetConnectionUnixUser",
                signature="s",
                body=[sender],
            )
        )
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            raise dbus_errors.access_denied("cannot identify the caller's uid")
        uid = int(reply.body[0])
        if len(self._uids) > 1024:
            self._uids.clear()
        self._uids[sender] = uid
        return uid

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


class DBusService:
    """A served Manager1; `await close()` withdraws it from the bus (the bus itself stays open)."""

    def __init__(
        self, bus: MessageBus, iface: Manager1, dispatcher: _Dispatcher, name: str
    ) -> None:
        self.bus = bus
        self._name = name
        self.interface = iface
        self._dispatcher = dispatcher
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False
        self._refresh_pending = False

    def _on_event(self, event: Event) -> None:
        try:
            self.interface.emit_for_event(event)
        except Exception:
            log.exception("D-Bus signal for %s failed", event.kind.value)
        # The controller may emit mid-update: count pilots once the current step has finished,
        # and once per burst (a tick that starts ten pilots emits ten events).
        if not self._refresh_pending:
            self._refresh_pending = True
            asyncio.get_running_loop().call_soon(self._refresh)

    def _refresh(self) -> None:
        self._refresh_pending = False
        if self._closed:
            return
        try:
            self.interface.refresh()
        except Exception:
            log.exception("refreshing D-Bus properties failed")

    def _withdraw(self) -> bool:
        """Stop serving (sync part). False when already closed."""
        if self._closed:
            return False
        self._closed = True
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._dispatcher.close()
        self.bus.remove_message_handler(self._dispatcher.on_message)
        if self.bus.connected:
            try:
                self.bus.unexport(OBJECT_PATH, self.interface)
            except Exception as exc:
                log.warning("unexporting %s failed: %s", OBJECT_PATH, exc)
        return True

    async def close(self) -> None:
        """Withdraw the object and release the name; the bus connection itself stays open."""
        if not self._withdraw() or not self.bus.connected:
            return
        try:
            await asyncio.wait_for(self.bus.release_name(self._name), timeout=5)
        except Exception as exc:
            log.warning("releasing %s failed: %s", self._name, exc)


async def connect_system_bus() -> MessageBus:
    """The system bus (DBUS_SYSTEM_BUS_ADDRESS if set, as libdbus does)."""
    bus: MessageBus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    return bus


async def serve(
    controller: Controller,
    bus: MessageBus,
    authorizer: Authorizer | None = None,
    name: str = BUS_NAME,
) -> DBusService:
    """Export /org/plancton, then own the name: the object exists before anyone can find it."""
    iface = Manager1(controller)
    dispatcher = _Dispatcher(bus, iface, authorizer or Authorizer())
    bus.export(OBJECT_PATH, iface)
    bus.add_message_handler(dispatcher.on_message)
    service = DBusService(bus, iface, dispatcher, name)
    try:
        reply = await bus.request_name(name, NameFlag.DO_NOT_QUEUE)
    except DBusError as exc:
        service._withdraw()
        raise BusNameError(
            f"not allowed to own {name} on the system bus ({exc.text}); is the policy file "
            f"org.plancton.conf installed and the daemon running as root or plancton?"
        ) from exc
    except Exception:
        service._withdraw()
        raise
    if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
        service._withdraw()
        raise BusNameError(f"{name} is already owned on the bus: is another planctond running?")
    service._unsubscribe = controller.events.subscribe(service._on_event)
    log.info("serving %s on %s as %s", INTERFACE, OBJECT_PATH, name)
    return service


__all__ = [
    "BusNameError",
    "DBusService",
    "Manager1",
    "connect_system_bus",
    "pilot_to_dbus",
    "serve",
    "status_to_dbus",
]
