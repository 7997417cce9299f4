"""planctond exactly as `python3 -m planctond.cli.daemon` runs it, on a host that looks idle.

Why: this VM is shared with other sessions whose load comes and goes. planctond rightly counts
that load as the owner's, so on a busy minute it would start fewer pilots than the benchmark
asks for, or freeze them. The benchmark measures the daemon's own cost at a given number of
pilots, not the policy, so the one reading the policy bases capacity on (the owner's CPU, and
its averages) is reported as 0 here. Everything else is the real daemon: it still reads /proc
and the pilots' cgroups every tick, follows Docker's events, and makes every Docker call.

    python3 -m bench.quiet_daemon [planctond arguments]
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import replace

from planctond.cli import daemon
from planctond.policy.model import HostSnapshot
from planctond.sensors import host as host_mod

_real_sample = host_mod.HostSensor.sample


def _quiet_sample(
    self: host_mod.HostSensor, extra: Mapping[str, float | bool] | None = None
) -> HostSnapshot:
    snap = _real_sample(self, extra)
    variables = dict(snap.variables)
    for name in variables:
        if name.startswith("owner_cpu"):
            variables[name] = 0.0
    # owner_cpu is host_cpu - pilots_cpu: equal readings make it 0.
    return replace(snap, host_cpu=snap.pilots_cpu, variables=variables)


host_mod.HostSensor.sample = _quiet_sample  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(daemon.main())
