"""Every use of dbus-next's private internals, in one module, behind small typed functions.

Debian 12 ships dbus-next 0.2.3, and planctond needs three things its public API lacks:

- `declared_methods()`: the dispatcher (dbus_service.py) serves our methods itself, so it needs
  the `@method` declarations with the signatures dbus-next parsed from them;
- `result_to_body()`: dbus-next's own conversion of a method's return value into a message body,
  so a reply is marshalled exactly as dbus-next's dispatch would have done it;
- `harden()`: 0.2.3's asyncio writer treats a full socket buffer (BlockingIOError from a
  non-blocking send) as fatal and tears the connection down, so a burst of replies (anyone may
  call Status) would take planctond off the bus. Later releases wait for the socket to become
  writable; `harden()` gives a connection that behaviour by replacing the private writer's loop.

Nothing else under planctond/ may touch a dbus-next name starting with "_":
tests/unit/test_dbus_private.py checks that, and that the installed dbus-next still has the
shapes named here (`METHOD_FIELDS`, `WRITER_FIELDS`, `BUS_FIELDS`), so an upgrade fails a test
instead of failing on a host.
"""

from __future__ import annotations

import array
import logging
import socket
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from dbus_next.aio.message_bus import MessageBus
from dbus_next.service import ServiceInterface
from dbus_next.signature import SignatureTree

log = logging.getLogger(__name__)

# The attributes of dbus-next's private `_Method` that `declared_methods()` reads.
METHOD_FIELDS: Final = (
    "name",
    "disabled",
    "in_signature",
    "out_signature",
    "out_signature_tree",
    "fn",
)
# The attributes of the private `MessageBus._writer` that `_write_callback()` reads and writes.
WRITER_FIELDS: Final = (
    "messages",
    "negotiate_unix_fd",
    "sock",
    "loop",
    "buf",
    "fd",
    "offset",
    "unix_fds",
    "fut",
    "bus",
    "write_callback",
)
# The private attributes of the aio `MessageBus` used here.
BUS_FIELDS: Final = ("_writer", "_finalize")
_HARDENED: Final = "_planctond_hardened"


class IncompatibleDBusNext(RuntimeError):
    """The installed dbus-next no longer has an internal this module relies on."""


@dataclass(frozen=True)
class DeclaredMethod:
    """One enabled `@method` of a ServiceInterface; `fn` is unbound (call it with the object)."""

    name: str
    in_signature: str
    out_signature: str
    out_signature_tree: SignatureTree
    fn: Callable[..., Any]


def _private(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        owner = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise IncompatibleDBusNext(
            f"dbus-next has no {owner}.{name} any more: "
            f"planctond.control.dbus_private needs updating"
        ) from None


def declared_methods(iface: ServiceInterface) -> dict[str, DeclaredMethod]:
    """The enabled methods of `iface` by member name; raises IncompatibleDBusNext on a change."""
    get_methods = _private(ServiceInterface, "_get_methods")
    methods: dict[str, DeclaredMethod] = {}
    for m in get_methods(iface):
        name, disabled, in_sig, out_sig, out_tree, fn = (_private(m, f) for f in METHOD_FIELDS)
        if not disabled:
            methods[name] = DeclaredMethod(name, in_sig, out_sig, out_tree, fn)
    return methods


def result_to_body(result: Any, tree: SignatureTree) -> tuple[list[Any], list[int]]:
    """(body, unix fds) of a reply from a method's return value, as dbus-next's dispatch makes
    them: None is no out-args, a single out-arg is wrapped, several must come as a list."""
    to_body = _private(ServiceInterface, "_fn_result_to_body")
    body, fds = to_body(result, tree)
    return list(body), list(fds)


def _set_result(fut: Any) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def _set_exception(fut: Any, exc: BaseException) -> None:
    if fut is not None and not fut.done():
        fut.set_exception(exc)


def _write_callback(self: Any) -> None:
    """dbus-next 0.2.3's write loop, except that a full socket means "wait", not "fail"."""
    try:
        while True:
            if self.buf is None:
                if self.messages.qsize() == 0:
                    self.loop.remove_writer(self.fd)
                    return
                buf, unix_fds, fut = self.messages.get_nowait()
                self.unix_fds = unix_fds
                self.buf = memoryview(buf)
                self.offset = 0
                self.fut = fut
            try:
                if self.unix_fds and self.negotiate_unix_fd:
                    ancdata = [
                        (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", self.unix_fds))
                    ]
                    self.offset += self.sock.sendmsg([self.buf[self.offset :]], ancdata)
                    self.unix_fds = None
                else:
                    self.offset += self.sock.send(self.buf[self.offset :])
            except (BlockingIOError, InterruptedError):
                return  # the loop calls us again once the socket is writable
            if self.offset >= len(self.buf):
                self.buf = None
                _set_result(self.fut)
            else:
                return
    except Exception as exc:
        _set_exception(self.fut, exc)
        self.bus._finalize(exc)


def harden(bus: MessageBus) -> bool:
    """Install the fixed write loop on `bus` (idempotent). False, and the bus left as it is, when
    its writer does not look like 0.2.3's: serving without the fix beats not serving."""
    writer = getattr(bus, "_writer", None)
    if (
        writer is None
        or not all(hasattr(bus, a) for a in BUS_FIELDS)
        or not all(hasattr(writer, a) for a in WRITER_FIELDS)
    ):
        log.debug("dbus-next writer not recognised; leaving it as it is")
        return False
    if getattr(writer, _HARDENED, False):
        return True
    # An instance attribute wins over the class method, and add_writer() looks it up each time.
    writer.write_callback = types.MethodType(_write_callback, writer)
    setattr(writer, _HARDENED, True)
    return True
