"""`planctond --setup-cgroup`: create the pilots' idle parent cgroup and configure it, as root.

The systemd unit runs it before the daemon (`ExecStartPre=+...`), possibly before Docker is up at
boot: then the driver Docker will use is guessed the way Docker itself picks its default, rather
than waiting for Docker.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from planctond import constants as C
from planctond.engine.cgroup_parent import ensure_idle_parent, guess_driver, parent_for
from planctond.engine.docker_engine import DockerEngine
from planctond.engine.errors import EngineError
from planctond.sensors.cgroups import DRIVERS, CgroupError, CgroupLayout

DOCKER_TIMEOUT = 5.0  # seconds: a Docker that does not answer by then is treated as not up


def _docker_driver(url: str | None) -> str | None:
    engine = DockerEngine(url, instance="", timeout=DOCKER_TIMEOUT)
    try:
        driver = engine.info().cgroup_driver
    except EngineError:
        return None
    finally:
        engine.reset()
    return driver if driver in DRIVERS else None


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="planctond --setup-cgroup",
        description="Create the pilots' parent cgroup and make it idle to the kernel "
        "(cpu.idle=1, or the lowest CPU weight where the kernel lacks cpu.idle). Needs root.",
    )
    ap.add_argument("--cgroup-root", default="/sys/fs/cgroup", help="cgroup mount root")
    ap.add_argument(
        "--driver",
        choices=("auto", *DRIVERS),
        default="auto",
        help="Docker's cgroup driver (auto: ask Docker, else guess from the host)",
    )
    ap.add_argument(
        "--parent",
        default=None,
        help=f"cgroup parent (default {C.CGROUP_PARENT_CGROUPFS} for cgroupfs, "
        f"{C.CGROUP_PARENT_SYSTEMD} for systemd)",
    )
    ap.add_argument("--docker-url", default=None, help="Docker API URL for --driver auto")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # usage errors and --help: an exit code for the caller, no exit
        return int(exc.code or 0)
    try:
        layout = CgroupLayout.detect(args.cgroup_root)
        driver = args.driver
        if driver == "auto":
            driver = _docker_driver(args.docker_url) or guess_driver(layout)
        setup = ensure_idle_parent(layout, parent_for(driver, args.parent), driver)
    except CgroupError as err:
        print(f"planctond: {err}", file=sys.stderr)
        return 1
    print(setup.describe())
    return 0
