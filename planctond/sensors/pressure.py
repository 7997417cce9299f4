"""Pressure stall information (PSI): how much the host is waiting for CPU, memory and I/O.

Hosts without PSI (old kernels, `psi=0` on the kernel command line) read as zero pressure, so an
expression like `cpu_pressure < 20` stays usable everywhere instead of failing on some hosts.
"""

from __future__ import annotations

import os

# variable name -> file under /proc/pressure
PRESSURE_FILES: dict[str, str] = {
    "cpu_pressure": "cpu",
    "mem_pressure": "memory",
    "io_pressure": "io",
}


def parse_some_avg10(text: str) -> float:
    """The `avg10` of the `some` line: the share (percent) of the last 10 s in which at least one
    task was stalled. `some` rather than `full`: one stalled owner task is already a cost."""
    for line in text.splitlines():
        if line.startswith("some "):
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key == "avg10":
                    return float(value)
    return 0.0


def read_pressure(root: str = "/proc/pressure") -> dict[str, float]:
    out: dict[str, float] = {}
    for name, fname in PRESSURE_FILES.items():
        try:
            with open(os.path.join(root, fname), encoding="ascii") as f:
                out[name] = parse_some_avg10(f.read())
        except (OSError, ValueError):  # absent, or EOPNOTSUPP when PSI is disabled
            out[name] = 0.0
    return out
