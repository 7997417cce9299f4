"""The catalogue of planctond's series: every measurement and field with its type, unit and help.

What an exporter needs beyond the points themselves (Prometheus's HELP and TYPE lines, an
Elasticsearch index mapping) and what a dashboard author reads; `series.py` makes the points and
a test keeps both in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

DAEMON: Final = "planctond_daemon"
DAEMON_STATE: Final = "planctond_daemon_state"
BUILD_INFO: Final = "planctond_build_info"
HOST: Final = "planctond_host"
POOL: Final = "planctond_pool"
CONFIG: Final = "planctond_config"
EVENTS: Final = "planctond_events"
EVENT: Final = "planctond_event"
OWNER: Final = "planctond_owner"
# A Prometheus-shaped histogram: this measurement's `bucket` field tagged `le`, with its `_sum`
# and `_count` in OWNER, so every backend (and a line-protocol reader such as VictoriaMetrics)
# sees the names Prometheus gives a histogram.
YIELD_LATENCY: Final = "planctond_owner_yield_latency_seconds"

HOST_TAG: Final = "host"
POOL_TAG: Final = "pool"
KIND_TAG: Final = "kind"
REASON_TAG: Final = "reason"
STATE_TAG: Final = "state"
VERSION_TAG: Final = "version"
LE_TAG: Final = "le"
# Owner yield latency buckets (seconds; `le`). The default grace_kill is 120 s and the figure
# includes it, so the buckets are dense just past it; short ones serve a site that lowers it.
YIELD_BUCKETS: Final = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 130.0, 150.0, 180.0, 300.0)


class SeriesType(StrEnum):
    GAUGE = "gauge"
    COUNTER = "counter"
    TEXT = "text"  # a string field: no Prometheus sample
    EVENT = "event"  # a field of `planctond_event`: one point per happening
    HISTOGRAM = "histogram"  # a part (`_bucket`, `_sum`, `_count`) of a Prometheus histogram


class ValueType(StrEnum):
    """A field's type never changes: InfluxDB refuses a point whose field type differs from the
    one already stored, and Elasticsearch maps a field once."""

    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"


@dataclass(frozen=True)
class SeriesSpec:
    """One field of one measurement, for an exporter's HELP/TYPE lines and an index mapping."""

    measurement: str
    field: str
    type: SeriesType
    value: ValueType
    unit: str  # "" for counts and flags
    help: str
    tags: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.measurement if self.field == "value" else f"{self.measurement}_{self.field}"


_G, _C, _T, _E = SeriesType.GAUGE, SeriesType.COUNTER, SeriesType.TEXT, SeriesType.EVENT
_HG = SeriesType.HISTOGRAM
_I, _F, _S = ValueType.INTEGER, ValueType.FLOAT, ValueType.STRING
_Row = tuple[str, SeriesType, ValueType, str, str]


def _rows(measurement: str, tags: tuple[str, ...], *rows: _Row) -> tuple[SeriesSpec, ...]:
    return tuple(SeriesSpec(measurement, f, t, v, u, h, tags) for f, t, v, u, h in rows)


_H: Final = (HOST_TAG,)
_EVENT_TAGS: Final = (HOST_TAG, KIND_TAG, REASON_TAG, POOL_TAG)  # pool: when the event has one
SERIES: Final[tuple[SeriesSpec, ...]] = (
    *_rows(
        DAEMON,
        _H,
        ("uptime_seconds", _G, _F, "seconds", "Seconds since the daemon started."),
        ("start_time_seconds", _G, _F, "seconds", "When the daemon started, epoch seconds."),
        ("pilots", _G, _I, "pilots", "Pilots alive in any phase: running, frozen, stopping."),
        ("docker_up", _G, _I, "", "1 while Docker answers; 0 while the daemon waits for it."),
        ("error", _G, _I, "", "1 while the daemon reports a last error (last_error)."),
        ("tick_age_seconds", _G, _F, "seconds", "Seconds since the last tick ended."),
        ("run_state", _T, _S, "", "The admin-facing state: active, draining or stopped."),
        ("last_error", _T, _S, "", "The last error the daemon met; empty once cleared."),
        ("docker_error", _T, _S, "", "Why Docker is not usable; empty while it is."),
    ),
    *_rows(
        DAEMON_STATE,
        (HOST_TAG, STATE_TAG),
        ("value", _G, _I, "", "1 for the daemon's current state, 0 for the others."),
    ),
    *_rows(
        BUILD_INFO,
        (HOST_TAG, VERSION_TAG),
        ("value", _G, _I, "", "Always 1: the running planctond version is the tag."),
    ),
    *_rows(
        HOST,
        _H,
        ("cpus", _G, _I, "cpus", "CPUs the host has."),
        ("used_cpus", _G, _F, "cpus", "CPUs busy over the last tick, pilots included."),
        ("owner_cpus", _G, _F, "cpus", "CPUs the owner used, pilots excluded."),
        (
            "spare_cpus",
            _G,
            _F,
            "cpus",
            "CPUs left for pilots: all but the reserve and the owner's use where it counts.",
        ),
        ("pilot_cpus", _G, _F, "cpus", "CPUs allotted to running pilots, all pools."),
        ("pilot_used_cpus", _G, _F, "cpus", "CPUs pilots used over the last tick (cgroup)."),
        (
            "pilot_used_cpu_seconds_total",
            _C,
            _F,
            "seconds",
            "CPU-seconds pilots used, measured in their cgroup: the harvest.",
        ),
        ("pilot_memory_bytes", _G, _I, "bytes", "Memory the pilots hold (working set)."),
    ),
    *_rows(
        POOL,
        (HOST_TAG, POOL_TAG),
        ("running_pilots", _G, _I, "pilots", "Pilots running (or stopping) in the pool."),
        ("frozen_pilots", _G, _I, "pilots", "Pilots frozen because the owner needs the CPU."),
        ("allowed_pilots", _G, _I, "pilots", "max_pilots as evaluated at the last tick."),
        ("backoff", _G, _I, "", "1 while failing pilots hold starts back."),
        ("backoff_remaining_seconds", _G, _F, "seconds", "Until the pool may start again."),
        ("pilot_cpus", _G, _F, "cpus", "Running pilots x the pool's cpus."),
        ("pilot_cpu_seconds_total", _C, _F, "seconds", "pilot_cpus integrated since start."),
        (
            "lost_cpu_seconds_total",
            _C,
            _F,
            "seconds",
            "CPU-seconds of pilots stopped or killed before they ended by themselves.",
        ),
        ("note", _T, _S, "", "Why the pool starts no pilots; empty when it does."),
    ),
    *_rows(
        CONFIG,
        _H,
        ("loaded_total", _C, _I, "", "Configs applied since start."),
        ("rejected_total", _C, _I, "", "Config reloads refused since start."),
        ("error", _G, _I, "", "1 while the last reload was refused, until one succeeds."),
        ("error_message", _T, _S, "", "Why the last reload was refused; empty when it was not."),
    ),
    *_rows(
        OWNER,
        _H,
        ("yield_latency_seconds_sum", _HG, _F, "seconds", "Owner yield latencies, summed."),
        ("yield_latency_seconds_count", _HG, _I, "", "Times the pilots gave way to the owner."),
        (
            "yield_pilot_cpu_seconds_total",
            _C,
            _F,
            "seconds",
            "CPU-seconds pilots used while the owner waited for them to give way.",
        ),
    ),
    *_rows(
        YIELD_LATENCY,
        (HOST_TAG, LE_TAG),
        (
            "bucket",
            _HG,
            _I,
            "seconds",
            "From the owner's demand crossing the give-way line to the pilots frozen or stopped.",
        ),
    ),
    *_rows(
        EVENTS,
        _EVENT_TAGS,
        ("total", _C, _I, "", "Events since the daemon started, by kind, reason and pool."),
    ),
    *_rows(
        EVENT,
        _EVENT_TAGS,
        ("message", _E, _S, "", "The event in one readable sentence."),
        ("pilot", _E, _S, "", "The pilot's container name."),
        ("exit_code", _E, _I, "", "An ended pilot's exit code, when known."),
        ("lifetime_seconds", _E, _F, "seconds", "How long an ended pilot lived, when known."),
        ("state", _E, _S, "", "The daemon's new state (state-changed)."),
        (
            "cpu_seconds",
            _E,
            _F,
            "seconds",
            "A stopped pilot's CPU-seconds: its work lost, at most.",
        ),
        (
            "latency_seconds",
            _E,
            _F,
            "seconds",
            "How long the pilots took to give way (owner-yield).",
        ),
        ("pilot_cpu_seconds", _E, _F, "seconds", "CPU pilots used meanwhile (owner-yield)."),
        ("pilots", _E, _I, "pilots", "How many pilots gave way (owner-yield)."),
    ),
)
SERIES_BY_FIELD: Final[dict[tuple[str, str], SeriesSpec]] = {
    (s.measurement, s.field): s for s in SERIES
}
