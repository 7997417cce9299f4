"""sd_notify(3) for a Type=notify service: readiness, STATUS= lines, reload and watchdog pings.

Everything is a no-op without NOTIFY_SOCKET, so the same daemon runs under systemd, in a terminal
and in tests without branches at the call sites.

libsystemd (python3-systemd) sends the messages where it is installed. A plain `pip install`
has no compiler-built systemd-python, so the protocol itself, one datagram on an AF_UNIX socket,
is spoken here then: readiness and the watchdog must not depend on an optional C extension.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

# Sends one notify message; True when it was sent. Raises OSError when the socket refuses it.
Sender = Callable[[str], bool]


def send_datagram(state: str, env: Mapping[str, str] = os.environ) -> bool:
    """The sd_notify protocol: `state` as one datagram to $NOTIFY_SOCKET.

    A path, or an abstract socket written with a leading '@' (systemd's notation for the NUL
    byte). The kernel attaches our pid and credentials, which is what NotifyAccess=main checks.
    """
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    elif address[0] != "/":
        raise OSError(f"NOTIFY_SOCKET={address!r}: neither a path nor an abstract socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.sendto(state.encode(), address)
    return True


def default_sender() -> Sender:
    """libsystemd's sd_notify where python3-systemd is installed, else `send_datagram`."""
    try:
        import systemd.daemon as sd_daemon
    except ImportError:
        return send_datagram

    def libsystemd(state: str) -> bool:
        # unset_environment=False: reload and watchdog keep notifying after the first message.
        return bool(sd_daemon.notify(state, unset_environment=False))

    return libsystemd


class SystemdNotifier:
    """Thin, failure-tolerant wrapper: a lost notification must never take the daemon down."""

    def __init__(self, sender: Sender | None = None) -> None:
        self._last_status: str | None = None
        self._sender = sender or default_sender()

    @property
    def enabled(self) -> bool:
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def _send(self, state: str) -> bool:
        if not self.enabled:
            return False
        try:
            return self._sender(state)
        except Exception as exc:  # a closed/odd socket is reported, never raised
            log.warning("sd_notify(%s) failed: %s", state.replace("\n", " "), exc)
            return False

    def ready(self, status: str) -> None:
        self._last_status = status
        self._send(f"READY=1\nSTATUS={_one_line(status)}")

    def status(self, text: str) -> None:
        """STATUS= only when it changed: the loop calls this every tick."""
        if text == self._last_status:
            return
        self._last_status = text
        self._send(f"STATUS={_one_line(text)}")

    def reloading(self) -> None:
        # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 (Type=notify-reload); older ones
        # ignore it, so always sending it is both correct and harmless.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """WatchdogSec= in seconds, or None when the watchdog is off or meant for another process."""
        return watchdog_interval(os.environ)


def watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Parse WATCHDOG_USEC/WATCHDOG_PID as sd_watchdog_enabled(3) does."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000


def _one_line(text: str) -> str:
    """A newline inside STATUS= would start a new (bogus) assignment in the notify datagram."""
    return " ".join(text.split())
