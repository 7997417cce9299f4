"""A fix for dbus-next 0.2.3's asyncio writer, which Debian 12 ships.

Its writer treats a full socket buffer (BlockingIOError from a non-blocking send) as a fatal
error and tears the whole connection down. A burst of replies (anyone may call Status) would then
take planctond off the bus. Later dbus-next releases wait for the socket to become writable
instead; `harden()` gives a connection that behaviour. It touches the private `_writer`, so it
checks the shape it expects and leaves an unknown version alone.
"""

from __future__ import annotations

import array
import logging
import socket
import types
from typing import Any

log = logging.getLogger(__name__)

_EXPECTED = ("messages", "sock", "loop", "buf", "fd", "offset", "unix_fds", "fut", "bus")


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


def harden(bus: Any) -> bool:
    """Install the fixed write loop on `bus` (idempotent). False if the writer looks unfamiliar."""
    writer = getattr(bus, "_writer", None)
    if writer is None or not all(hasattr(writer, a) for a in _EXPECTED):
        log.debug("dbus-next writer not recognised; leaving it as it is")
        return False
    if getattr(writer, "_planctond_hardened", False):
        return True
    # An instance attribute wins over the class method, and add_writer() looks it up each time.
    writer.write_callback = types.MethodType(_write_callback, writer)
    writer._planctond_hardened = True
    return True
