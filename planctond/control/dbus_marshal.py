"""Controller data -> D-Bus values for Manager1: plain types a person reads in `busctl call`.

Timestamps are `t` microseconds since the epoch (0 = none), as systemd does: busctl prints
integers exactly, while it rounds a `d` epoch to six digits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Final

from dbus_next.signature import Variant

from planctond.supervisor.api import PilotInfo, PoolStatus, StatusReport
from planctond.supervisor.events import Event

RECENT_EVENTS: Final = 10
PILOT_STRUCT: Final = "(ssssstd)"  # name, id, pool, phase, image, started (µs since epoch), cpu


def _usec(epoch: float | None) -> int:
    return max(0, round(epoch * 1_000_000)) if epoch else 0


def _pool_dict(p: PoolStatus) -> dict[str, Variant]:
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
