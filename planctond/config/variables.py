"""The host variables that `max_pilots` and `run_when` expressions may name.

One list, so the expression validator (config), the sensors that fill the values and the docs
agree. A name here that a sensor cannot fill on some host (no battery, no logind) is *undefined*
there: an expression that uses it fails at evaluation and the policy says so once.
"""

from __future__ import annotations

from typing import Final

# name -> what it means (shown by `planctond --help-variables` and the docs)
HOST_VARIABLES: Final[dict[str, str]] = {
    "ncpus": "logical CPUs of the host",
    "ram_bytes": "total RAM, bytes",
    "swap_bytes": "total swap, bytes",
    "mem_available": "MemAvailable, bytes",
    "disk_free": "free bytes on the Docker data-root filesystem",
    "disk_used": "used fraction (0..1) of the Docker data-root filesystem",
    "load1": "1-minute load average",
    "load5": "5-minute load average",
    "load15": "15-minute load average",
    "cpu_pressure": "PSI cpu some avg10, percent (0 where /proc/pressure is absent)",
    "mem_pressure": "PSI memory some avg10, percent",
    "io_pressure": "PSI io some avg10, percent",
    "owner_cpu": "CPUs the owner uses now (host total minus pilots)",
    "owner_cpu_1m": "owner CPUs, mean over 1 minute",
    "owner_cpu_5m": "owner CPUs, mean over 5 minutes",
    "owner_cpu_30m": "owner CPUs, mean over 30 minutes",
    "owner_cpu_1h": "owner CPUs, mean over 1 hour",
    "owner_cpu_12h": "owner CPUs, mean over 12 hours",
    "owner_cpu_1d": "owner CPUs, mean over 1 day",
    "pilots": "running pilots, all pools",
    "pool_pilots": "running pilots of this pool",
    "on_battery": "true when the host runs on battery",
    "hour": "local hour of day, 0..23",
    "weekday": "local day of week, 0 = Monday .. 6 = Sunday",
    "max_dock_mem": "this pool's memory limit per pilot, bytes (Plancton 0.6 name)",
    "max_dock_swap": "this pool's swap per pilot, bytes (Plancton 0.6 name)",
    "owner_idle": "seconds since the owner's sessions were last active (logind)",
}

# Averaging windows for owner CPU, seconds, keyed by the variable suffix.
OWNER_CPU_WINDOWS: Final[dict[str, float]] = {
    "1m": 60.0,
    "5m": 300.0,
    "30m": 1800.0,
    "1h": 3600.0,
    "12h": 43200.0,
    "1d": 86400.0,
}

# Constants an expression may use besides the variables.
EXPRESSION_CONSTANTS: Final[dict[str, float | bool]] = {
    "true": True,
    "false": False,
    "True": True,
    "False": False,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
}
