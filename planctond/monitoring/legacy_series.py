"""Plancton 0.6's InfluxDB series, made from planctond's events and status report, so the Grafana
dashboards of a site that upgraded keep drawing: same measurements, tags, fields, field types and
meaning, as Plancton 0.6 wrote them (its `plancton/__init__.py` and `influxdb_streamer.py`).

| measurement | tags | field | Plancton 0.6 | here, from |
|---|---|---|---|---|
| daemon | hostname | uptime | seconds since the daemon started, each loop | `now - report.started` |
| daemon | hostname | status | "active" or "draining" each loop; "waiting" while a Docker call failed | `report.state`, `report.docker_ok`; the docker-lost event at once |
| daemon | hostname | containers | pilots "Up" (paused ones too), each loop | `report.pilots`, all live pilots; left out while Docker is away, as Plancton wrote none then |
| measurement | hostname | cpu_eff | % of all CPUs not idle over the loop, pilots included, >= 0 | `report.host_cpu / report.ncpus * 100`, kept within 0..100 |
| container | hostname, started, killed | uptime | seconds a pilot lived, when it was cleaned up | an ended pilot's lifetime (`series.pilot_lifetime`) |

`container` tags: started=True killed=False, it exited by itself (pilot-exited); started=True
killed=True, the daemon ended it, TTL or force-stop then (pilot-stopped for any reason, graceful
now, and pilot-killed); started=False killed=False with uptime 0, it never ran (an event with
reason never-started: the supervisor emits none today, such leftovers are only removed).

New to the old series: status "stopped" (Plancton exited instead); a planctond host tags its
`hostname` with the host it is given, where Plancton wrote the short host name
(`plancton_hostname`). Every number is a float: Plancton sent numbers without the integer
suffix, so InfluxDB stored floats, and it refuses a point whose field type differs from the
stored one. Tag values True/False are Python's spelling, as Plancton's writer put them.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Final

from planctond.monitoring.point import FieldValue, Point
from planctond.monitoring.series import pilot_lifetime, time_ns
from planctond.policy.model import Reason, RunState
from planctond.supervisor.api import StatusReport
from planctond.supervisor.events import Event, EventKind

DAEMON: Final = "daemon"
MEASUREMENT: Final = "measurement"
CONTAINER: Final = "container"
HOSTNAME_TAG: Final = "hostname"
STARTED_TAG: Final = "started"
KILLED_TAG: Final = "killed"
TRUE: Final = "True"
FALSE: Final = "False"

STATUS_ACTIVE: Final = "active"
STATUS_DRAINING: Final = "draining"
STATUS_WAITING: Final = "waiting"  # for Docker
STATUS_STOPPED: Final = "stopped"  # new: Plancton exited rather than stay stopped
_STATUS: Final[dict[RunState, str]] = {
    RunState.ACTIVE: STATUS_ACTIVE,
    RunState.DRAINING: STATUS_DRAINING,
    RunState.STOPPED: STATUS_STOPPED,
}


class LegacyWrite(Enum):
    """What an event is in Plancton's series."""

    NOTHING = "nothing"
    WAITING = "waiting"  # daemon status=waiting
    EXITED = "exited"  # container started=True killed=False
    ENDED_BY_US = "ended-by-us"  # container started=True killed=True


# Every kind is listed, so a new kind is a decision made here (the tests fail until it is).
LEGACY_EVENTS: Final[dict[EventKind, LegacyWrite]] = {
    EventKind.PILOT_STARTED: LegacyWrite.NOTHING,
    EventKind.PILOT_EXITED: LegacyWrite.EXITED,
    EventKind.PILOT_FROZEN: LegacyWrite.NOTHING,
    EventKind.PILOT_THAWED: LegacyWrite.NOTHING,
    EventKind.PILOT_STOPPED: LegacyWrite.ENDED_BY_US,
    EventKind.PILOT_KILLED: LegacyWrite.ENDED_BY_US,
    EventKind.STATE_CHANGED: LegacyWrite.NOTHING,
    EventKind.CONFIG_LOADED: LegacyWrite.NOTHING,
    EventKind.CONFIG_REJECTED: LegacyWrite.NOTHING,
    EventKind.DOCKER_LOST: LegacyWrite.WAITING,
    EventKind.DOCKER_BACK: LegacyWrite.NOTHING,
    EventKind.POOL_BACKOFF: LegacyWrite.NOTHING,
    EventKind.IMAGE: LegacyWrite.NOTHING,
    EventKind.OWNER_YIELD: LegacyWrite.NOTHING,
}


def plancton_hostname(name: str) -> str:
    """The `hostname` tag Plancton wrote: the host name up to its first dot."""
    return name.split(".", 1)[0] or name


def legacy_status(report: StatusReport, now: float, host: str) -> list[Point]:
    """Plancton's per-loop points: `daemon` (uptime, status, containers) and `measurement`."""
    tags = _tags(host)
    t = time_ns(now)
    status = _STATUS.get(report.state, STATUS_ACTIVE) if report.docker_ok else STATUS_WAITING
    daemon: dict[str, FieldValue] = {"status": status}
    uptime = now - report.started
    if math.isfinite(uptime):
        daemon["uptime"] = max(0.0, float(uptime))
    if report.docker_ok:
        daemon["containers"] = float(max(0, report.pilots))
    points = [Point(DAEMON, daemon, tags, t)]
    if report.ncpus > 0 and math.isfinite(report.host_cpu):
        efficiency = min(100.0, max(0.0, report.host_cpu * 100.0 / report.ncpus))
        points.append(Point(MEASUREMENT, {"cpu_eff": efficiency}, tags, t))
    return points


def legacy_event(event: Event, host: str) -> list[Point]:
    """`container` for an ended pilot, `daemon` status=waiting when Docker goes away. An ended
    pilot whose lifetime the event does not give writes nothing: a made-up uptime would skew
    every mean a dashboard draws."""
    tags = _tags(host)
    t = time_ns(event.time)
    write = LEGACY_EVENTS.get(event.kind, LegacyWrite.NOTHING)
    if write is LegacyWrite.WAITING:
        return [Point(DAEMON, {"status": STATUS_WAITING}, tags, t)]
    if write is LegacyWrite.NOTHING:
        return []
    if event.reason == Reason.NEVER_STARTED.value:
        started, killed, lifetime = FALSE, FALSE, 0.0
    else:
        started, killed = TRUE, TRUE if write is LegacyWrite.ENDED_BY_US else FALSE
        known = pilot_lifetime(event)
        if known is None:
            return []
        lifetime = known
    tags |= {STARTED_TAG: started, KILLED_TAG: killed}
    return [Point(CONTAINER, {"uptime": float(lifetime)}, tags, t)]


def _tags(host: str) -> dict[str, str]:
    if not host:
        raise ValueError("the hostname tag cannot be empty")
    return {HOSTNAME_TAG: host}
