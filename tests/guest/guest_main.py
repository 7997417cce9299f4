"""The order the guest runs its checks in, and the one results file the host reads.

Run by the guest's entry point as `python3 -m tests.guest.guest_main IN OUT` (IN: the input
disk's files, OUT: what goes back to the host). One boot covers both of Docker's drivers: the
package is installed once on a host whose Docker uses the systemd driver (its default on
cgroup v2), every check runs there, then the owner moves Docker to the cgroupfs driver and the
checks that depend on the cgroup layout run again. Installing under emulation takes minutes, so a
second boot only to install again would double the time for nothing the checks look at.

Each check appends one JSON line to OUT/results.jsonl, {"name": "PHASE/CHECK", "ok", "detail",
"seconds"}; the host makes each a pytest test of that name, so a failure is named. A failing
check does not stop the later ones, except where they cannot mean anything without it (no
package, no pilots): those are reported as not run, naming the check that failed.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from tests.guest import guest_checks as c
from tests.guest import guest_ladder as ladder
from tests.guest import guest_lib as g
from tests.guest import guest_pressure as pressure

Check = Callable[[c.Run], str]

# What each driver's phase runs. The cgroupfs phase leaves out what does not touch the cgroup
# layout (reload, drain and resume, the watchdog): they ran in the systemd phase.
BEHAVIOUR: tuple[Check, ...] = (
    c.check_cgroup_v2_with_docker_driver,
    c.check_unit_active_unprivileged,
    c.check_pilots_in_idle_parent,
    c.check_pilots_cpu_from_v2_cpu_stat,
    c.check_owner_cpu_not_the_pilots,
    c.check_pilot_readings_by_the_installed_sensor,
    c.check_reload_with_broken_file_keeps_old_config,
    c.check_drain_and_resume_over_busctl,
    c.check_watchdog_restarts_frozen_daemon_which_adopts_pilots,
    ladder.check_user_slice_owner_freezes_pilots_by_cgroup_freeze,
    ladder.check_pressure_read_by_the_policy,
    ladder.check_pilots_thaw_when_owner_leaves,
    ladder.check_system_slice_owner_freezes_then_stops_pilots,
    ladder.check_pilots_return_after_owner_leaves,
    pressure.check_pressure_rule_reads_the_owners_cgroups,
    pressure.check_pressure_rule_keeps_pilots_beside_a_cpu_owner,
    pressure.check_pressure_rule_freezes_pilots_for_an_io_owner,
    pressure.check_usage_rule_restored,
)
LAYOUT_ONLY = (
    c.check_reload_with_broken_file_keeps_old_config,
    c.check_drain_and_resume_over_busctl,
    c.check_watchdog_restarts_frozen_daemon_which_adopts_pilots,
)
# (phase, Docker's driver during it, checks)
PHASES: tuple[tuple[str, str, tuple[Check, ...]], ...] = (
    (
        "install",
        "systemd",
        (c.check_pilot_image_built_locally, c.check_apt_install_from_local_package_cache),
    ),
    ("systemd", "systemd", BEHAVIOUR),
    ("cgroupfs", "cgroupfs", tuple(ch for ch in BEHAVIOUR if ch not in LAYOUT_ONLY)),
    ("unit", "cgroupfs", (c.check_security_exposure,)),
)
# A failure of one of these makes the rest of its phase meaningless; of the install phase, all.
ESSENTIAL = frozenset(
    {
        c.check_pilot_image_built_locally,
        c.check_apt_install_from_local_package_cache,
        c.check_cgroup_v2_with_docker_driver,
        c.check_unit_active_unprivileged,
        c.check_pilots_in_idle_parent,
    }
)


def check_name(check: Check) -> str:
    return check.__name__.removeprefix("check_")


def planned() -> Iterator[tuple[str, str, Check]]:
    for phase, driver, checks in PHASES:
        for check in checks:
            yield phase, driver, check


CHECK_NAMES: tuple[str, ...] = tuple(f"{p}/{check_name(ch)}" for p, _, ch in planned())


def _record(out: TextIO, name: str, ok: bool, detail: str, seconds: float) -> None:
    line = {"name": name, "ok": ok, "detail": detail, "seconds": round(seconds, 1)}
    print(f"=== {name}: {'ok' if ok else 'FAILED'} ({line['seconds']} s) {detail}", flush=True)
    out.write(json.dumps(line) + "\n")
    out.flush()


def run_all(inputs: Path, out: TextIO) -> None:
    runs: dict[str, c.Run] = {}
    blocked: dict[str, str] = {}  # phase (or "*" for every phase) -> the check that failed
    for phase, driver, check in planned():
        name = f"{phase}/{check_name(check)}"
        run = runs.setdefault(phase, c.Run(inputs, driver))
        stop = blocked.get("*") or blocked.get(phase)
        if stop:
            _record(out, name, False, f"not run: {stop} failed", 0.0)
            continue
        print(f"=== {name}", flush=True)
        t0 = time.monotonic()
        try:
            detail = check(run)
        except Exception as exc:  # one broken check must not hide the others
            detail = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
            _record(out, name, False, detail, time.monotonic() - t0)
            if check in ESSENTIAL:
                blocked["*" if phase == "install" else phase] = name
            continue
        _record(out, name, True, detail, time.monotonic() - t0)


def main(argv: list[str]) -> int:
    inputs, outputs = Path(argv[1]), Path(argv[2])
    with (outputs / "results.jsonl").open("w") as out:
        run_all(inputs, out)
    with (outputs / "diagnostics.txt").open("w") as f:
        for cmd in ("systemctl status --no-pager planctond.service", "docker ps -a"):
            f.write(f"$ {cmd}\n{g.sh(cmd.split(), check=False)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
