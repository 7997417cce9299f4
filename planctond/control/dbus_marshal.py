"""Controller data -> D-Bus values for Manager1: plain types a person reads in `busctl call`.

Timestamps are `t` microseconds since the epoch (0 = none), as systemd does: busctl prints
integers exactly, while it rounds a `d` epoch to six digits.

Numbers are clamped into their D-Bus type here (a negative count or a NaN time must not cost the
caller a reply). Text is not repaired here: it was made safe where it entered the daemon, and
`unsendable()` is the dispatcher's last check that nothing slipped through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Final

from dbus_next.signature import Variant

from planctond.supervisor.api import PilotInfo, PoolStatus, StatusReport
from planctond.supervisor.events import Event

RECENT_EVENTS: Final = 10
PILOT_STRUCT: Final = "(ssssstd)"  # name, id, pool, phase, image, started (µs since epoch), cpu
U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
# dbus-daemon drops a connection that sends a message over its limit (32 MiB on a system bus):
# a reply is refused well below that.
MAX_REPLY_BYTES: Final = 16 * 1024 * 1024


def u32(n: int) -> int:
    return min(max(0, int(n)), U32_MAX)


def _usec(epoch: float | None) -> int:
    if not epoch or not math.isfinite(epoch) or epoch <= 0:
        return 0
    usec = epoch * 1_000_000  # may overflow to inf for a finite epoch near the float maximum
    return U64_MAX if usec >= U64_MAX else round(usec)


def _pool_dict(p: PoolStatus) -> dict[str, Variant]:
    return {
        "name": Variant("s", p.name),
        "running": Variant("u", u32(p.running)),
        "frozen": Variant("u", u32(p.frozen)),
        "allowed": Variant("u", u32(p.allowed)),
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
        "pilots": Variant("u", u32(report.pilots)),
        "pools": Variant("aa{sv}", [_pool_dict(p) for p in report.pools]),
        "capacity_cpus": Variant("d", float(report.capacity_cpus)),
        "owner_cpu": Variant("d", float(report.owner_cpu)),
        "host_cpu": Variant("d", float(report.host_cpu)),
        "ncpus": Variant("u", u32(report.ncpus)),
        "started_usec": Variant("t", _usec(report.started)),
        "uptime_s": Variant("d", max(0.0, now - float(report.started))),
        "last_tick_usec": Variant("t", _usec(report.last_tick)),
        "version": Variant("s", report.version),
        "config_path": Variant("s", report.config_path),
        "last_error": Variant("s", report.last_error),
        "recent_events": Variant("aa{sv}", [_event_dict(e) for e in recent]),
        "extra": Variant("a{ss}", {str(k): str(v) for k, v in report.extra.items()}),
    }


def pilot_to_dbus(p: PilotInfo) -> list[Any]:
    return [p.name, p.id, p.pool, p.phase, p.image, _usec(p.started), float(p.cpu)]


def unsendable(body: list[Any]) -> str | None:
    """Where a message body holds what must never reach the bus, or None when it may be sent.

    A string that is not UTF-8 (a lone surrogate) cannot be marshalled; one holding a NUL, or a
    message over the bus's size limit, makes dbus-daemon drop the sender, i.e. planctond."""
    size = 0
    stack: list[tuple[str, Any]] = [
        (f"[{i}]" if len(body) > 1 else "", v) for i, v in enumerate(body)
    ]
    while stack:
        where, value = stack.pop()
        size += 8
        if isinstance(value, Variant):
            stack.append((where, value.value))
        elif isinstance(value, str):
            try:
                size += len(value.encode())
            except UnicodeEncodeError:
                return f"{where or 'a string'}: text that is not UTF-8"
            if "\0" in value:
                return f"{where or 'a string'}: a NUL character"
        elif isinstance(value, bytes | bytearray):
            size += len(value)
        elif isinstance(value, dict):
            stack.extend((where, k) for k in value)
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        if size > MAX_REPLY_BYTES:
            return f"more than {MAX_REPLY_BYTES} bytes"
    return None
