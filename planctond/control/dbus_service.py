"""org.plancton.Manager1 on the system bus: the D-Bus skin over a `Controller`.

Method calls to our interface do not go through dbus-next's own dispatch: a message handler
(`_Dispatcher`) takes them first, because only it sees the message and so the sender to check,
and because it is the single boundary where every exception becomes a named error instead of a
Python traceback sent to the caller. The `@method` declarations still define signatures and
introspection, so what is served, what is introspected and dbus/org.plancton.Manager1.xml agree.

Every call gets an answer: a reply that cannot be sent (text that slipped through unmade-safe, a
value D-Bus cannot carry) becomes org.plancton.Error.Failed, and the journal says why. A one-way
call (NO_REPLY_EXPECTED) gets none by definition, so whatever refuses or fails it is logged with
the member, the sender and the reason; a state change whose caller has already left the bus is
refused, because its uid can no longer be checked.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Final

from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import (
    BusType,
    MessageFlag,
    MessageType,
    NameFlag,
    RequestNameReply,
)
from dbus_next.errors import DBusError
from dbus_next.message import Message

from planctond.constants import BUS_NAME, INTERFACE, OBJECT_PATH
from planctond.control import dbus_errors
from planctond.control.authz import Authorizer
from planctond.control.dbus_interface import Manager1
from planctond.control.dbus_marshal import unsendable
from planctond.control.dbus_private import declared_methods, harden, result_to_body
from planctond.supervisor.api import Controller
from planctond.supervisor.events import Event

log = logging.getLogger(__name__)

# Anyone may read; every other member of the interface changes state and needs an admin.
READ_ONLY_METHODS: Final = frozenset({"Status", "ListPilots"})
NAME_HAS_NO_OWNER: Final = "org.freedesktop.DBus.Error.NameHasNoOwner"
CALLER_GONE: Final = (
    "the caller left the bus before its uid could be checked; a call that changes the "
    "daemon's state must wait for its answer (planctonctl, busctl call, dbus-send --print-reply)"
)


def _one_way(msg: Message) -> bool:
    """A call sent with NO_REPLY_EXPECTED (dbus-send without --print-reply): no answer goes back."""
    return bool(msg.flags & MessageFlag.NO_REPLY_EXPECTED)


class BusNameError(RuntimeError):
    """org.plancton could not be owned: taken by another process or denied by the bus policy."""


class _Dispatcher:
    """Serves method calls on our interface: authorize, check arguments, run, reply, never raise."""

    def __init__(self, bus: MessageBus, iface: Manager1, authorizer: Authorizer) -> None:
        self._bus = bus
        self._iface = iface
        self._authorizer = authorizer
        self._methods = declared_methods(iface)
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
                msg, self._error_reply(msg, dbus_errors.failed("planctond is shutting down"))
            )
            raise
        except Exception as exc:  # the boundary: nothing escapes to dbus-next or the caller
            reply = self._error_reply(msg, dbus_errors.translate(exc, member))
        self._reply(msg, reply)

    def _error_reply(self, msg: Message, err: DBusError) -> Message:
        """The error answering `msg`; for a one-way call nobody reads it, so it is logged (a
        refusal already was, by `_authorize`)."""
        if _one_way(msg) and err.type != dbus_errors.ACCESS_DENIED:
            log.warning("%s from %s (one-way call) failed: %s", msg.member, msg.sender, err.text)
        reply: Message = Message.new_error(msg, err.type, err.text)
        return reply

    def _reply(self, msg: Message, reply: Message) -> None:
        """Send `reply`; when it cannot be sent, send Failed instead: a caller always hears back."""
        if _one_way(msg):
            return
        try:
            self._bus.send(reply)
            return
        except Exception as exc:
            if reply.message_type is MessageType.ERROR or not self._bus.connected:
                log.warning("could not reply to %s from %s: %s", msg.member, msg.sender, exc)
                return
            log.error(
                "the reply to %s from %s could not be sent", msg.member, msg.sender, exc_info=exc
            )
            err = dbus_errors.failed(
                f"{msg.member} failed: its reply could not be sent ({type(exc).__name__}); "
                f"see the daemon's journal"
            )
        self._reply(msg, self._error_reply(msg, err))

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
        body, fds = result_to_body(result, m.out_signature_tree)
        problem = unsendable(body)
        if problem is not None:
            # The text should have been made safe where it entered the daemon: find out where.
            log.error(
                "%s: the reply holds %s: answering %s instead",
                msg.member,
                problem,
                dbus_errors.FAILED,
            )
            raise dbus_errors.failed(
                f"{msg.member} failed: its reply cannot be sent ({problem}); "
                f"see the daemon's journal"
            )
        reply: Message = Message.new_method_return(msg, m.out_signature, body, fds)
        return reply

    async def _authorize(self, msg: Message) -> None:
        """Refusals are logged here, naming the member, the sender and why: the caller of a
        one-way call (e.g. `dbus-send` without --print-reply) never sees the error."""
        how = " (one-way call)" if _one_way(msg) else ""
        try:
            uid = await self._caller_uid(msg.sender)
        except DBusError as exc:
            log.warning("refused %s from %s%s: %s", msg.member, msg.sender, how, exc.text)
            raise
        if not self._authorizer.may_control(uid):
            log.warning("refused %s from uid %d (%s)%s", msg.member, uid, msg.sender, how)
            raise dbus_errors.access_denied(
                f"{msg.member} changes the daemon's state: only {self._authorizer.describe()} may call it"
            )
        log.info("%s requested by uid %d%s", msg.member, uid, how)

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
            if reply is not None and reply.error_name == NAME_HAS_NO_OWNER:
                # The bus forgets a caller's credentials when it disconnects, and a one-way
                # caller may disconnect at once: nothing can tell who it was any more.
                raise dbus_errors.access_denied(CALLER_GONE)
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
    bus = MessageBus(bus_type=BusType.SYSTEM)
    harden(bus)
    connected: MessageBus = await bus.connect()
    return connected


async def serve(
    controller: Controller,
    bus: MessageBus,
    authorizer: Authorizer | None = None,
    name: str = BUS_NAME,
) -> DBusService:
    """Export /org/plancton, then own the name: the object exists before anyone can find it."""
    harden(bus)  # a reply burst must not cost us the connection (dbus-next 0.2.3 bug)
    iface = Manager1(controller)
    dispatcher = _Dispatcher(bus, iface, authorizer or Authorizer())
    bus.export(OBJECT_PATH, iface)
    bus.add_message_handler(dispatcher.on_message)
    service = DBusService(bus, iface, dispatcher, name)
    # Subscribe in the same step as Manager1 read its seed: properties follow events from then
    # on, and an event during the name request below must not be missed.
    service._unsubscribe = controller.events.subscribe(service._on_event)
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
    log.info("serving %s on %s as %s", INTERFACE, OBJECT_PATH, name)
    return service


__all__ = ["BusNameError", "DBusService", "Manager1", "connect_system_bus", "serve"]
