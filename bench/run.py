#!/usr/bin/python3
"""planctond's supervisor benchmark: one command, results in bench/RESULTS.md ("## Supervisor").

    sudo python3 bench/run.py [--docker-url unix:///run/docker.sock] [--quick]

Measures, in one run and against one engine: the daemon's own CPU time and peak RSS with 1, 20
and 100 idle pilots, Docker requests per tick, replacement latency (p50/p95), and spawn
throughput next to raw docker-py create+start. Without --docker-url it starts a private dockerd
(the test suite's helper), so nothing else on the host is in the figures' way or in harm's way;
with it, only containers labelled with this run's id are ever removed. About 8-10 minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from bench import phases  # noqa: E402
from bench.events import EventRecorder  # noqa: E402
from bench.harness import BENCH_LABEL_KEY, DAEMON_WARNINGS, open_engine, remove_labelled  # noqa: E402
from bench.report import Machine, render, write_section  # noqa: E402
from planctond import constants as C  # noqa: E402
from planctond.engine.cgroup_parent import ensure_idle_parent, parent_for  # noqa: E402
from planctond.sensors.cgroups import CgroupLayout  # noqa: E402

log = phases.log
ENGINE_SETTLE = 3.0  # seconds between spawn runs


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--docker-url", help="use this engine instead of a private dockerd")
    ap.add_argument("--pilots", default="1,20,100", help="idle pilot counts (default 1,20,100)")
    ap.add_argument("--window", type=float, default=60.0, help="steady CPU window, s (60)")
    ap.add_argument("--settle", type=float, default=15.0, help="wait after ramp-up, s (15)")
    ap.add_argument("--replacements", type=int, default=80, help="replacements to time (80)")
    ap.add_argument("--spawn", type=int, default=30, help="pilots per spawn run (30)")
    ap.add_argument("--rounds", type=int, default=5, help="spawn rounds (5)")
    ap.add_argument("--quick", action="store_true", help="short windows, for trying the bench out")
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory (daemon logs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.window, args.settle, args.replacements, args.rounds = 20.0, 5.0, 20, 1
    if os.geteuid() != 0:
        print("bench/run.py needs root (Docker socket, cgroups)", file=sys.stderr)
        return 1
    began = time.monotonic()
    run_id = uuid.uuid4().hex[:12]
    workdir = Path(tempfile.mkdtemp(prefix="pbench-", dir="/tmp"))
    engine = open_engine(args.docker_url, log)
    url, engine_desc = engine.url, engine.description
    if not url.startswith("unix://"):
        print("the counting proxy needs a unix:// Docker URL", file=sys.stderr)
        return 1
    api = docker.APIClient(base_url=url, version="auto", timeout=120)
    recorder = EventRecorder(
        docker.APIClient(base_url=url, version="auto", timeout=None),
        f"{BENCH_LABEL_KEY}={run_id}",
    )
    try:
        from tests.support.images import ensure_busybox

        log("making sure busybox:latest is in the engine")
        ensure_busybox(url)
        info, version = api.info(), api.version()
        driver = str(info.get("CgroupDriver", "cgroupfs"))
        parent = parent_for(driver, None)
        # The raw baseline may run before any daemon made the pilots' parent: make it now.
        ensure_idle_parent(CgroupLayout.detect("/sys/fs/cgroup"), parent, driver)
        machine_load = _load()
        imports = phases.import_cost()
        recorder.start()
        notes: list[str] = []
        tick = C.DEFAULT_TICK

        idle = []
        for n in [int(x) for x in args.pilots.split(",")]:
            idle.append(
                phases.idle_cost(
                    engine_socket=url.removeprefix("unix://"),
                    api=api,
                    workdir=workdir,
                    run_id=run_id,
                    pilots=n,
                    settle=args.settle,
                    window=args.window,
                    tick=tick,
                )
            )
        log("replacement latency")
        repl = phases.replacement_latency(
            docker_url=url,
            api=api,
            recorder=recorder,
            workdir=workdir,
            run_id=run_id,
            pilots=4,
            want=args.replacements,
            timeout=max(60.0, args.replacements * 1.5),
        )
        spawn: list[phases.SpawnRun] = []
        # dockerd keeps tearing down the last phase's containers (shims, mounts) for a while
        # after they are no longer listed; whoever ran first would pay for it.
        time.sleep(ENGINE_SETTLE * 3)
        contenders = ["daemon", "raw-concurrent", "raw-sequential"]
        for rnd in range(args.rounds):
            order = contenders[rnd % 3 :] + contenders[: rnd % 3]
            for who in order:
                if who == "daemon":
                    run = phases.spawn_daemon(
                        docker_url=url,
                        api=api,
                        recorder=recorder,
                        workdir=workdir,
                        run_id=run_id,
                        n=args.spawn,
                        rnd=rnd,
                    )
                else:
                    run = phases.spawn_raw(
                        docker_url=url,
                        recorder=recorder,
                        workdir=workdir,
                        run_id=run_id,
                        n=args.spawn,
                        rnd=rnd,
                        width=1 if who == "raw-sequential" else phases.DAEMON_POOL_WIDTH,
                        cgroup_parent=parent,
                    )
                log(f"spawn round {rnd + 1}: {who} {run.seconds:.2f}s for {run.count}")
                spawn.append(run)
                remove_labelled(api, run_id)
                time.sleep(ENGINE_SETTLE)
        machine = Machine(
            date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            nproc=os.cpu_count() or 0,
            kernel=platform.release(),
            docker=str(version.get("Version", "?")),
            cgroup=f"cgroup v{info.get('CgroupVersion', '1')} ({driver} driver)",
            python=platform.python_version(),
            load_before=machine_load,
            load_after=_load(),
            engine=engine_desc,
            duration_s=time.monotonic() - began,
        )
        notes += auto_notes(idle, repl, imports)
        text = render(machine, idle, repl, spawn, args.spawn, tick, imports, notes)
        write_section(Path(args.results), text)
        print(text)
        log(f"wrote {args.results}")
        return 0
    finally:
        recorder.close()
        remove_labelled(api, run_id)
        api.close()
        engine.stop()
        if args.keep:
            log(f"daemon configs and logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def auto_notes(
    idle: list[phases.IdleResult], repl: phases.ReplacementResult, imports: phases.ImportCost
) -> list[str]:
    """Facts the table alone does not show, computed from this run's data."""
    from bench.report import percentile

    notes = []
    for r in idle:
        if r.pilots_at_end != r.pilots:
            notes.append(
                f"{r.pilots} pilots: only {r.pilots_at_end} were running at the end of the window."
            )
    if repl.latencies and repl.reaction and repl.docker:

        def ms(values: list[float], q: float) -> str:
            return f"{percentile(values, q) * 1000:.0f} ms"

        notes.append(
            "Replacement, split at the replacement's `create` event: the daemon's share (die -> "
            f"create) p50 {ms(repl.reaction, 50)} / p95 {ms(repl.reaction, 95)}; Docker's "
            f"share (that container's create -> start) p50 {ms(repl.docker, 50)} / p95 "
            f"{ms(repl.docker, 95)}. Docker's share is what any client pays for a container "
            "of this spec on this host at that moment (a pilot's start runs under its own CPU "
            "quota and the idle parent, so it waits for spare CPU like the pilot itself)."
        )
    if DAEMON_WARNINGS:
        runs = sorted({name for name, _ in DAEMON_WARNINGS})
        first = DAEMON_WARNINGS[0][1].split(" ", 2)[-1][:300]
        notes.append(
            f"The daemons logged {len(DAEMON_WARNINGS)} warnings/errors (runs: "
            f"{', '.join(runs)}); the first: `{first}`."
        )
    if imports.setuptools_loaded:
        saved = (imports.hwm_kib - imports.hwm_stdlib_distutils_kib) * 1024 / 1e6
        notes.append(
            f"Memory floor: importing the daemon's modules alone peaks at "
            f"{imports.hwm_kib * 1024 / 1e6:.1f} MB. {saved:.1f} MB of that is setuptools and "
            "pkg_resources, which docker-py 5.0.3 drags in: `docker/credentials/utils.py` does "
            "`from distutils.spawn import find_executable`, and with python3-setuptools "
            "installed its distutils shim (`distutils-precedence.pth`) answers that import by "
            "loading setuptools. With `SETUPTOOLS_USE_DISTUTILS=stdlib` in the daemon's "
            f"environment the floor is {imports.hwm_stdlib_distutils_kib * 1024 / 1e6:.1f} MB."
        )
    return notes


if __name__ == "__main__":
    sys.exit(main())
