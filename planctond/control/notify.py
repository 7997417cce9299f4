"""sd_notify(3) for a Type=notify service: readiness, STATUS= lines, reload and watchdog pings.

Everything is a no-op without NOTIFY_SOCKET, so the same daemon runs under systemd, in a terminal
and in tests without branches at the call sites.
"""

from __future__ import annotations

import logging
import os
import time

import systemd.daemon as sd_daemon

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Thin, failure-tolerant wrapper: a lost notification must never take the daemon down."""

    def __init__(self) -> None:
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(os.environ.get("NOTIFY_SOCKET"))

    def _send(self, state: str) -> bool:
        if not self.enabled:
            return False
        try:
            # unset_environment=False: reload and watchdog keep notifying after the first message.
            return bool(sd_daemon.notify(state, unset_environment=False))
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


def watchdog_interval(env: dict[str, str] | os._Environ[str]) -> float | None:
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
